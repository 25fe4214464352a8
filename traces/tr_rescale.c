/*
 * tr_rescale.c - the rescaling rule of DESIGN.md (see tr_rescale.h).
 *
 * GPU g reads source rank s = g mod R. With target slots N (the source's own
 * total when slots_per_gpu <= 0), its counts are one multinomial draw of N
 * slots over the experts with probabilities counts[s][e] / total[s]: totals
 * are exact, expected counts are the source's distribution scaled by
 * N / total[s], so skew and fluctuation carry over. When G == R and N equals
 * the source's own total, the row is copied (the identity rescale is exact).
 *
 * Sampler (tr_sample.h, both exact): when tr_mpois_fits(N, E) (N at most
 * 16 E^2 and 2^24: every usual token count), the Poisson method, whose
 * tables are prepared once per source rank and slice and shared by the GPUs
 * that read it (tr_mpois_rows: the same draws as one row at a time); else
 * conditional binomials (BTRS and inversion) with the conditional
 * probabilities prepared the same way (tr_multinomial_rows). The choice
 * depends on (N, E) alone, so a GPU's row still depends on nothing else.
 *
 * Random stream: one xoshiro256** stream per (iteration, layer, GPU), keyed
 * by SplitMix64(tr_stream_seed(seed, iteration, layer) ^ g). A GPU's row
 * depends on (seed, iteration, layer, g, its source row, N) only: not on G,
 * nor on the other GPUs, nor on the order anything is drawn in.
 */
#include "traces/tr_rescale.h"

#include <stdio.h>
#include <string.h>

#include "traces/tr_sample.h"

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t tr_stream_seed(uint64_t seed, uint64_t a, uint64_t b) {
  return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b);
}

int tr_rescale_slice(const tr_trace *t, int64_t iteration, int layer, int gpus,
                     int64_t slots_per_gpu, uint64_t seed, int64_t *out) {
  if (!t || !out || gpus < 1 || iteration < 0 || iteration >= t->iterations ||
      layer < 0 || layer >= t->layers)
    return TR_EINVAL;
  int R = t->ranks, E = t->experts, rc = TR_OK;
  int per = (gpus + R - 1) / R; /* most GPUs reading one source rank */
  int64_t *src = tr_malloc((size_t)R * E * sizeof(int64_t));
  tr_binp *cat = tr_malloc((size_t)E * sizeof(tr_binp));
  tr_rng *rng = tr_malloc((size_t)per * sizeof(tr_rng));
  tr_mpois mp;
  tr_mpois_init(&mp);
  if (!src || !cat || !rng) {
    rc = TR_ENOMEM;
    goto done;
  }
  tr_slice(t, iteration, layer, src);
  uint64_t key = tr_stream_seed(seed, (uint64_t)iteration, (uint64_t)layer);
  /* Source rank s drives GPUs s, s + R, s + 2R, ...: rows at stride R x E. */
  for (int s = 0; s < R && s < gpus; s++) {
    const int64_t *row = src + (size_t)s * E;
    int64_t total = 0;
    for (int e = 0; e < E; e++)
      total += row[e]; /* fits: slice totals are checked on open */
    int64_t target = slots_per_gpu > 0 ? slots_per_gpu : total;
    int n = (gpus - 1 - s) / R + 1;
    if (total == 0 || target == 0 || (gpus == R && target == total)) {
      for (int j = 0; j < n; j++) {
        int64_t *dst = out + ((size_t)j * R + s) * E;
        if (total == 0 || target == 0)
          memset(dst, 0, (size_t)E * sizeof(int64_t));
        else
          memcpy(dst, row, (size_t)E * sizeof(int64_t)); /* the identity rescale */
      }
      continue;
    }
    for (int j = 0; j < n; j++)
      tr_rng_seed(&rng[j], splitmix64(key ^ (uint64_t)(j * R + s)));
    if (tr_mpois_fits(target, E)) {
      /* fails only for memory: total > 0, no negatives */
      if ((rc = tr_mpois_prepare(&mp, E, row, target)) != TR_OK)
        goto done;
      tr_mpois_rows(rng, n, &mp, out + (size_t)s * E, (size_t)R * E);
      continue;
    }
    tr_multinomial_prepare(cat, E, row); /* cannot fail: total > 0, no negatives */
    tr_multinomial_rows(rng, n, target, E, cat, out + (size_t)s * E, (size_t)R * E);
  }
done:
  tr_mpois_fini(&mp);
  tr_free(rng);
  tr_free(cat);
  tr_free(src);
  return rc;
}

