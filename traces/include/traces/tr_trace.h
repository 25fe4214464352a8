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
  X(EWRITE, -13, "cannot write file")                                          \
  X(EBUDGET, -14, "larger than the memory budget")

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

/*
 * Physical ranges of every model number a trace, its sidecar, a fit file or
 * a generator carries (docs/traces.md, "Limits"); anything outside is
 * refused with the range in the message. Chosen with room above the largest
 * published models, and so that products the simulator forms stay exact:
 *   iterations       2^24   ~16x the longest training runs (~10^6 steps)
 *   layers           4096   4x the deepest trained transformer (DeepNet, 1000)
 *   ranks, experts   2^20   a million GPUs; PEER's 1024^2 experts
 *   top_k            2^20   and never above the trace's experts
 *   d_model          2^20   ~50x the widest published (18,432, PaLM 540B)
 *   d_ff             2^22   ~50x the widest published (73,728, PaLM 540B)
 *   bytes_per_elem   8      fp8 to fp64
 *   tokens_per_rank  2^40   so tokens x top_k (2^60) x 8 bytes fits int64
 * In a sidecar or tr_meta, 0 means unknown and is accepted for the model
 * numbers (top_k to tokens_per_rank).
 */
#define TR_LIMIT_MAP(X)                                                        \
  X(ITERATIONS, "iterations", 1, INT64_C(16777216))                            \
  X(LAYERS, "layers", 1, INT64_C(4096))                                        \
  X(RANKS, "ranks", 1, INT64_C(1048576))                                       \
  X(EXPERTS, "experts", 1, INT64_C(1048576))                                   \
  X(TOP_K, "top_k", 1, INT64_C(1048576))                                       \
  X(D_MODEL, "d_model", 1, INT64_C(1048576))                                   \
  X(D_FF, "d_ff", 1, INT64_C(4194304))                                         \
  X(BYTES_PER_ELEM, "bytes_per_elem", 1, INT64_C(8))                           \
  X(TOKENS_PER_RANK, "tokens_per_rank", 1, INT64_C(1099511627776))

typedef enum tr_limit_id {
#define TR_LIM_ENUM(id, name, lo, hi) TR_LIM_##id,
  TR_LIMIT_MAP(TR_LIM_ENUM)
#undef TR_LIM_ENUM
  TR_LIM_COUNT
} tr_limit_id;

typedef struct tr_limit {
  const char *name;
  int64_t lo, hi;
} tr_limit;
extern const tr_limit tr_limits[TR_LIM_COUNT];

/* 1 when tr_limits[id].lo <= v <= tr_limits[id].hi. */
int tr_in_limit(tr_limit_id id, int64_t v);

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
  uint64_t hash; /* XXH3-64 of the shape and the counts as little-endian
                    int64 (the same for any dtype or format) */
  /* private */
  const unsigned char *data; /* counts, native element order */
  void *map;                 /* mmap base, or NULL */
  size_t map_len;
  void *owned;               /* heap copy (CSV), or NULL */
} tr_trace;

/* Opens FILE by extension (.npy, .csv). On error *t is zeroed and err set.
 * The memory budget is the default one (tr_open_within with 0). */
int tr_open(tr_trace *t, const char *path, tr_error *err);

/* tr_open with a memory budget: a CSV is read into a dense int64 array
 * only when the array, its per-slice totals and the parsed lines fit in
 * max_memory bytes (0: tr_default_max_memory()); otherwise TR_EBUDGET with
 * the size it would need, before anything that size is allocated. A .npy
 * is mapped, not allocated: the budget does not apply to it. */
int tr_open_within(tr_trace *t, const char *path, uint64_t max_memory, tr_error *err);
void tr_close(tr_trace *t); /* accepts NULL and zeroed */

/* How many times this process called tr_open / tr_open_within (each call,
 * whatever its outcome; thread-safe). A diagnostic: tests use it to prove a
 * caller opens (and hashes) a file once where it means to. */
uint64_t tr_open_count(void);

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

/* Allocation hook of the traces library (defaults malloc/realloc/free;
 * NULLs restore them), so tests can fail the Nth allocation. Set it before
 * any other call, never concurrently with them. */
typedef void *(*tr_malloc_fn)(size_t size);
typedef void *(*tr_realloc_fn)(void *ptr, size_t size);
typedef void (*tr_free_fn)(void *ptr);
void tr_set_allocator(tr_malloc_fn m, tr_realloc_fn r, tr_free_fn f);
void *tr_malloc(size_t size);
void *tr_calloc(size_t n, size_t size); /* zeroed; checks n*size overflow */
void *tr_realloc(void *ptr, size_t size);
void tr_free(void *ptr);

