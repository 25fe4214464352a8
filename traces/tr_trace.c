/*
 * tr_trace.c - opening routing traces: NumPy .npy (mmap), long CSV, and the
 * optional .json sidecar with the model metadata.
 *
 * Design. A .npy trace is mapped read-only and never copied: tr_at/tr_slice
 * read elements in place (memcpy, so an unaligned data offset is harmless),
 * which lets a trace be larger than memory. On open one sequential pass over
 * the data checks that no count is negative and that no (iteration, layer)
 * total overflows int64, and computes the content hash; after a successful
 * open every count is >= 0 and every slice total fits in int64. A CSV trace
 * is parsed into a dense int64 array on the heap (it is a text format for
 * small traces and imports); its dimensions come from the largest indices,
 * so one line can describe a huge array: the lines held while parsing and
 * the dense array are checked against the memory budget before they are
 * allocated (tr_open_within).
 *
 * Content hash: XXH3-64 (xxHash 0.8, seed 0) over the shape (I, L, R, E as
 * four little-endian uint64) followed by every count as a little-endian
 * int64 in C order. It depends on the counts only, not on the file's dtype
 * or format, so the same trace stored as int32 .npy, int64 .npy or CSV
 * hashes the same. (Until flexmoe 0.1.0's rescale change it was FNV-1a 64
 * over the same bytes, byte by byte: 30 s for a 3.3 GB trace.) Like
 * tr_slice, this assumes a little-endian host.
 *
 * Errors name the file (and the line for CSV or a malformed sidecar) in
 * tr_error; *t is zeroed on failure and nothing stays mapped or allocated.
 */
#include "traces/tr_trace.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation */
#include <xxhash.h>

static size_t dtype_size(tr_dtype d) {
  return d == TR_INT64 ? 8 : d == TR_INT32 ? 4 : 2;
}

static inline int64_t load_elem(const unsigned char *p, tr_dtype d) {
  switch (d) {
  case TR_INT32: {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
  }
  case TR_INT64: {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
  }
  default: {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  }
}

int64_t tr_at(const tr_trace *t, int64_t it, int layer, int rank, int expert) {
  assert(it >= 0 && it < t->iterations && layer >= 0 && layer < t->layers &&
         rank >= 0 && rank < t->ranks && expert >= 0 && expert < t->experts);
  int64_t idx = ((it * t->layers + layer) * t->ranks + rank) * t->experts + expert;
  return load_elem(t->data + (size_t)idx * dtype_size(t->dtype), t->dtype);
}

void tr_slice(const tr_trace *t, int64_t it, int layer, int64_t *out) {
  assert(it >= 0 && it < t->iterations && layer >= 0 && layer < t->layers);
  size_t n = (size_t)t->ranks * (size_t)t->experts, es = dtype_size(t->dtype);
  const unsigned char *p = t->data + ((size_t)it * t->layers + layer) * n * es;
  switch (t->dtype) {
  case TR_INT64:
    memcpy(out, p, n * 8);
    break;
  case TR_INT32:
    for (size_t i = 0; i < n; i++)
      out[i] = load_elem(p + 4 * i, TR_INT32);
    break;
  default:
    for (size_t i = 0; i < n; i++)
      out[i] = load_elem(p + 2 * i, TR_UINT16);
    break;
  }
}

int64_t tr_slice_total(const tr_trace *t, int64_t it, int layer) {
  size_t n = (size_t)t->ranks * (size_t)t->experts, es = dtype_size(t->dtype);
  const unsigned char *p = t->data + ((size_t)it * t->layers + layer) * n * es;
  int64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += load_elem(p + es * i, t->dtype); /* cannot overflow: checked on open */
  return s;
}

void tr_release_before(const tr_trace *t, int64_t it) {
  if (!t || !t->map || it <= 0)
    return;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t end = (size_t)(t->data - (const unsigned char *)t->map) +
               (size_t)it * t->layers * t->ranks * t->experts * dtype_size(t->dtype);
  end -= end % page; /* whole pages strictly before the iteration */
  if (end > 0)
    madvise(t->map, end, MADV_DONTNEED);
}

void tr_close(tr_trace *t) {
  if (!t)
    return;
  if (t->map)
    munmap(t->map, t->map_len);
  tr_free(t->owned);
  memset(t, 0, sizeof(*t));
}

void tr_sidecar_path(const char *path, char *buf, size_t len) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  size_t stem = strlen(path);
  if (dot && (!slash || dot > slash) &&
      (strcasecmp(dot, ".npy") == 0 || strcasecmp(dot, ".csv") == 0))
    stem = (size_t)(dot - path);
  snprintf(buf, len, "%.*s.json", (int)stem, path);
}

/* The careful pass, only when the fast one saw a negative count or one
 * large enough that a slice total might overflow: the first offending
 * count or slice in C order, as an error. */
