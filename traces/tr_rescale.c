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
 * Random stream: one gsl_rng (MT19937) per (iteration, layer), seeded with a
 * SplitMix64 mix of (seed, iteration, layer); GPUs draw in order 0..G-1 from
 * it. gsl_ran_multinomial takes an unsigned int N, so a larger N is drawn in
 * chunks (a sum of multinomials with the same p is a multinomial).
 */
#include "traces/tr_rescale.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <limits.h>
#include <string.h>

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
  int64_t *src = tr_malloc((size_t)R * E * sizeof(int64_t));
  double *p = tr_malloc((size_t)E * sizeof(double));
  unsigned int *draw = tr_malloc((size_t)E * sizeof(unsigned int));
  gsl_rng *rng = NULL;
  if (!src || !p || !draw) {
    rc = TR_ENOMEM;
    goto done;
  }
  tr_slice(t, iteration, layer, src);
  for (int g = 0; g < gpus; g++) {
    const int64_t *row = src + (size_t)(g % R) * E;
    int64_t *dst = out + (size_t)g * E;
    int64_t total = 0;
    for (int e = 0; e < E; e++)
      total += row[e];
    int64_t target = slots_per_gpu > 0 ? slots_per_gpu : total;
    if (total == 0 || target == 0) {
      memset(dst, 0, (size_t)E * sizeof(int64_t));
      continue;
    }
    if (gpus == R && target == total) {
      memcpy(dst, row, (size_t)E * sizeof(int64_t));
      continue;
    }
    if (!rng) {
      rng = gsl_rng_alloc(gsl_rng_mt19937);
      if (!rng) {
        rc = TR_ENOMEM;
        goto done;
      }
      gsl_rng_set(rng, (unsigned long)tr_stream_seed(seed, (uint64_t)iteration,
                                                     (uint64_t)layer));
    }
    for (int e = 0; e < E; e++) {
      p[e] = (double)row[e] / (double)total;
      dst[e] = 0;
    }
    for (int64_t left = target; left > 0;) {
      unsigned int n = left > (int64_t)UINT_MAX ? UINT_MAX : (unsigned int)left;
      gsl_ran_multinomial(rng, (size_t)E, n, p, draw);
      for (int e = 0; e < E; e++)
        dst[e] += draw[e];
      left -= n;
    }
  }
done:
  if (rng)
    gsl_rng_free(rng);
  tr_free(draw);
  tr_free(p);
  tr_free(src);
  return rc;
}
