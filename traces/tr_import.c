/*
 * tr_import.c - importers (see tr_import.h). Each reads its input through
 * mmap (tr_npy / tr_trace) and writes through tr_writer, one slice at a
 * time, so neither side has to fit in memory.
 */
#include "traces/tr_import.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static tr_dtype dtype_for(int64_t most) { return most > INT32_MAX ? TR_INT64 : TR_INT32; }

/* The shape [I, L, R, E] within the physical ranges (tr_limits): TR_OK, or
 * TR_EEMPTY (no iterations) / TR_ESHAPE naming the axis and its range. */
static int check_dims(const int64_t dim[4], const char *in, tr_error *err) {
  static const tr_limit_id lim[] = {TR_LIM_ITERATIONS, TR_LIM_LAYERS, TR_LIM_RANKS,
                                    TR_LIM_EXPERTS};
  for (int i = 0; i < 4; i++)
    if (!tr_in_limit(lim[i], dim[i])) {
      const tr_limit *l = &tr_limits[lim[i]];
      return tr_seterr(err, i == 0 && dim[i] < 1 ? TR_EEMPTY : TR_ESHAPE, in, 0,
                       "the array has %" PRId64 " %s: %s must be between %" PRId64
                       " and %" PRId64,
                       dim[i], l->name, l->name, l->lo, l->hi);
    }
  return TR_OK;
}

int tr_import_trace(const tr_trace *t, int64_t it0, int64_t it1, const char *out,
                    const tr_meta *meta, tr_error *err) {
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it0 < 0 || it0 >= it1)
    return tr_seterr(err, TR_EINVAL, t->path, 0, "empty iteration range");
  size_t n = (size_t)t->ranks * t->experts;
  int64_t *slice = tr_malloc(n * sizeof(int64_t));
  if (!slice)
    return tr_seterr(err, TR_ENOMEM, out, 0, "out of memory");
  int64_t most = 0;
  for (int64_t it = it0; it < it1; it++) { /* a pass to choose the dtype */
    if ((it - it0) % 4096 == 0)
      tr_release_before(t, it);
    for (int l = 0; l < t->layers; l++) {
      tr_slice(t, it, l, slice);
      for (size_t k = 0; k < n; k++)
        most = slice[k] > most ? slice[k] : most;
    }
  }
  tr_writer w;
  int rc = tr_writer_open(&w, out, it1 - it0, t->layers, t->ranks, t->experts, dtype_for(most),
                          meta, err);
  for (int64_t it = it0; rc == TR_OK && it < it1; it++) {
    if ((it - it0) % 4096 == 0)
      tr_release_before(t, it);
    for (int l = 0; rc == TR_OK && l < t->layers; l++) {
      tr_slice(t, it, l, slice);
      rc = tr_writer_put(&w, slice, err);
    }
  }
  if (rc == TR_OK)
    rc = tr_writer_commit(&w, err);
  tr_free(slice);
  return rc;
}

/* Axis names into perm[k] = which canonical axis (0 I, 1 L, 2 R, 3 E) input
 * axis k is; returns the number of axes or -1. */
static int parse_axes(const char *axes, int perm[4]) {
  static const char *names[] = {"iteration", "layer", "rank", "expert"};
  static const char letters[] = "ILRE";
  int n = 0, seen[4] = {0};
  const char *s = axes;
  int compact = !strchr(axes, ',') && strlen(axes) <= 4;
  while (*s) {
    int axis = -1;
    if (compact) {
      const char *c = strchr(letters, toupper((unsigned char)*s));
      axis = c && *s ? (int)(c - letters) : -1;
      s++;
    } else {
      size_t len = strcspn(s, ",");
      for (int a = 0; a < 4; a++)
        if ((len == 1 && toupper((unsigned char)*s) == letters[a]) ||
            (len == strlen(names[a]) && strncmp(s, names[a], len) == 0) ||
            (len == strlen(names[a]) + 1 && strncmp(s, names[a], len - 1) == 0 &&
             s[len - 1] == 's'))
          axis = a;
      s += len;
      if (*s == ',')
        s++;
    }
    if (axis < 0 || seen[axis] || n == 4)
      return -1;
    seen[axis] = 1;
    perm[n++] = axis;
  }
  if (n < 3 || !seen[0] || !seen[1] || !seen[3] || (n == 3 && seen[2]))
    return -1;
  return n;
}

/* The output slice of R x E counts, within the budget. */
static int slice_alloc(int64_t R, int64_t E, uint64_t max_memory, const char *in,
                       int64_t **slice, tr_error *err) {
  char what[128];
  snprintf(what, sizeof(what), "one slice of %" PRId64 " ranks x %" PRId64 " experts", R, E);
  uint64_t need = tr_mul_sat(tr_mul_sat((uint64_t)R, (uint64_t)E), sizeof(int64_t));
  int rc = tr_check_memory(need, max_memory, in, what, err);
  if (rc)
    return rc;
  *slice = tr_malloc((size_t)need);
  return *slice ? TR_OK : tr_seterr(err, TR_ENOMEM, in, 0, "out of memory");
}