static int check_counts(tr_trace *t, tr_error *err) {
  size_t es = dtype_size(t->dtype);
  const unsigned char *p = t->data;
  for (int64_t it = 0; it < t->iterations; it++)
    for (int l = 0; l < t->layers; l++) {
      int64_t total = 0;
      for (int r = 0; r < t->ranks; r++)
        for (int e = 0; e < t->experts; e++, p += es) {
          int64_t v = load_elem(p, t->dtype);
          if (v < 0)
            return tr_seterr(err, TR_ENEG, t->path, 0,
                             "negative count %" PRId64
                             " at [iteration %" PRId64 ", layer %d, rank %d, expert %d]",
                             v, it, l, r, e);
          if (__builtin_add_overflow(total, v, &total))
            return tr_seterr(err, TR_EOVERFLOW, t->path, 0,
                             "the counts of iteration %" PRId64
                             ", layer %d sum to more than int64 can hold",
                             it, l);
        }
    }
  return TR_OK;
}

/* Widens m counts at q to int64 in buf; returns the OR of them. A constant
 * m lets the compiler vectorize the loop (the full chunks). */
static inline uint64_t widen(const unsigned char *q, tr_dtype d, size_t m, int64_t *buf) {
  uint64_t any = 0;
  if (d == TR_INT64) {
    memcpy(buf, q, m * 8);
    for (size_t i = 0; i < m; i++)
      any |= (uint64_t)buf[i];
  } else if (d == TR_INT32) {
    for (size_t i = 0; i < m; i++) {
      int32_t v;
      memcpy(&v, q + 4 * i, 4);
      buf[i] = v;
      any |= (uint64_t)(int64_t)v;
    }
  } else {
    for (size_t i = 0; i < m; i++) {
      uint16_t v;
      memcpy(&v, q + 2 * i, 2);
      buf[i] = v;
      any |= v;
    }
  }
  return any;
}

/*
 * Pass over the counts: hash, and the negative and slice-total overflow
 * checks. The counts stream through a buffer in chunks of SCAN_CHUNK,
 * widened to int64 (little-endian, as the hash defines them; a plain copy
 * for int64 data), hashed with XXH3, and OR-ed together. The OR decides
 * the checks at the end: its sign bit means a negative count; if every
 * count is below 2^b with n 2^b <= 2^63 (n = counts per slice), no slice
 * total can overflow. Otherwise (negative counts, or int64 counts near
 * the limit) check_counts makes the exact pass and names the culprit.
 */
#define SCAN_CHUNK 4096
static int scan_counts(tr_trace *t, tr_error *err) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  if (XXH3_64bits_reset(&st) != XXH_OK)
    return tr_seterr(err, TR_EINVAL, t->path, 0, "cannot start the content hash");
  uint64_t shape[4] = {(uint64_t)t->iterations, (uint64_t)t->layers, (uint64_t)t->ranks,
                       (uint64_t)t->experts};
  XXH3_64bits_update(&st, shape, sizeof(shape));
  size_t es = dtype_size(t->dtype), per_slice = (size_t)t->ranks * (size_t)t->experts;
  size_t per_it = per_slice * (size_t)t->layers, total = per_it * (size_t)t->iterations;
  int64_t buf[SCAN_CHUNK];
  uint64_t any = 0;
  int64_t next_release = 4096;
  for (size_t i0 = 0; i0 < total; i0 += SCAN_CHUNK) {
    if ((int64_t)(i0 / per_it) >= next_release) {
      tr_release_before(t, (int64_t)(i0 / per_it));
      next_release += 4096;
    }
    const unsigned char *q = t->data + i0 * es;
    size_t m = total - i0 < SCAN_CHUNK ? total - i0 : SCAN_CHUNK;
    any |= m == SCAN_CHUNK ? widen(q, t->dtype, SCAN_CHUNK, buf) : widen(q, t->dtype, m, buf);
    XXH3_64bits_update(&st, buf, m * sizeof(int64_t));
  }
  tr_release_before(t, t->iterations);
  int bits = 0; /* n <= 2^bits */
  while (bits < 63 && ((size_t)1 << bits) < per_slice)
    bits++;
  if ((any >> 63) || (bits > 0 && (any >> (63 - bits)) != 0)) {
    int rc = check_counts(t, err);
    tr_release_before(t, t->iterations);
    if (rc)
      return rc;
  }
  t->hash = XXH3_64bits_digest(&st);
  return TR_OK;
}

/* ---- sidecar ----------------------------------------------------------- */

/*
 * Integer key `key` of the sidecar into *out: 0 when absent or null (*out
 * untouched), 1 when present and in [lo, hi], or an error naming the key,
 * its value and the range (`zero_ok`: 0 is also accepted, meaning
 * unknown; `hi_why` says where a bound below the physical range comes
 * from). JSON reals and strings are not integers.
 */
