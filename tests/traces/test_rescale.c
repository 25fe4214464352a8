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