int tr_import_axes(const char *in, const char *axes, const char *out, uint64_t max_memory,
                   tr_error *err) {
  int perm[4];
  int n = parse_axes(axes, perm);
  if (n < 0)
    return tr_seterr(err, TR_EINVAL, in, 0,
                     "--axes '%s' must name iteration, layer, expert and optionally rank once "
                     "each (e.g. L,I,E,R or LIER)",
                     axes);
  tr_npy a;
  int rc = tr_npy_open(&a, in, err);
  if (rc)
    return rc;
  int64_t dim[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  int64_t *slice = NULL;
  if (a.ndim != n) {
    rc = tr_seterr(err, TR_ESHAPE, in, 0, "array has %d axes but --axes names %d", a.ndim, n);
    goto done;
  }
  int64_t st = 1;
  for (int k = n - 1; k >= 0; k--) {
    dim[perm[k]] = a.shape[k];
    stride[perm[k]] = st;
    st *= a.shape[k];
  }
  if ((rc = check_dims(dim, in, err)))
    goto done;
  int64_t most = 0;
  for (uint64_t k = 0; k < a.cells; k++) {
    int64_t v = tr_npy_at(&a, k);
    if (v < 0) {
      rc = tr_seterr(err, TR_ENEG, in, 0, "negative count %" PRId64 " at flat index %" PRIu64, v, k);
      goto done;
    }
    most = v > most ? v : most;
  }
  if ((rc = slice_alloc(dim[2], dim[3], max_memory, in, &slice, err)))
    goto done;
  tr_meta meta = {0};
  snprintf(meta.source, sizeof(meta.source), "imported from %s (axes %s)", in, axes);
  tr_writer w;
  rc = tr_writer_open(&w, out, dim[0], (int)dim[1], (int)dim[2], (int)dim[3], dtype_for(most),
                      &meta, err);
  for (int64_t i = 0; rc == TR_OK && i < dim[0]; i++)
    for (int64_t l = 0; rc == TR_OK && l < dim[1]; l++) {
      for (int64_t r = 0; r < dim[2]; r++)
        for (int64_t e = 0; e < dim[3]; e++)
          slice[r * dim[3] + e] = tr_npy_at(
              &a, (uint64_t)(i * stride[0] + l * stride[1] + r * stride[2] + e * stride[3]));
      rc = tr_writer_put(&w, slice, err);
    }
  if (rc == TR_OK)
    rc = tr_writer_commit(&w, err);
done:
  tr_free(slice);
  tr_npy_close(&a);
  return rc;
}

int tr_import_ids(const char *in, int experts, const char *out, uint64_t max_memory,
                  tr_error *err) {
  tr_npy a;
  int rc = tr_npy_open(&a, in, err);
  if (rc)
    return rc;
  int64_t *slice = NULL;
  if (a.ndim != 4 && a.ndim != 5) {
    rc = tr_seterr(err, TR_ESHAPE, in, 0,
                   "expert-id arrays have shape [I, L, R, T, k] or [I, L, T, k], not %d axes",
                   a.ndim);
    goto done;
  }
  int64_t I = a.shape[0], L = a.shape[1], R = a.ndim == 5 ? a.shape[2] : 1;
  int64_t T = a.shape[a.ndim - 2], K = a.shape[a.ndim - 1];
  if ((rc = check_dims((int64_t[4]){I, L, R, 1}, in, err)))
    goto done;
  const tr_limit *lt = &tr_limits[TR_LIM_TOKENS_PER_RANK], *lk = &tr_limits[TR_LIM_TOP_K];
  if (T < lt->lo || T > lt->hi || K < lk->lo || K > lk->hi) {
    rc = tr_seterr(err, TR_ESHAPE, in, 0,
                   "the array has %" PRId64 " tokens x %" PRId64
                   " choices: tokens_per_rank must be between %" PRId64 " and %" PRId64
                   ", top_k between %" PRId64 " and %" PRId64,
                   T, K, lt->lo, lt->hi, lk->lo, lk->hi);
    goto done;
  }
  int64_t most = -1;
  for (uint64_t k = 0; k < a.cells; k++) {
    int64_t v = tr_npy_at(&a, k);
    most = v > most ? v : most;
  }
  const tr_limit *le = &tr_limits[TR_LIM_EXPERTS];
  if (experts <= 0) {
    if (most < 0) {
      rc = tr_seterr(err, TR_EFORMAT, in, 0, "no expert id found (all slots negative)");
      goto done;
    }
    if (most >= le->hi) {
      rc = tr_seterr(err, TR_EFORMAT, in, 0,
                     "expert id %" PRId64 " is out of range: ids go from 0 to %" PRId64
                     " (experts must be between %" PRId64 " and %" PRId64 ")",
                     most, le->hi - 1, le->lo, le->hi);
      goto done;
    }
    experts = (int)most + 1;
  } else if (most >= experts) {
    rc = tr_seterr(err, TR_EFORMAT, in, 0, "expert id %" PRId64 " is not below --experts %d",
                   most, experts);
    goto done;
  }
  if (K > experts) {
    rc = tr_seterr(err, TR_ESHAPE, in, 0,
                   "%" PRId64 " expert choices per token but %d experts: top_k must be between "
                   "1 and the experts",
                   K, experts);
    goto done;
  }
  size_t cells = (size_t)R * experts;
  if ((rc = slice_alloc(R, experts, max_memory, in, &slice, err)))
    goto done;
  tr_meta meta = {.top_k = (int)K, .tokens_per_rank = T};
  snprintf(meta.source, sizeof(meta.source), "imported from per-token expert ids %s", in);
  tr_writer w;
  rc = tr_writer_open(&w, out, I, (int)L, (int)R, experts, dtype_for(T), &meta, err);
  uint64_t k = 0;
  for (int64_t i = 0; rc == TR_OK && i < I; i++)
    for (int64_t l = 0; rc == TR_OK && l < L; l++) {
      memset(slice, 0, cells * sizeof(int64_t));
      for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < T * K; s++, k++) {
          int64_t e = tr_npy_at(&a, k);
          if (e >= 0)
            slice[r * experts + e]++;
        }
      rc = tr_writer_put(&w, slice, err);
    }
  if (rc == TR_OK)
    rc = tr_writer_commit(&w, err);
done:
  tr_free(slice);
  tr_npy_close(&a);
  return rc;
}