static int side_int(json_t *root, const char *key, int64_t lo, int64_t hi, int zero_ok,
                    const char *hi_why, const char *side, int64_t *out, tr_error *err) {
  json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v))
    return 0;
  const char *zero = zero_ok ? "; 0: unknown" : "";
  if (!json_is_integer(v))
    return tr_seterr(err, TR_EMETA, side, 0,
                     "key '%s' must be an integer between %" PRId64 " and %" PRId64 "%s%s",
                     key, lo, hi, hi_why, zero);
  int64_t x = json_integer_value(v);
  if ((x < lo || x > hi) && !(zero_ok && x == 0))
    return tr_seterr(err, TR_EMETA, side, 0,
                     "key '%s' is %" PRId64 ": it must be between %" PRId64 " and %" PRId64
                     "%s%s",
                     key, x, lo, hi, hi_why, zero);
  *out = x;
  return 1;
}

/* A model number and its alias (d_ff / expert_hidden): either may be
 * given; both must then agree. Returns <0 (error), 0 (absent) or 1. */
static int side_meta(json_t *root, const char *key, const char *alias, tr_limit_id id,
                     int64_t hi, const char *hi_why, const char *side, int64_t *out,
                     tr_error *err) {
  int64_t a = 0, b = 0;
  int ha = side_int(root, key, tr_limits[id].lo, hi, 1, hi_why, side, &a, err);
  if (ha < 0)
    return ha;
  int hb = alias ? side_int(root, alias, tr_limits[id].lo, hi, 1, hi_why, side, &b, err) : 0;
  if (hb < 0)
    return hb;
  if (ha && hb && a != b)
    return tr_seterr(err, TR_EMETA, side, 0,
                     "keys '%s' (%" PRId64 ") and '%s' (%" PRId64 ") disagree", key, a, alias,
                     b);
  if (!ha && !hb)
    return 0;
  *out = ha ? a : b;
  return 1;
}

/* The sidecar's shape keys, where present, match the array's. */
static int side_shape(const tr_trace *t, json_t *root, const char *side, tr_error *err) {
  static const char *dims[] = {"iterations", "layers", "ranks", "experts"};
  static const tr_limit_id dim_lim[] = {TR_LIM_ITERATIONS, TR_LIM_LAYERS, TR_LIM_RANKS,
                                        TR_LIM_EXPERTS};
  int64_t have[] = {t->iterations, t->layers, t->ranks, t->experts}, v;
  for (int i = 0; i < 4; i++) {
    const tr_limit *l = &tr_limits[dim_lim[i]];
    int got = side_int(root, dims[i], l->lo, l->hi, 0, "", side, &v, err);
    if (got < 0)
      return got;
    if (got && v != have[i])
      return tr_seterr(err, TR_EMETA, side, 0,
                       "sidecar says %s = %" PRId64 " but the trace has %" PRId64, dims[i], v,
                       have[i]);
  }
  return TR_OK;
}

/* The model keys into t->meta: top_k (at most the trace's experts),
 * d_model, d_ff, bytes_per_elem, tokens_per_rank (else batch x seq /
 * ranks). */
static int side_model(tr_trace *t, json_t *root, const char *side, tr_error *err) {
  const tr_limit *lk = &tr_limits[TR_LIM_TOP_K];
  int64_t top_hi = t->experts < lk->hi ? t->experts : lk->hi, v;
  int got = side_meta(root, "top_k", NULL, TR_LIM_TOP_K, top_hi,
                      top_hi < lk->hi ? " (the trace's experts)" : "", side, &v, err);
  if (got < 0)
    return got;
  if (got)
    t->meta.top_k = (int)v;
  static const struct {
    const char *key, *alias;
    tr_limit_id id;
  } model[] = {{"d_model", NULL, TR_LIM_D_MODEL},
               {"d_ff", "expert_hidden", TR_LIM_D_FF},
               {"bytes_per_elem", "bytes_per_element", TR_LIM_BYTES_PER_ELEM},
               {"tokens_per_rank", NULL, TR_LIM_TOKENS_PER_RANK}};
  int64_t mv[4] = {0, 0, 0, 0};
  int have_tokens = 0;
  for (int i = 0; i < 4; i++) {
    got = side_meta(root, model[i].key, model[i].alias, model[i].id, tr_limits[model[i].id].hi,
                    "", side, &mv[i], err);
    if (got < 0)
      return got;
    have_tokens |= i == 3 && got && mv[3] > 0; /* 0: unknown, as if absent */
  }
  t->meta.d_model = (int)mv[0];
  t->meta.d_ff = (int)mv[1];
  t->meta.bytes_per_elem = (int)mv[2];
  t->meta.tokens_per_rank = mv[3];
  int64_t batch = 0, seq = 0;
  int hb = side_int(root, "batch", 1, INT32_MAX, 0, "", side, &batch, err);
  int hs = hb < 0 ? 0 : side_int(root, "seq", 1, INT32_MAX, 0, "", side, &seq, err);
  if (hb < 0 || hs < 0)
    return hb < 0 ? hb : hs;
  if (!have_tokens && hb && hs) { /* the recorder's global batch x sequence length */
    const tr_limit *l = &tr_limits[TR_LIM_TOKENS_PER_RANK];
    int64_t tok = batch * seq / t->ranks; /* < 2^62: both below 2^31 */
    if (tok < l->lo || tok > l->hi)
      return tr_seterr(err, TR_EMETA, side, 0,
                       "batch x seq / ranks = %" PRId64 " x %" PRId64 " / %d = %" PRId64
                       " tokens per rank: it must be between %" PRId64 " and %" PRId64,
                       batch, seq, t->ranks, tok, l->lo, l->hi);
    t->meta.tokens_per_rank = tok;
  }
  return TR_OK;
}