uint64_t tr_rescale_memory(const tr_trace *t, int gpus) {
  uint64_t G = gpus > 0 ? (uint64_t)gpus : 0, R = (uint64_t)t->ranks, E = (uint64_t)t->experts;
  uint64_t per = R ? (G + R - 1) / R : 0;
  uint64_t need = tr_mul_sat(tr_mul_sat(G, E), sizeof(int64_t)); /* output slice */
  need = tr_add_sat(need, tr_mul_sat(tr_mul_sat(R, E), sizeof(int64_t)));
  need = tr_add_sat(need, tr_mul_sat(E, sizeof(tr_binp)));
  /* the Poisson method's tables at the largest N it serves */
  int64_t nmax = (int64_t)1 << 24;
  if (E > 0 && (int64_t)16 * (int64_t)E * (int64_t)E < nmax)
    nmax = (int64_t)16 * (int64_t)E * (int64_t)E;
  need = tr_add_sat(need, tr_mpois_memory(nmax, (int)E));
  return tr_add_sat(need, tr_mul_sat(per, sizeof(tr_rng)));
}

int tr_rescale_write(const tr_trace *t, int64_t it0, int64_t it1, int gpus,
                     int64_t slots_per_gpu, uint64_t seed, const char *out,
                     const tr_meta *meta, uint64_t max_memory, tr_error *err) {
  if (!t)
    return tr_seterr(err, TR_EINVAL, out, 0, "no trace");
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (gpus < 1 || it0 < 0 || it0 >= it1)
    return tr_seterr(err, TR_EINVAL, out, 0, "bad GPU count or iteration range");
  char what[160];
  snprintf(what, sizeof(what), "rescaling to %d GPUs x %d experts", gpus, t->experts);
  int rc = tr_check_memory(tr_rescale_memory(t, gpus), max_memory, out, what, err);
  if (rc)
    return rc;
  /* The largest count is bounded by the largest slot total of a GPU. */
  int64_t most = slots_per_gpu;
  if (slots_per_gpu <= 0)
    for (int64_t it = it0; it < it1; it++)
      for (int l = 0; l < t->layers; l++)
        for (int r = 0; r < t->ranks; r++) {
          int64_t s = 0;
          for (int e = 0; e < t->experts; e++)
            s += tr_at(t, it, l, r, e);
          most = s > most ? s : most;
        }
  int64_t *slice = tr_malloc((size_t)gpus * t->experts * sizeof(int64_t));
  if (!slice)
    return tr_seterr(err, TR_ENOMEM, out, 0, "out of memory");
  tr_writer w;
  rc = tr_writer_open(&w, out, it1 - it0, t->layers, gpus, t->experts,
                          most > INT32_MAX ? TR_INT64 : TR_INT32, meta, err);
  for (int64_t it = it0; rc == TR_OK && it < it1; it++) {
    if ((it - it0) % 4096 == 0)
      tr_release_before(t, it);
    for (int l = 0; rc == TR_OK && l < t->layers; l++) {
      rc = tr_rescale_slice(t, it, l, gpus, slots_per_gpu, seed, slice);
      if (rc) {
        tr_writer_abort(&w);
        rc = tr_seterr(err, rc, out, 0, "%s", tr_strerror(rc));
        break;
      }
      rc = tr_writer_put(&w, slice, err);
    }
  }
  if (rc == TR_OK)
    rc = tr_writer_commit(&w, err);
  tr_free(slice);
  return rc;
}
