/*
 * tr_writer.c - writing traces as .npy (+ .json sidecar), whole or streamed.
 *
 * The .npy is format version 1.0, little-endian int32 ('<i4') or int64
 * ('<i8'), C order, shape (I, L, R, E); the header is padded with spaces to
 * a multiple of 64 bytes as NumPy does. Both files are written under
 * temporary names in the destination directory and renamed at commit, the
 * sidecar first, so a reader never sees a half-written trace (at worst a new
 * sidecar beside the old .npy if the second rename fails, which it does not
 * on one file system). Without metadata, an existing same-name sidecar is
 * removed at commit: it would describe the trace being replaced.
 */
#include "traces/tr_trace.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int make_tmp(char *tmpl, FILE **fp) {
  int fd = mkstemp(tmpl);
  if (fd < 0)
    return -1;
  *fp = fdopen(fd, "wb");
  if (!*fp) {
    close(fd);
    unlink(tmpl);
    return -1;
  }
  return 0;
}

static int write_sidecar(tr_writer *w, const tr_meta *m, int64_t iterations,
                         int layers, int ranks, int experts, tr_error *err) {
  json_t *o = json_object();
  if (!o)
    return tr_seterr(err, TR_ENOMEM, w->side_path, 0, "out of memory");
  json_object_set_new(o, "iterations", json_integer(iterations));
  json_object_set_new(o, "layers", json_integer(layers));
  json_object_set_new(o, "ranks", json_integer(ranks));
  json_object_set_new(o, "experts", json_integer(experts));
  if (m->top_k > 0)
    json_object_set_new(o, "top_k", json_integer(m->top_k));
  if (m->d_model > 0)
    json_object_set_new(o, "d_model", json_integer(m->d_model));
  if (m->d_ff > 0)
    json_object_set_new(o, "d_ff", json_integer(m->d_ff));
  if (m->bytes_per_elem > 0)
    json_object_set_new(o, "bytes_per_elem", json_integer(m->bytes_per_elem));
  if (m->tokens_per_rank > 0)
    json_object_set_new(o, "tokens_per_rank", json_integer(m->tokens_per_rank));
  if (m->source[0])
    json_object_set_new(o, "source", json_string(m->source));
  snprintf(w->side_tmp, sizeof(w->side_tmp), "%s.tmp.XXXXXX", w->side_path);
  FILE *fp;
  int rc = TR_OK;
  if (make_tmp(w->side_tmp, &fp) != 0) {
    w->side_tmp[0] = '\0';
    rc = tr_seterr(err, TR_EWRITE, w->side_path, 0, "cannot create: %s", strerror(errno));
  } else {
    int bad = json_dumpf(o, fp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0;
    bad |= fputc('\n', fp) == EOF;
    bad |= fclose(fp) != 0;
    if (bad)
      rc = tr_seterr(err, TR_EWRITE, w->side_path, 0, "cannot write");
  }
  json_decref(o);
  return rc;
}

void tr_writer_abort(tr_writer *w) {
  if (!w)
    return;
  if (w->fp)
    fclose(w->fp);
  if (w->tmp[0])
    unlink(w->tmp);
  if (w->side_tmp[0])
    unlink(w->side_tmp);
  memset(w, 0, sizeof(*w));
}

int tr_writer_open(tr_writer *w, const char *path, int64_t iterations,
                   int layers, int ranks, int experts, tr_dtype dtype,
                   const tr_meta *meta, tr_error *err) {
  if (err)
    memset(err, 0, sizeof(*err));
  if (!w)
    return tr_seterr(err, TR_EINVAL, path, 0, "no writer");
  memset(w, 0, sizeof(*w));
  if (!path || strlen(path) >= sizeof(w->path))
    return tr_seterr(err, TR_EINVAL, path, 0, "bad output path");
  if (dtype != TR_INT32 && dtype != TR_INT64)
    return tr_seterr(err, TR_EINVAL, path, 0, "a trace is written as int32 or int64");
  /* Never write what tr_open would refuse: the shape and the model numbers
   * within their physical ranges. */
  static const tr_limit_id lim[] = {TR_LIM_ITERATIONS, TR_LIM_LAYERS, TR_LIM_RANKS,
                                    TR_LIM_EXPERTS};
  int64_t dim[] = {iterations, layers, ranks, experts};
  for (int i = 0; i < 4; i++)
    if (!tr_in_limit(lim[i], dim[i])) {
      const tr_limit *l = &tr_limits[lim[i]];
      return tr_seterr(err, TR_EINVAL, path, 0,
                       "cannot write a trace of %" PRId64 " %s: %s must be between %" PRId64
                       " and %" PRId64,
                       dim[i], l->name, l->name, l->lo, l->hi);
    }
  if (meta && tr_check_meta(meta, experts, TR_EINVAL, path, err))
    return TR_EINVAL;
  snprintf(w->path, sizeof(w->path), "%s", path);
  w->dtype = dtype;
  w->ranks = ranks;
  w->experts = experts;
  w->slices_left = iterations * layers;
  int rc;
  if (meta) {
    tr_sidecar_path(path, w->side_path, sizeof(w->side_path));
    if ((rc = write_sidecar(w, meta, iterations, layers, ranks, experts, err)))
      goto fail;
  }
  snprintf(w->tmp, sizeof(w->tmp), "%s.tmp.XXXXXX", path);
  FILE *fp;
  if (make_tmp(w->tmp, &fp) != 0) {
    w->tmp[0] = '\0';
    rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot create: %s", strerror(errno));
    goto fail;
  }
  w->fp = fp;
  char dict[256];
  int n = snprintf(dict, sizeof(dict),
                   "{'descr': '%s', 'fortran_order': False, 'shape': (%" PRId64
                   ", %d, %d, %d), }",
                   dtype == TR_INT32 ? "<i4" : "<i8", iterations, layers, ranks, experts);
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)n + pad + 1;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  int bad = fwrite(pre, 1, 10, fp) != 10;
  bad |= fwrite(dict, 1, (size_t)n, fp) != (size_t)n;
  for (size_t i = 0; i < pad; i++)
    bad |= fputc(' ', fp) == EOF;
  bad |= fputc('\n', fp) == EOF;
  if (bad) {
    rc = tr_seterr(err, TR_EWRITE, path, 0, "cannot write: %s", strerror(errno));
    goto fail;
  }
  return TR_OK;
fail:
  tr_writer_abort(w);
  return rc;
}