/*
 * Any .npy array (little-endian int32, int64 or uint16, C order, up to
 * TR_NPY_MAXDIM dimensions), mapped read-only: the building block of the
 * trace reader, also used by the importers (other axis orders, per-token
 * expert ids). Same errors as tr_open.
 */
#define TR_NPY_MAXDIM 8
typedef struct tr_npy {
  int ndim;
  int64_t shape[TR_NPY_MAXDIM];
  uint64_t cells;
  tr_dtype dtype;
  const unsigned char *data;
  void *map;
  size_t map_len;
  char path[512];
} tr_npy;
int tr_npy_open(tr_npy *a, const char *path, tr_error *err);
int64_t tr_npy_at(const tr_npy *a, uint64_t index); /* C-order flat index */
void tr_npy_close(tr_npy *a);                        /* accepts NULL and zeroed */

/* Streaming readers call this as they go: the mapped pages of iterations
 * before `it` are released (MADV_DONTNEED; re-read from the file if touched
 * again), so a pass over a trace larger than memory keeps a small resident
 * set. No effect on CSV traces. Never changes what tr_at/tr_slice return. */
void tr_release_before(const tr_trace *t, int64_t it);

/* Sum of the counts of one (iteration, layer) (all ranks, all experts). */
int64_t tr_slice_total(const tr_trace *t, int64_t it, int layer);

/*
 * The memory budget (tr_limits.c). Operations that allocate in proportion
 * to what a file or a configuration says (a CSV read densely, a generator's
 * or a rescale's working set, an importer's slice) compute the bytes first
 * and call tr_check_memory, so a hostile 20-byte file cannot make them
 * allocate gigabytes. max_memory 0 everywhere means the default: half of
 * physical memory, or of the cgroup's memory limit when that is lower.
 */
#define TR_MAX_MEMORY_LIMIT 1152921504606846976.0 /* 2^60 bytes: largest budget */
uint64_t tr_default_max_memory(void);
uint64_t tr_max_memory(uint64_t max_memory); /* 0 -> the default */
/* TR_OK when need <= the budget; else TR_EBUDGET and err says "WHAT needs
 * X, more than the memory budget of Y" (need UINT64_MAX: "more than"). */
int tr_check_memory(uint64_t need, uint64_t max_memory, const char *path, const char *what,
                    tr_error *err);
/* The model numbers of m: each 0 (unknown) or within its range, top_k also
 * at most `experts` (when > 0). TR_OK, or `code` with err saying which
 * field, its value and its range. */
int tr_check_meta(const tr_meta *m, int experts, int code, const char *path,
                  tr_error *err);
/* "4G", "512M", "1.5GiB", "1048576": bytes (K, M, G, T are powers of 1024;
 * an optional B or iB; case-insensitive), 1 to 2^60. TR_OK or TR_EINVAL
 * (*bytes untouched). */
int tr_parse_size(const char *text, uint64_t *bytes);
/* "512 bytes", "1.50 GiB", "14.9 GiB", "466 TiB" into buf; returns buf. */
const char *tr_format_size(double bytes, char *buf, size_t len);
/* Saturating arithmetic for sizes (UINT64_MAX = overflowed). */
uint64_t tr_mul_sat(uint64_t a, uint64_t b);
uint64_t tr_add_sat(uint64_t a, uint64_t b);

/* Reads FILE's .json sidecar path into buf ("x.npy" -> "x.json"). */
void tr_sidecar_path(const char *path, char *buf, size_t len);

/* Fills err (code, path, line, printf-style message) and returns code. */
int tr_seterr(tr_error *err, int code, const char *path, long line,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Streaming .npy writer: the header is written first (shape known up front),
 * then one (iteration, layer) slice of R*E counts at a time in C order, so a
 * trace larger than memory can be produced. dtype TR_INT32 or TR_INT64
 * (TR_UINT16 is read-only); a count that does not fit the dtype, or a
 * negative one, is refused (TR_EOVERFLOW / TR_ENEG) and the writer is
 * aborted. The file appears under its name only on tr_writer_commit
 * (temporary name + rename, sidecar first); tr_writer_abort removes the
 * temporary files. Exactly one of commit/abort must be called.
 */
typedef struct tr_writer {
  void *fp;
  char path[512];
  char tmp[600];
  char side_tmp[600];
  char side_path[512];
  tr_dtype dtype;
  int64_t slices_left; /* I*L - slices written */
  int ranks, experts;
  int failed;
} tr_writer;

int tr_writer_open(tr_writer *w, const char *path, int64_t iterations,
                   int layers, int ranks, int experts, tr_dtype dtype,
                   const tr_meta *meta, tr_error *err);
int tr_writer_put(tr_writer *w, const int64_t *slice, tr_error *err);
int tr_writer_commit(tr_writer *w, tr_error *err);
void tr_writer_abort(tr_writer *w); /* accepts NULL and zeroed */

#ifdef __cplusplus
}
#endif
#endif