/* t->meta.source: the sidecar's "source", else "name: corpus". */
static int side_source(tr_trace *t, json_t *root, const char *side, tr_error *err) {
  json_t *src = json_object_get(root, "source");
  json_t *name = json_object_get(root, "name");
  json_t *corpus = json_object_get(root, "corpus");
  if (src && !json_is_string(src))
    return tr_seterr(err, TR_EMETA, side, 0, "key 'source' must be a string");
  if (src)
    snprintf(t->meta.source, sizeof(t->meta.source), "%s", json_string_value(src));
  else if (json_is_string(name))
    snprintf(t->meta.source, sizeof(t->meta.source), "%s%s%s",
             json_string_value(name), json_is_string(corpus) ? ": " : "",
             json_is_string(corpus) ? json_string_value(corpus) : "");
  return TR_OK;
}

/*
 * Reads the same-name .json sidecar, if any, into t->meta. Accepted keys
 * (any may be absent; 0 = unknown), each within its physical range
 * (tr_limits): top_k (also at most the trace's experts), d_model, d_ff (or
 * expert_hidden), bytes_per_elem (or bytes_per_element), tokens_per_rank
 * (or, failing that, batch x seq / ranks as recorded by the real traces'
 * recorder), source (else "name" and "corpus" make one); iterations,
 * layers, ranks and experts, when present, must match the array's shape.
 */
static int read_sidecar(tr_trace *t, tr_error *err) {
  char side[sizeof(t->path) + 8];
  tr_sidecar_path(t->path, side, sizeof(side));
  if (access(side, F_OK) != 0)
    return TR_OK;
  json_error_t jerr;
  json_t *root = json_load_file(side, 0, &jerr);
  if (!root)
    return tr_seterr(err, TR_EMETA, side, jerr.line > 0 ? jerr.line : 0,
                     "malformed JSON sidecar: %s", jerr.text);
  int rc;
  if (!json_is_object(root))
    rc = tr_seterr(err, TR_EMETA, side, 0, "sidecar is not a JSON object");
  else if (!(rc = side_shape(t, root, side, err)) && /* first: top_k <= experts needs it */
           !(rc = side_model(t, root, side, err)))
    rc = side_source(t, root, side, err);
  json_decref(root);
  return rc;
}

/* ---- .npy --------------------------------------------------------------- */

/* Finds `'key':` (single or double quotes) in the header dict; returns the
 * position after the colon and spaces, or NULL. */
static const char *npy_key(const char *h, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = h; (p = strpbrk(p, "'\"")) != NULL; p++) {
    if (strncmp(p + 1, key, kl) == 0 && p[kl + 1] == p[0]) {
      const char *q = p + kl + 2;
      while (*q == ' ')
        q++;
      if (*q != ':')
        continue;
      q++;
      while (*q == ' ')
        q++;
      return q;
    }
  }
  return NULL;
}

static int npy_header(tr_npy *a, const char *h, tr_error *err) {
  const char *path = a->path;
  const char *d = npy_key(h, "descr");
  if (!d)
    return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header has no 'descr'");
  if (*d != '\'' && *d != '"')
    return tr_seterr(err, TR_EDTYPE, path, 0,
                     "structured dtypes are not supported (int32, int64 or uint16 only)");
  char descr[32];
  const char *end = strchr(d + 1, *d);
  if (!end || end - d - 1 >= (long)sizeof(descr))
    return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header 'descr' is malformed");
  snprintf(descr, sizeof(descr), "%.*s", (int)(end - d - 1), d + 1);
  if (descr[0] == '>' && descr[1] && strcmp(descr + 1, "u1") && strcmp(descr + 1, "i1"))
    return tr_seterr(err, TR_EDTYPE, path, 0,
                     "big-endian dtype '%s' is not supported; save with "
                     "arr.astype('<%s')",
                     descr, descr + 1);
  const char *code = (descr[0] == '<' || descr[0] == '|' || descr[0] == '=') ? descr + 1 : descr;
  if (strcmp(code, "i4") == 0)
    a->dtype = TR_INT32;
  else if (strcmp(code, "i8") == 0)
    a->dtype = TR_INT64;
  else if (strcmp(code, "u2") == 0)
    a->dtype = TR_UINT16;
  else
    return tr_seterr(err, TR_EDTYPE, path, 0,
                     "dtype '%s' is not supported (int32, int64 or uint16 only)", descr);
  const char *f = npy_key(h, "fortran_order");
  if (!f)
    return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header has no 'fortran_order'");
  if (strncmp(f, "True", 4) == 0)
    return tr_seterr(err, TR_EFORMAT, path, 0,
                     "Fortran (column-major) order is not supported; save a C-order "
                     "array (np.ascontiguousarray)");
  if (strncmp(f, "False", 5) != 0)
    return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header 'fortran_order' is malformed");
  const char *s = npy_key(h, "shape");
  if (!s || *s != '(')
    return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header has no 'shape' tuple");
  s++;
  a->ndim = 0;
  for (;;) {
    while (*s == ' ')
      s++;
    if (*s == ')')
      break;
    if (!isdigit((unsigned char)*s))
      return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header 'shape' is malformed");
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (errno)
      return tr_seterr(err, TR_ESHAPE, path, 0, "a dimension of 'shape' overflows");
    if (a->ndim == TR_NPY_MAXDIM)
      return tr_seterr(err, TR_ESHAPE, path, 0, "shape has more than %d dimensions",
                       TR_NPY_MAXDIM);
    a->shape[a->ndim++] = v;
    s = e;
    while (*s == ' ' || *s == 'L')
      s++;
    if (*s == ',')
      s++;
    else if (*s != ')')
      return tr_seterr(err, TR_EFORMAT, path, 0, "NumPy header 'shape' is malformed");
  }
  return TR_OK;
}

