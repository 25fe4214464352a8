/*
 * tr_error.c - messages for the TR_ error codes, the error record filler and
 * the allocation hook of the traces library.
 *
 * The hook is the library's only process-wide state (see tr_trace.h).
 */
#include "traces/tr_trace.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tr_strerror(int code) {
  switch (code) {
#define TR_ERR_CASE(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    TR_ERRNO_MAP(TR_ERR_CASE)
#undef TR_ERR_CASE
  default:
    return "unknown trace error";
  }
}

int tr_seterr(tr_error *err, int code, const char *path, long line,
              const char *fmt, ...) {
  if (!err)
    return code;
  err->code = code;
  err->line = line;
  snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  /* Messages quote file content (a header, a CSV field): keep them one
   * printable line whatever the file holds. */
  for (char *c = err->msg; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
      *c = '?';
  return code;
}

static tr_malloc_fn hook_malloc = malloc;
static tr_realloc_fn hook_realloc = realloc;
static tr_free_fn hook_free = free;

void tr_set_allocator(tr_malloc_fn m, tr_realloc_fn r, tr_free_fn f) {
  hook_malloc = m ? m : malloc;
  hook_realloc = r ? r : realloc;
  hook_free = f ? f : free;
}

void *tr_malloc(size_t size) { return hook_malloc(size ? size : 1); }

void *tr_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    return NULL;
  void *p = tr_malloc(n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void *tr_realloc(void *ptr, size_t size) {
  return hook_realloc(ptr, size ? size : 1);
}

void tr_free(void *ptr) {
  if (ptr)
    hook_free(ptr);
}
