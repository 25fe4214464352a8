/*
 * pl_error.h - error codes and the allocation hook of the placement library.
 *
 * Every fallible function of placement/ returns 0 on success or a negative
 * code from PL_ERRNO_MAP; outputs are written through pointers only on
 * success. The library never prints and never aborts: callers turn codes into
 * messages with pl_strerror().
 *
 * Allocation goes through one hook (pl_alloc/pl_free) so tests can fail the
 * Nth allocation. The hook is the library's only process-wide state; set it
 * before any other call, never concurrently with them.
 */
#ifndef FLEXMOE_PL_ERROR_H
#define FLEXMOE_PL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define PL_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ESLOTS, -3, "fewer expert slots than experts")                             \
  X(EGPUS, -4, "GPU count cannot be mapped onto the trace")                    \
  X(EPOLICY, -5, "unknown policy")                                             \
  X(EPARAM, -6, "unknown or malformed policy parameter")                       \
  X(ERANGE, -7, "value out of range")                                          \
  X(EFULL, -8, "GPU has no free expert slot")                                  \
  X(EEXIST, -9, "expert already has a replica on that GPU")                    \
  X(ENOENT, -10, "no such replica")                                            \
  X(ELAST, -11, "cannot remove the last replica of an expert")                 \
  X(EINVARIANT, -12, "placement invariant violated")                           \
  X(EOVERFLOW, -13, "token count overflows")

typedef enum pl_err {
#define PL_ERR_ENUM(name, value, msg) PL_##name = (value),
  PL_ERRNO_MAP(PL_ERR_ENUM)
#undef PL_ERR_ENUM
} pl_err;

/* Human-readable message for a code (never NULL). */
const char *pl_strerror(int code);

/* Allocation hook. Defaults are malloc/realloc/free. Passing NULLs restores
 * the defaults. */
typedef void *(*pl_malloc_fn)(size_t size);
typedef void *(*pl_realloc_fn)(void *ptr, size_t size);
typedef void (*pl_free_fn)(void *ptr);
void pl_set_allocator(pl_malloc_fn m, pl_realloc_fn r, pl_free_fn f);

void *pl_malloc(size_t size);
void *pl_calloc(size_t n, size_t size); /* zeroed; checks n*size overflow */
void *pl_realloc(void *ptr, size_t size);
void pl_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