void tr_npy_close(tr_npy *a) {
  if (!a)
    return;
  if (a->map)
    munmap(a->map, a->map_len);
  memset(a, 0, sizeof(*a));
}

int64_t tr_npy_at(const tr_npy *a, uint64_t index) {
  return load_elem(a->data + index * dtype_size(a->dtype), a->dtype);
}

/* The .npy preamble of the size bytes at b: the magic, a known format
 * version (1: 2-byte header length, 2 and 3: 4-byte) and a header that
 * fits the file; *hstart and *hlen locate the header. */
static int npy_preamble(const unsigned char *b, size_t size, const char *path, size_t *hstart,
                        size_t *hlen, tr_error *err) {
  if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
    return tr_seterr(err, size < 10 && memcmp(b, "\x93NUMPY", size < 6 ? size : 6) == 0
                              ? TR_ETRUNC : TR_EFORMAT,
                     path, 0, "not a NumPy .npy file (bad magic)");
  int major = b[6];
  if (major == 1) {
    *hlen = (size_t)b[8] | (size_t)b[9] << 8;
    *hstart = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12)
      return tr_seterr(err, TR_ETRUNC, path, 0, "NumPy header is truncated");
    *hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    *hstart = 12;
  } else {
    return tr_seterr(err, TR_EFORMAT, path, 0, "unsupported .npy format version %d", major);
  }
  if (*hlen > size - *hstart)
    return tr_seterr(err, TR_ETRUNC, path, 0,
                     "NumPy header is truncated (%zu header bytes, file has %zu)", *hlen,
                     size - *hstart);
  return TR_OK;
}

/* The data a's header describes (its shape and dtype) is exactly the
 * `left` bytes the file holds after the header: a->cells set. What the
 * header claims is checked against what the file holds before any of it
 * is read: the product saturates instead of wrapping. */
static int npy_data_fits(tr_npy *a, size_t left, const char *path, tr_error *err) {
  uint64_t cells = 1;
  char shape[160] = "(";
  for (int i = 0; i < a->ndim; i++) {
    cells = a->shape[i] == 0 ? 0 : cells ? tr_mul_sat(cells, (uint64_t)a->shape[i]) : 0;
    size_t n = strlen(shape);
    snprintf(shape + n, sizeof(shape) - n, "%s%" PRId64, i ? ", " : "", a->shape[i]);
  }
  strncat(shape, ")", sizeof(shape) - strlen(shape) - 1);
  uint64_t need = tr_mul_sat(cells, dtype_size(a->dtype));
  if (need > left) {
    char hs[32];
    return tr_seterr(err, TR_ETRUNC, path, 0,
                     "file is truncated: its header claims shape %s, %s%s (%" PRIu64
                     " bytes) of data, but the file holds %zu",
                     shape, need == UINT64_MAX ? "more than " : "",
                     tr_format_size((double)need, hs, sizeof(hs)), need, left);
  }
  if (need < left)
    return tr_seterr(err, TR_EFORMAT, path, 0,
                     "file has %" PRIu64 " bytes after the data its shape describes",
                     (uint64_t)(left - need));
  a->cells = cells;
  return TR_OK;
}

