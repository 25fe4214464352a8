/* Rescaling a trace to G GPUs: exact totals, the g mod R source mapping,
 * identity copy, seeded determinism, preserved skew. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tr_testutil.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

static tr_trace sample(void) {
  tr_trace t;
  tr_error err;
  cr_assert_eq(tr_open(&t, tu_sample(), &err), TR_OK, "%s", err.msg);
  return t;
}

Test(rescale, every_gpu_routes_exactly_the_requested_slots) {
  tr_trace t = sample();
  int64_t out[24 * 32];
  for (int l = 0; l < t.layers; l++) {
    cr_assert_eq(tr_rescale_slice(&t, 17, l, 24, 12345, 7, out), TR_OK);
    for (int g = 0; g < 24; g++) {
      int64_t s = 0;
      for (int e = 0; e < 32; e++) {
        cr_assert_geq(out[g * 32 + e], 0);
        s += out[g * 32 + e];
      }
      cr_assert_eq(s, 12345, "gpu %d layer %d", g, l);
    }
  }
  tr_close(&t);
}

Test(rescale, same_gpu_count_and_own_slots_copies_the_counts) {
  tr_trace t = sample();
  int64_t out[8 * 32], src[8 * 32];
  for (int64_t it = 0; it < 200; it += 50) {
    tr_slice(&t, it, 3, src);
    cr_assert_eq(tr_rescale_slice(&t, it, 3, 8, 0, 99, out), TR_OK);
    cr_assert_arr_eq(out, src, sizeof(src));
    cr_assert_eq(tr_rescale_slice(&t, it, 3, 8, 4096, 99, out), TR_OK,
                 "4096 = 2048 tokens x top-2 is each rank's own total");
    cr_assert_arr_eq(out, src, sizeof(src));
  }
  tr_close(&t);
}

Test(rescale, same_seed_same_counts_in_any_order_different_seed_differs) {
  tr_trace t = sample();
  int64_t a[64 * 32], b[64 * 32], c[64 * 32], tmp[64 * 32];
  cr_assert_eq(tr_rescale_slice(&t, 5, 2, 64, 1000, 42, a), TR_OK);
  cr_assert_eq(tr_rescale_slice(&t, 6, 2, 64, 1000, 42, tmp), TR_OK); /* other stream */
  cr_assert_eq(tr_rescale_slice(&t, 5, 2, 64, 1000, 42, b), TR_OK);
  cr_assert_arr_eq(a, b, sizeof(a));
  cr_assert_eq(tr_rescale_slice(&t, 5, 2, 64, 1000, 43, c), TR_OK);
  cr_assert(memcmp(a, c, sizeof(a)) != 0, "seed 43 drew the same counts as seed 42");
  cr_assert(memcmp(a, tmp, sizeof(a)) != 0, "iterations 5 and 6 share a stream");
  tr_close(&t);
}

/* Rank r sends only to expert r (rank 2 sends nothing): GPU g must send
 * only to expert g mod 4, and GPUs reading rank 2 send nothing. */
Test(rescale, gpu_g_takes_the_distribution_of_rank_g_mod_r) {
  int64_t c[4 * 6] = {0};
  c[0 * 6 + 0] = 10;
  c[1 * 6 + 1] = 20;
  c[3 * 6 + 3] = 30;
  c[3 * 6 + 5] = 30;
  const char *p = tu_path((char[512]){0}, 512, "diag.npy");
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 1, 1, 4, 6, NULL, &err), TR_OK, "%s", err.msg);
  tr_trace t;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  int64_t out[10 * 6];
  cr_assert_eq(tr_rescale_slice(&t, 0, 0, 10, 1000, 1, out), TR_OK);
  for (int g = 0; g < 10; g++) {
    int r = g % 4;
    for (int e = 0; e < 6; e++) {
      int64_t v = out[g * 6 + e];
      if (r == 2)
        cr_assert_eq(v, 0, "gpu %d reads an empty rank", g);
      else if (r == 3 && (e == 3 || e == 5))
        cr_assert(v > 350 && v < 650, "gpu %d expert %d: %ld", g, e, (long)v);
      else if (r < 2 && e == r)
        cr_assert_eq(v, 1000);
      else
        cr_assert_eq(v, 0, "gpu %d expert %d", g, e);
    }
  }
  /* slots <= 0 keeps each source rank's own total. */
  cr_assert_eq(tr_rescale_slice(&t, 0, 0, 6, 0, 1, out), TR_OK);
  cr_assert_eq(out[4 * 6 + 0], 10);
  cr_assert_eq(out[5 * 6 + 1], 20);
  tr_close(&t);
}

