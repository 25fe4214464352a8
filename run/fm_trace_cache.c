/*
 * fm_trace_cache.c - opened traces kept by path (contract: fm_trace_cache.h).
 *
 * A short array searched linearly: a process compares a handful of traces
 * at most, and each entry saves a whole file's hash. Entries are allocated
 * one by one so a returned tr_trace never moves when the array grows.
 */
#include "run/fm_trace_cache.h"

#include <stdlib.h>
#include <string.h>

#include "run/fm_error.h"

typedef struct entry {
  char *path;
  tr_trace *trace;
} entry;

struct fm_trace_cache {
  entry *e;
  int n, cap;
};

int fm_trace_cache_new(fm_trace_cache **out) {
  fm_trace_cache *c = calloc(1, sizeof(*c));
  if (!c)
    return FM_EFAIL;
  *out = c;
  return FM_OK;
}

void fm_trace_cache_free(fm_trace_cache *c) {
  if (!c)
    return;
  for (int i = 0; i < c->n; i++) {
    tr_close(c->e[i].trace);
    free(c->e[i].trace);
    free(c->e[i].path);
  }
  free(c->e);
  free(c);
}

/* Room for one more entry; 0 when out of memory. */
static int reserve(fm_trace_cache *c) {
  if (c->n < c->cap)
    return 1;
  int cap = c->cap ? 2 * c->cap : 4;
  entry *e = realloc(c->e, sizeof(*e) * (size_t)cap);
  if (!e)
    return 0;
  c->e = e;
  c->cap = cap;
  return 1;
}

int fm_trace_cache_open(fm_trace_cache *c, const char *path, const tr_trace **t,
                        tr_error *err) {
  for (int i = 0; path && i < c->n; i++)
    if (strcmp(c->e[i].path, path) == 0) {
      if (err)
        memset(err, 0, sizeof(*err));
      *t = c->e[i].trace;
      return TR_OK;
    }
  tr_trace *tr = malloc(sizeof(*tr));
  size_t len = path ? strlen(path) + 1 : 0;
  char *copy = path ? malloc(len) : NULL;
  if (!tr || (path && !copy) || !reserve(c)) {
    free(tr);
    free(copy);
    if (err) {
      memset(err, 0, sizeof(*err));
      err->code = TR_ENOMEM;
    }
    return TR_ENOMEM;
  }
  int rc = tr_open(tr, path, err);
  if (rc) {
    free(tr);
    free(copy);
    return rc;
  }
  memcpy(copy, path, len);
  c->e[c->n++] = (entry){.path = copy, .trace = tr};
  *t = tr;
  return TR_OK;
}