int tr_npy_open(tr_npy *a, const char *path, tr_error *err) {
  memset(a, 0, sizeof(*a));
  snprintf(a->path, sizeof(a->path), "%s", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return tr_seterr(err, errno == ENOENT ? TR_ENOENT : TR_EIO, path, 0, "cannot open: %s",
                     strerror(errno));
  int rc = TR_OK;
  char *h = NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = tr_seterr(err, TR_EIO, path, 0, "not a regular file");
    goto fail;
  }
  if (st.st_size == 0) {
    rc = tr_seterr(err, TR_EEMPTY, path, 0, "file is empty (0 bytes)");
    goto fail;
  }
  size_t size = (size_t)st.st_size;
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    rc = tr_seterr(err, TR_EIO, path, 0, "cannot map: %s", strerror(errno));
    goto fail;
  }
  a->map = map;
  a->map_len = size;
  const unsigned char *b = map;
  size_t hlen = 0, hstart = 0;
  if ((rc = npy_preamble(b, size, path, &hstart, &hlen, err)))
    goto fail;
  h = tr_malloc(hlen + 1);
  if (!h) {
    rc = tr_seterr(err, TR_ENOMEM, path, 0, "out of memory");
    goto fail;
  }
  memcpy(h, b + hstart, hlen);
  h[hlen] = '\0';
  if ((rc = npy_header(a, h, err)) || (rc = npy_data_fits(a, size - hstart - hlen, path, err)))
    goto fail;
  a->data = b + hstart + hlen;
  tr_free(h);
  close(fd);
  return TR_OK;
fail:
  tr_free(h);
  close(fd);
  tr_npy_close(a);
  return rc;
}

static int open_npy(tr_trace *t, tr_error *err) {
  tr_npy a;
  int rc = tr_npy_open(&a, t->path, err);
  if (rc)
    return rc;
  int64_t shape[4];
  if (a.ndim < 3 || a.ndim > 4) {
    rc = tr_seterr(err, TR_ESHAPE, t->path, 0,
                   "shape has %d dimension%s; expected [I, L, R, E] or [I, L, E]", a.ndim,
                   a.ndim == 1 ? "" : "s");
    goto fail;
  }
  memcpy(shape, a.shape, sizeof(shape));
  if (a.ndim == 3) {
    shape[3] = shape[2];
    shape[2] = 1;
  }
  if (shape[0] == 0) {
    rc = tr_seterr(err, TR_EEMPTY, t->path, 0, "trace has no iterations (shape[0] = 0)");
    goto fail;
  }
  static const tr_limit_id lim[] = {TR_LIM_ITERATIONS, TR_LIM_LAYERS, TR_LIM_RANKS,
                                     TR_LIM_EXPERTS};
  for (int i = 0; i < 4; i++)
    if (!tr_in_limit(lim[i], shape[i])) {
      const tr_limit *l = &tr_limits[lim[i]];
      rc = tr_seterr(err, TR_ESHAPE, t->path, 0,
                     "trace has %" PRId64 " %s: %s must be between %" PRId64 " and %" PRId64,
                     shape[i], l->name, l->name, l->lo, l->hi);
      goto fail;
    }
  t->iterations = shape[0];
  t->layers = (int)shape[1];
  t->ranks = (int)shape[2];
  t->experts = (int)shape[3];
  t->dtype = a.dtype;
  t->data = a.data;
  t->map = a.map;
  t->map_len = a.map_len;
  madvise(t->map, t->map_len, MADV_SEQUENTIAL);
  rc = scan_counts(t, err);
  madvise(t->map, t->map_len, MADV_NORMAL);
  return rc;
fail:
  tr_npy_close(&a);
  return rc;
}

/* ---- long CSV ------------------------------------------------------------ */

typedef struct csv_rec {
  int64_t v[5]; /* iteration, layer, rank, expert, tokens */
  long line;
} csv_rec;

static const char *CSV_FIELDS[5] = {"iteration", "layer", "rank", "expert", "tokens"};
/* An index must be below its dimension's largest value (tr_limits). */
static const tr_limit_id CSV_LIMIT[4] = {TR_LIM_ITERATIONS, TR_LIM_LAYERS, TR_LIM_RANKS,
                                         TR_LIM_EXPERTS};

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

/* Parses one data line into r; returns TR_OK or an error with the line. */
static int csv_line(tr_trace *t, char *s, long line, csv_rec *r, tr_error *err) {
  char *field[6];
  int n = 0;
  field[n++] = s;
  for (char *p = s; *p; p++)
    if (*p == ',') {
      *p = '\0';
      if (n == 6)
        break;
      field[n++] = p + 1;
    }
  if (n != 5)
    return tr_seterr(err, TR_EFORMAT, t->path, line,
                     "expected 5 comma-separated fields "
                     "(iteration,layer,rank,expert,tokens), found %s%d",
                     n > 5 ? "more than " : "", n > 5 ? 5 : n);
  for (int i = 0; i < 5; i++) {
    char *f = trim(field[i]), *end;
    errno = 0;
    long long v = strtoll(f, &end, 10);
    if (end == f || *end)
      return tr_seterr(err, TR_EFORMAT, t->path, line, "%s '%.40s' is not an integer",
                       CSV_FIELDS[i], f);
    if (i == 4) {
      if (errno == ERANGE && v < 0)
        return tr_seterr(err, TR_ENEG, t->path, line, "negative count '%.40s'", f);
      if (errno == ERANGE)
        return tr_seterr(err, TR_EOVERFLOW, t->path, line,
                         "count '%.40s' overflows a 64-bit integer", f);
      if (v < 0)
        return tr_seterr(err, TR_ENEG, t->path, line, "negative count %lld", v);
    } else if (errno == ERANGE || v < 0 || v >= tr_limits[CSV_LIMIT[i]].hi) {
      const tr_limit *l = &tr_limits[CSV_LIMIT[i]];
      return tr_seterr(err, TR_EFORMAT, t->path, line,
                       "%s %.40s is out of range: indices go from 0 to %" PRId64
                       " (%s must be between %" PRId64 " and %" PRId64 ")",
                       CSV_FIELDS[i], f, l->hi - 1, l->name, l->lo, l->hi);
    }
    r->v[i] = v;
  }
  r->line = line;
  return TR_OK;
}

