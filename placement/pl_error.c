/*
 * pl_error.c - error strings and the allocation hook of placement/.
 */
#include "placement/pl_error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *pl_strerror(int code) {
  switch (code) {
#define PL_ERR_CASE(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    PL_ERRNO_MAP(PL_ERR_CASE)
#undef PL_ERR_CASE
  default:
    return "unknown placement error";
  }
}

static pl_malloc_fn hook_malloc = malloc;
static pl_realloc_fn hook_realloc = realloc;
static pl_free_fn hook_free = free;

void pl_set_allocator(pl_malloc_fn m, pl_realloc_fn r, pl_free_fn f) {
  hook_malloc = m ? m : malloc;
  hook_realloc = r ? r : realloc;
  hook_free = f ? f : free;
}

void *pl_malloc(size_t size) { return hook_malloc(size ? size : 1); }

void *pl_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    return NULL;
  /* the C library's own: calloc leaves the zero pages of a fresh mapping
   * untouched (a large buffer costs page faults only where it is used;
   * issue 19: clearing never-used pages was a tenth of a 1,024-GPU run) */
  if (hook_malloc == malloc && hook_free == free)
    return n && size ? calloc(n, size) : malloc(1);
  void *p = pl_malloc(n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void *pl_realloc(void *ptr, size_t size) { return hook_realloc(ptr, size ? size : 1); }

void pl_free(void *ptr) {
  if (ptr)
    hook_free(ptr);
}