/* Expert max/mean load of a layer over all ranks, before and after a
 * rescale to 64 GPUs: the multinomial keeps the skew (within 3% here; the
 * sampling noise at 64 x 4096 slots is well below that). */
Test(rescale, skew_is_preserved_at_other_sizes) {
  tr_trace t = sample();
  int64_t src[8 * 32], out[64 * 32];
  for (int l = 0; l < 6; l++) {
    double before = 0, after = 0;
    for (int64_t it = 100; it < 110; it++) {
      double a[32] = {0}, b[32] = {0}, sa = 0, sb = 0, ma = 0, mb = 0;
      tr_slice(&t, it, l, src);
      cr_assert_eq(tr_rescale_slice(&t, it, l, 64, 4096, 3, out), TR_OK);
      for (int e = 0; e < 32; e++) {
        for (int r = 0; r < 8; r++)
          a[e] += (double)src[r * 32 + e];
        for (int g = 0; g < 64; g++)
          b[e] += (double)out[g * 32 + e];
        sa += a[e];
        sb += b[e];
        ma = fmax(ma, a[e]);
        mb = fmax(mb, b[e]);
      }
      before += ma / (sa / 32);
      after += mb / (sb / 32);
    }
    cr_assert(fabs(after / before - 1) < 0.03, "layer %d: max/mean %.3f -> %.3f", l,
              before / 10, after / 10);
  }
  tr_close(&t);
}

Test(rescale, bad_arguments_are_einval) {
  tr_trace t = sample();
  int64_t out[8 * 32];
  cr_assert_eq(tr_rescale_slice(&t, 200, 0, 8, 0, 1, out), TR_EINVAL);
  cr_assert_eq(tr_rescale_slice(&t, 0, 6, 8, 0, 1, out), TR_EINVAL);
  cr_assert_eq(tr_rescale_slice(&t, 0, 0, 0, 0, 1, out), TR_EINVAL);
  cr_assert_eq(tr_rescale_slice(NULL, 0, 0, 8, 0, 1, out), TR_EINVAL);
  tr_close(&t);
}

/* One random stream per (iteration, layer, GPU): GPU g's row is the same
 * whatever the cluster size, so a sweep over G rescales consistently (and
 * a slice can be drawn for a subset of GPUs). Not at G == R with the
 * trace's own slot count: that is the identity copy. */
Test(rescale, a_gpu_draws_the_same_row_at_every_gpu_count) {
  tr_trace t = sample();
  static int64_t a[8 * 32], b[64 * 32], c[1024 * 32];
  for (int l = 0; l < 6; l += 5) {
    cr_assert_eq(tr_rescale_slice(&t, 42, l, 8, 3000, 5, a), TR_OK);
    cr_assert_eq(tr_rescale_slice(&t, 42, l, 64, 3000, 5, b), TR_OK);
    cr_assert_eq(tr_rescale_slice(&t, 42, l, 1024, 3000, 5, c), TR_OK);
    cr_assert_arr_eq(a, b, sizeof(a), "layer %d: GPUs 0-7 at G = 8 and 64", l);
    cr_assert_arr_eq(b, c, sizeof(b), "layer %d: GPUs 0-63 at G = 64 and 1024", l);
  }
  /* ... and different GPUs reading the same rank draw different rows */
  cr_assert(memcmp(c, c + 8 * 32, 32 * sizeof(int64_t)) != 0);
  tr_close(&t);
}

/* Slot counts beyond 32 bits: totals stay exact and the skew carries over
 * (the relative sampling noise at 2^40 slots is ~1e-6). */
Test(rescale, slot_counts_beyond_32_bits_are_exact) {
  tr_trace t = sample();
  int64_t src[8 * 32], out[16 * 32];
  const int64_t N = (int64_t)1 << 40;
  tr_slice(&t, 9, 1, src);
  cr_assert_eq(tr_rescale_slice(&t, 9, 1, 16, N, 2, out), TR_OK);
  for (int g = 0; g < 16; g++) {
    int64_t s = 0, tot = 0;
    for (int e = 0; e < 32; e++)
      s += out[g * 32 + e], tot += src[(g % 8) * 32 + e];
    cr_assert_eq(s, N, "gpu %d", g);
    for (int e = 0; e < 32; e++) {
      double want = (double)N * (double)src[(g % 8) * 32 + e] / (double)tot;
      cr_assert(fabs((double)out[g * 32 + e] - want) <= 1e-4 * (double)N / 32 + 1,
                "gpu %d expert %d: %lld, want %.0f", g, e, (long long)out[g * 32 + e], want);
    }
  }
  tr_close(&t);
}

