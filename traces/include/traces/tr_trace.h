/*
 * tr_trace.h - routing traces: counts[iteration][layer][rank][expert].
 *
 * A trace is opened from a NumPy .npy file (int32, int64 or uint16, C order,
 * shape [I, L, R, E] or [I, L, E] = one rank; read through mmap, so a trace
 * may be larger than memory) with an optional same-name .json sidecar for
 * its metadata, or from a long CSV with header
 * `iteration,layer,rank,expert,tokens` (read into memory). Counts are token
 * slots: a token routed to k experts counts k times.
 *
 * Errors are negative TR_ codes; tr_error carries the file, the line (CSV)
 * and a sentence saying what is wrong, for the CLI to print as is.
 */
#ifndef FLEXMOE_TR_TRACE_H
#define FLEXMOE_TR_TRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TR_ERRNO_MAP(X)                                                        \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EIO, -3, "cannot read file")                                               \
  X(ENOENT, -4, "no such file")                                                \
  X(EEMPTY, -5, "file is empty")                                               \
  X(EFORMAT, -6, "malformed file")                                             \
  X(ETRUNC, -7, "file is truncated")                                           \
  X(EDTYPE, -8, "unsupported dtype")                                           \
  X(ESHAPE, -9, "unsupported shape")                                           \
  X(ENEG, -10, "negative count")                                               \
  X(EOVERFLOW, -11, "count overflows")                                         \
  X(EMETA, -12, "malformed metadata sidecar")                                  \
  X(EWRITE, -13, "cannot write file")

typedef enum tr_err {
#define TR_ERR_ENUM(name, value, msg) TR_##name = (value),
  TR_ERRNO_MAP(TR_ERR_ENUM)
#undef TR_ERR_ENUM
} tr_err;

const char *tr_strerror(int code);

/* Where and why an operation failed: "FILE:LINE: what" when line > 0. */
typedef struct tr_error {
  int code;
  long line;        /* CSV line number (1 = header), 0 if not applicable */
  char path[512];
  char msg[256];
} tr_error;

typedef enum tr_dtype { TR_INT32 = 1, TR_INT64 = 2, TR_UINT16 = 3 } tr_dtype;

/* Model metadata (sidecar or defaults; 0 = unknown). */
typedef struct tr_meta {
  int top_k;
  int d_model;
  int d_ff;
  int bytes_per_elem;
  int64_t tokens_per_rank; /* tokens (not slots) per rank per iteration */
  char source[512];        /* provenance, free text */
} tr_meta;

typedef struct tr_trace {
  int64_t iterations;
  int layers, ranks, experts;
  tr_dtype dtype;
  tr_meta meta;
  char path[512];
  uint64_t hash; /* content hash of the counts (FNV-1a 64 over the data) */
  /* private */
  const unsigned char *data; /* counts, native element order */
  void *map;                 /* mmap base, or NULL */
  size_t map_len;
  void *owned;               /* heap copy (CSV), or NULL */
} tr_trace;

/* Opens FILE by extension (.npy, .csv). On error *t is zeroed and err set. */
int tr_open(tr_trace *t, const char *path, tr_error *err);
void tr_close(tr_trace *t); /* accepts NULL and zeroed */

/* One count (no bounds check beyond an assert). */
int64_t tr_at(const tr_trace *t, int64_t it, int layer, int rank, int expert);
/* counts of one (iteration, layer) into out[R*E] (row = rank). */
void tr_slice(const tr_trace *t, int64_t it, int layer, int64_t *out);

/* Writes counts [I,L,R,E] as an int32 .npy (int64 if any count exceeds
 * INT32_MAX), with a .json sidecar when meta is non-NULL. Writes to a
 * temporary name and renames, so a failure leaves nothing half-written. */
int tr_write_npy(const char *path, const int64_t *counts, int64_t iterations,
                 int layers, int ranks, int experts, const tr_meta *meta,
                 tr_error *err);

#ifdef __cplusplus
}
#endif
#endif