int tr_writer_put(tr_writer *w, const int64_t *slice, tr_error *err) {
  if (!w || !w->fp || w->failed || w->slices_left <= 0)
    return tr_seterr(err, TR_EINVAL, w ? w->path : NULL, 0,
                     "writer is not open or already has every slice");
  size_t n = (size_t)w->ranks * (size_t)w->experts;
  for (size_t i = 0; i < n; i++) {
    int64_t v = slice[i];
    if (v < 0 || (w->dtype == TR_INT32 && v > INT32_MAX)) {
      char path[sizeof(w->path)];
      memcpy(path, w->path, sizeof(path));
      tr_writer_abort(w);
      return tr_seterr(err, v < 0 ? TR_ENEG : TR_EOVERFLOW, path, 0,
                       "count %" PRId64 " cannot be stored as %s", v,
                       v < 0 ? "a token count" : "int32");
    }
    unsigned char b[8];
    for (int k = 0; k < 8; k++)
      b[k] = (unsigned char)((uint64_t)v >> (8 * k));
    if (fwrite(b, 1, w->dtype == TR_INT32 ? 4 : 8, w->fp) != (w->dtype == TR_INT32 ? 4u : 8u)) {
      char path[sizeof(w->path)];
      memcpy(path, w->path, sizeof(path));
      tr_writer_abort(w);
      return tr_seterr(err, TR_EWRITE, path, 0, "cannot write: %s", strerror(errno));
    }
  }
  w->slices_left--;
  return TR_OK;
}

int tr_writer_commit(tr_writer *w, tr_error *err) {
  if (!w || !w->fp)
    return tr_seterr(err, TR_EINVAL, w ? w->path : NULL, 0, "writer is not open");
  char path[sizeof(w->path)];
  memcpy(path, w->path, sizeof(path));
  if (w->slices_left != 0) {
    int64_t left = w->slices_left;
    tr_writer_abort(w);
    return tr_seterr(err, TR_EINVAL, path, 0,
                     "%" PRId64 " (iteration, layer) slices were never written", left);
  }
  int bad = fflush(w->fp) != 0 || fsync(fileno(w->fp)) != 0;
  bad |= fclose(w->fp) != 0;
  w->fp = NULL;
  if (bad) {
    tr_writer_abort(w);
    return tr_seterr(err, TR_EWRITE, path, 0, "cannot write: %s", strerror(errno));
  }
  if (w->side_tmp[0] && rename(w->side_tmp, w->side_path) != 0) {
    int e = errno;
    tr_writer_abort(w);
    return tr_seterr(err, TR_EWRITE, path, 0, "cannot rename the sidecar: %s", strerror(e));
  }
  if (!w->side_tmp[0]) { /* no metadata: a stale sidecar would describe another trace */
    char side[sizeof(w->side_path)];
    tr_sidecar_path(path, side, sizeof(side));
    unlink(side);
  }
  w->side_tmp[0] = '\0';
  if (rename(w->tmp, w->path) != 0) {
    int e = errno;
    tr_writer_abort(w);
    return tr_seterr(err, TR_EWRITE, path, 0, "cannot rename into place: %s", strerror(e));
  }
  memset(w, 0, sizeof(*w));
  return TR_OK;
}

int tr_write_npy(const char *path, const int64_t *counts, int64_t iterations,
                 int layers, int ranks, int experts, const tr_meta *meta,
                 tr_error *err) {
  if (!counts || iterations < 1 || layers < 1 || ranks < 1 || experts < 1)
    return tr_seterr(err, TR_EINVAL, path, 0, "bad counts or shape");
  size_t n = (size_t)ranks * (size_t)experts;
  size_t slices = (size_t)iterations * (size_t)layers;
  tr_dtype dtype = TR_INT32;
  for (size_t i = 0; i < n * slices; i++) {
    if (counts[i] < 0)
      return tr_seterr(err, TR_ENEG, path, 0, "negative count %" PRId64 " at index %zu",
                       counts[i], i);
    if (counts[i] > INT32_MAX)
      dtype = TR_INT64;
  }
  tr_writer w;
  int rc = tr_writer_open(&w, path, iterations, layers, ranks, experts, dtype, meta, err);
  if (rc)
    return rc;
  for (size_t s = 0; s < slices; s++)
    if ((rc = tr_writer_put(&w, counts + s * n, err)))
      return rc;
  return tr_writer_commit(&w, err);
}