/*
 * The rule for every relation of G to R (here R = 3): G < R, G = R, R < G <
 * 2R, G a multiple of R, G above and not a multiple. GPU g reads rank
 * g mod R; its row sums to the target (N, or the rank's own total when
 * N <= 0), is zero where the rank's is, is the rank's row itself only when
 * G == R and the target is the rank's own total, and is otherwise a
 * multinomial draw: the same draw GPU g makes at any other G (one stream
 * per GPU), so a multiple of R gets no copies. At G = 301 (about 100 GPUs per
 * rank) the mean row of each rank's GPUs is the rank's distribution scaled
 * to the target, within 6 standard errors per expert.
 */
Test(rescale, every_gpu_count_below_at_and_above_the_ranks_follows_the_rule) {
  enum { R = 3, E = 12, BIG = 301 };
  /* uneven totals (600, 1500, 3001) and zeros */
  int64_t c[R * E] = {100, 0, 50, 50, 100, 0, 200, 25, 25, 25, 25, 0,
                      0, 700, 100, 100, 100, 100, 100, 100, 100, 0, 50, 50,
                      1, 1000, 0, 0, 0, 0, 1000, 500, 250, 125, 125, 0};
  int64_t total[R] = {0};
  for (int r = 0; r < R; r++)
    for (int e = 0; e < E; e++)
      total[r] += c[r * E + e];
  cr_assert(total[0] == 600 && total[1] == 1500 && total[2] == 3001);
  const char *p = tu_path((char[512]){0}, 512, "three.npy");
  tr_error err;
  cr_assert_eq(tr_write_npy(p, c, 1, 1, R, E, NULL, &err), TR_OK, "%s", err.msg);
  tr_trace t;
  cr_assert_eq(tr_open(&t, p, &err), TR_OK, "%s", err.msg);
  static int64_t big[BIG * E], out[BIG * E];
  const int gpus[] = {1, 2, 3, 4, 5, 6, 9, 10, 17, 24};
  const int64_t targets[] = {0, 600, 1000};
  for (int ti = 0; ti < 3; ti++) {
    int64_t N = targets[ti];
    cr_assert_eq(tr_rescale_slice(&t, 0, 0, BIG, N, 9, big), TR_OK);
    for (size_t gi = 0; gi < sizeof(gpus) / sizeof(gpus[0]); gi++) {
      int G = gpus[gi];
      cr_assert_eq(tr_rescale_slice(&t, 0, 0, G, N, 9, out), TR_OK);
      for (int g = 0; g < G; g++) {
        int r = g % R;
        int64_t target = N > 0 ? N : total[r], sum = 0;
        const int64_t *row = out + (size_t)g * E, *src = c + (size_t)r * E;
        for (int e = 0; e < E; e++) {
          sum += row[e];
          if (src[e] == 0)
            cr_assert_eq(row[e], 0, "G %d N %lld GPU %d expert %d: rank %d sends none", G,
                         (long long)N, g, e, r);
        }
        cr_assert_eq(sum, target, "G %d N %lld GPU %d", G, (long long)N, g);
        int identity = G == R && target == total[r];
        if (identity)
          cr_assert_arr_eq(row, src, E * sizeof(int64_t), "G %d N %lld GPU %d: not a copy", G,
                           (long long)N, g);
        else
          cr_assert_arr_eq(row, big + (size_t)g * E, E * sizeof(int64_t),
                           "G %d N %lld GPU %d: not the draw GPU %d makes at G %d (a copy of "
                           "rank %d?)", G, (long long)N, g, g, BIG, r);
      }
    }
    /* the draws follow the rank's distribution */
    for (int r = 0; r < R; r++) {
      int64_t target = N > 0 ? N : total[r];
      int n = 0;
      double mean[E] = {0};
      for (int g = r; g < BIG; g += R, n++)
        for (int e = 0; e < E; e++)
          mean[e] += (double)big[(size_t)g * E + e];
      int differ = 0;
      for (int g = r + R; g < BIG; g += R)
        differ += memcmp(big + (size_t)g * E, big + (size_t)r * E, E * sizeof(int64_t)) != 0;
      cr_assert_gt(differ, n - 5, "N %lld rank %d: its GPUs draw the same rows", (long long)N, r);
      for (int e = 0; e < E; e++) {
        double q = (double)c[r * E + e] / (double)total[r];
        double want = (double)target * q, se = sqrt((double)target * q * (1 - q) / n);
        cr_assert(fabs(mean[e] / n - want) <= 6 * se + 1e-9,
                  "N %lld rank %d expert %d: mean %.2f, want %.2f (se %.2f)", (long long)N, r, e,
                  mean[e] / n, want, se);
      }
    }
  }
  tr_close(&t);
}
