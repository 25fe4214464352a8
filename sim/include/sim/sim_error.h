/*
 * sim_error.h - error codes and the allocation hook of the simulator library.
 *
 * Every fallible function of sim/ returns 0 on success or a negative code
 * from SIM_ERRNO_MAP; outputs are written through pointers only on success.
 * The library never prints and never aborts. Functions that read files also
 * fill a sim_errbuf with a sentence naming the file and the key or line at
 * fault, which the CLI prints as is.
 *
 * Allocation goes through one hook (sim_malloc/sim_free) so tests can fail
 * the Nth allocation; set it before any other call.
 */
#ifndef FLEXMOE_SIM_ERROR_H
#define FLEXMOE_SIM_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) */
#define SIM_ERRNO_MAP(X)                                                       \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ENOENT, -3, "no such file or preset")                                      \
  X(EFORMAT, -4, "malformed file")                                             \
  X(EKEY, -5, "missing or bad key")                                            \
  X(ERANGE, -6, "value out of range")                                          \
  X(EPLACEMENT, -7, "placement library error")                                 \
  X(EINVARIANT, -8, "simulator invariant violated")                           \
  X(ETIME, -9, "simulated time would pass 2^62 ns (146 years)")                \
  X(ELIMIT, -10, "simulation work limit reached")

typedef enum sim_err {
#define SIM_ERR_ENUM(name, value, msg) SIM_##name = (value),
  SIM_ERRNO_MAP(SIM_ERR_ENUM)
#undef SIM_ERR_ENUM
} sim_err;

const char *sim_strerror(int code);

/* A message buffer for errors that name a file, key or line. */
typedef struct sim_errbuf {
  char msg[512];
} sim_errbuf;

typedef void *(*sim_malloc_fn)(size_t size);
typedef void *(*sim_realloc_fn)(void *ptr, size_t size);
typedef void (*sim_free_fn)(void *ptr);
void sim_set_allocator(sim_malloc_fn m, sim_realloc_fn r, sim_free_fn f);

void *sim_malloc(size_t size);
void *sim_calloc(size_t n, size_t size); /* zeroed; checks n*size overflow */
void *sim_realloc(void *ptr, size_t size);
void sim_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