/* Bytes held while a CSV becomes dense: the parsed lines, the int64 counts
 * and one int64 total per (iteration, layer); saturates at UINT64_MAX. */
static uint64_t csv_need(uint64_t cells, uint64_t slices, size_t nrec) {
  uint64_t need = tr_mul_sat(cells, sizeof(int64_t));
  need = tr_add_sat(need, tr_mul_sat(slices, sizeof(int64_t)));
  return tr_add_sat(need, tr_mul_sat(nrec, sizeof(csv_rec)));
}

/* A CSV's parsed data lines (open_csv): each line's five values, and the
 * largest iteration, layer, rank and expert seen. */
typedef struct csv_lines {
  csv_rec *recs;
  size_t n, cap;
  int64_t maxv[4];
} csv_lines;

/* Line 1 (s, trimmed) is the header, spaces aside. */
static int csv_header(const tr_trace *t, const char *s, tr_error *err) {
  char hdr[128];
  size_t k = 0;
  for (const char *p = s; *p && k + 1 < sizeof(hdr); p++) /* header without spaces */
    if (!isspace((unsigned char)*p))
      hdr[k++] = *p;
  hdr[k] = '\0';
  if (strcmp(hdr, "iteration,layer,rank,expert,tokens") != 0)
    return tr_seterr(err, TR_EFORMAT, t->path, 1,
                     "expected the header 'iteration,layer,rank,expert,tokens', "
                     "found '%.60s'",
                     s);
  return TR_OK;
}

/* Data line `line` (s, trimmed, not blank; csv_line splits it in place)
 * parsed into c, its room grown within max_memory first. */
static int csv_add(tr_trace *t, csv_lines *c, char *s, long line, uint64_t max_memory,
                   tr_error *err) {
  int rc;
  if (c->n == c->cap) {
    size_t ncap = c->cap ? 2 * c->cap : 1024;
    char what[96];
    snprintf(what, sizeof(what), "holding %zu parsed CSV lines", ncap);
    if ((rc = tr_check_memory(csv_need(0, 0, ncap), max_memory, t->path, what, err))) {
      if (err)
        err->line = line;
      return rc;
    }
    csv_rec *nr = tr_realloc(c->recs, ncap * sizeof(*c->recs));
    if (!nr)
      return tr_seterr(err, TR_ENOMEM, t->path, line, "out of memory");
    c->recs = nr;
    c->cap = ncap;
  }
  if ((rc = csv_line(t, s, line, &c->recs[c->n], err)))
    return rc;
  for (int i = 0; i < 4; i++)
    if (c->recs[c->n].v[i] > c->maxv[i])
      c->maxv[i] = c->recs[c->n].v[i];
  c->n++;
  return TR_OK;
}

/* Every line of fp into c: the header, then the data lines (blank ones
 * allowed); at least one. */
static int csv_read(tr_trace *t, FILE *fp, csv_lines *c, uint64_t max_memory, tr_error *err) {
  char *buf = NULL;
  size_t cap = 0;
  long line = 0;
  ssize_t got;
  int rc = TR_OK;
  while (!rc && (got = getline(&buf, &cap, fp)) >= 0) {
    line++;
    if ((size_t)got != strlen(buf)) {
      rc = tr_seterr(err, TR_EFORMAT, t->path, line, "line contains a NUL byte");
      break;
    }
    char *s = trim(buf);
    if (line == 1)
      rc = csv_header(t, s, err);
    else if (*s)
      rc = csv_add(t, c, s, line, max_memory, err);
  }
  free(buf); /* getline's buffer comes from malloc */
  if (rc)
    return rc;
  if (ferror(fp))
    return tr_seterr(err, TR_EIO, t->path, line, "read error");
  if (line == 0)
    return tr_seterr(err, TR_EEMPTY, t->path, 0, "file is empty (0 bytes)");
  if (c->n == 0)
    return tr_seterr(err, TR_EEMPTY, t->path, 0, "CSV has a header but no data lines");
  return TR_OK;
}

/* The dense trace of c's lines (t->owned, t->data), the counts of a cell
 * and of an (iteration, layer) summed without overflow, within max_memory. */
static int csv_dense(tr_trace *t, const csv_lines *c, uint64_t max_memory, tr_error *err) {
  const int64_t *maxv = c->maxv;
  uint64_t cells = 1;
  for (int i = 0; i < 4; i++)
    cells = tr_mul_sat(cells, (uint64_t)maxv[i] + 1);
  uint64_t slices = tr_mul_sat((uint64_t)maxv[0] + 1, (uint64_t)maxv[1] + 1);
  char what[200];
  snprintf(what, sizeof(what),
           "the largest indices make a dense trace of %" PRId64 " x %" PRId64 " x %" PRId64
           " x %" PRId64 " counts; reading it",
           maxv[0] + 1, maxv[1] + 1, maxv[2] + 1, maxv[3] + 1);
  int rc = tr_check_memory(csv_need(cells, slices, c->cap), max_memory, t->path, what, err);
  if (rc)
    return rc;
  t->iterations = maxv[0] + 1;
  t->layers = (int)maxv[1] + 1;
  t->ranks = (int)maxv[2] + 1;
  t->experts = (int)maxv[3] + 1;
  t->dtype = TR_INT64;
  int64_t *dense = tr_calloc((size_t)cells, sizeof(int64_t));
  int64_t *totals = tr_calloc((size_t)(t->iterations * t->layers), sizeof(int64_t));
  t->owned = dense;
  if (!dense || !totals) {
    rc = tr_seterr(err, TR_ENOMEM, t->path, 0, "out of memory for %" PRIu64 " cells", cells);
    goto done;
  }
  for (size_t k = 0; k < c->n; k++) {
    const int64_t *v = c->recs[k].v;
    int64_t slice = v[0] * t->layers + v[1];
    int64_t idx = (slice * t->ranks + v[2]) * t->experts + v[3];
    if (v[4] > INT64_MAX - dense[idx]) {
      rc = tr_seterr(err, TR_EOVERFLOW, t->path, c->recs[k].line,
                     "counts for (iteration %" PRId64 ", layer %" PRId64 ", rank %" PRId64
                     ", expert %" PRId64 ") sum to more than a 64-bit integer holds",
                     v[0], v[1], v[2], v[3]);
      goto done;
    }
    if (v[4] > INT64_MAX - totals[slice]) {
      rc = tr_seterr(err, TR_EOVERFLOW, t->path, c->recs[k].line,
                     "the counts of iteration %" PRId64 ", layer %" PRId64
                     " sum to more than a 64-bit integer holds",
                     v[0], v[1]);
      goto done;
    }
    dense[idx] += v[4];
    totals[slice] += v[4];
  }
  t->data = (const unsigned char *)dense;
done:
  tr_free(totals);
  return rc;
}

static int open_csv(tr_trace *t, uint64_t max_memory, tr_error *err) {
  FILE *fp = fopen(t->path, "r");
  if (!fp)
    return tr_seterr(err, errno == ENOENT ? TR_ENOENT : TR_EIO, t->path, 0,
                     "cannot open: %s", strerror(errno));
  csv_lines c = {.maxv = {-1, -1, -1, -1}};
  struct stat st;
  int rc;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode))
    rc = tr_seterr(err, TR_EIO, t->path, 0, "not a regular file");
  else if (!(rc = csv_read(t, fp, &c, max_memory, err)) &&
           !(rc = csv_dense(t, &c, max_memory, err)))
    rc = scan_counts(t, err);
  tr_free(c.recs);
  fclose(fp);
  return rc;
}

int tr_open(tr_trace *t, const char *path, tr_error *err) {
  return tr_open_within(t, path, 0, err);
}

/* tr_open_within calls so far (tr_open_count). */
static atomic_uint_fast64_t open_calls;

uint64_t tr_open_count(void) { return (uint64_t)atomic_load(&open_calls); }

int tr_open_within(tr_trace *t, const char *path, uint64_t max_memory, tr_error *err) {
  atomic_fetch_add(&open_calls, 1);
  if (err)
    memset(err, 0, sizeof(*err));
  if (!t || !path)
    return tr_seterr(err, TR_EINVAL, path, 0, "no trace file given");
  memset(t, 0, sizeof(*t));
  if (strlen(path) >= sizeof(t->path))
    return tr_seterr(err, TR_EINVAL, path, 0, "path is too long");
  snprintf(t->path, sizeof(t->path), "%s", path);
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  int rc;
  if (dot && (!slash || dot > slash) && strcasecmp(dot, ".npy") == 0)
    rc = open_npy(t, err);
  else if (dot && (!slash || dot > slash) && strcasecmp(dot, ".csv") == 0)
    rc = open_csv(t, max_memory, err);
  else if (access(path, F_OK) != 0)
    rc = tr_seterr(err, TR_ENOENT, path, 0, "cannot open: %s", strerror(errno));
  else
    rc = tr_seterr(err, TR_EFORMAT, path, 0,
                   "unknown trace format (expected a .npy or .csv file)");
  if (rc == TR_OK)
    rc = read_sidecar(t, err);
  if (rc != TR_OK) {
    tr_close(t);
    return rc;
  }
  return TR_OK;
}
