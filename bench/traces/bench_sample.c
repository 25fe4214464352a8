/*
 * bench_sample.c - the rescaling sampler against GSL, in the same process.
 *
 * (1) Binomial: ns per Bin(n, p) draw, tr_binomial_prepared (p prepared
 *     once, as rescaling does) vs gsl_ran_binomial on MT19937 (the
 *     generator the rescale used), over n p on both sides of the switch
 *     between inversion and BTRS (n p' = 10).
 * (2) Multinomial row: ns per row of N slots over E categories with
 *     log-normal (sigma 1) weights, the shape of a skewed MoE layer:
 *     tr_multinomial_prepared vs gsl_ran_multinomial (p as doubles).
 * (2b) The Poisson method vs the binomial rows at 8,192 slots x 64
 *     experts, for 8, 32 and 128 rows per source rank (preparation
 *     included): where its shared tables start to pay.
 * (3) tr_rescale_slice per (iteration, layer) at G = 1,024 GPUs, E = 64,
 *     8 source ranks, 8,192 slots per GPU (4,096 tokens, top-2; a
 *     "realistic" generated trace, or TRACE), vs the GSL rescale it
 *     replaced (one MT19937 per slice, gsl_ran_multinomial per GPU; copied
 *     below as the peer).
 * (4) --open FILE...: tr_open's CPU time per file (it maps the file and
 *     makes one pass: negative/overflow checks and the XXH3 content hash),
 *     vs the same pass with the byte-wise FNV-1a of before (peer, copied
 *     below), both over the mapped counts, page cache warm.
 * Correctness in the same run: every row sums to N, and the mean count of
 * each category over all rows is within 6 standard errors of N p; in (3)
 * the GSL peer's rows sum to N too and its totals per (source rank,
 * expert) agree with tr_rescale_slice's within 6 standard errors of their
 * difference; the bench exits 1 when a check fails.
 * Times: CPU seconds (CLOCK_PROCESS_CPUTIME_ID), best of REPS repetitions.
 *
 * Usage: bench_tr_sample [--reps K] [--trace TRACE] [--open FILE...]
 */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_version.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flexmoe_config.h"
#include "traces/tr_gen.h"
#include "traces/tr_rescale.h"
#include "traces/tr_sample.h"
#include "traces/tr_trace.h"

static double cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int reps = 5;
static volatile int64_t sink;
static int failed;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "bench_tr_sample: CHECK FAILED: %s\n", what);
    failed = 1;
  }
}

/* ---- (1) binomial --------------------------------------------------- */

static void bench_binomial(void) {
  static const struct {
    int64_t n;
    double p;
  } grid[] = {{100, 0.02},     {1000, 0.005},  {8192, 0.001},  {100, 0.099},
              {1000, 0.0101},  {8192, 0.0013}, {8192, 0.0156}, {8192, 0.1},
              {16384, 0.0156}, {16384, 0.5},   {1000000, 0.3}, {(int64_t)1 << 40, 1e-9}};
  enum { DRAWS = 200000 };
  gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(g, 1);
  tr_rng r;
  tr_rng_seed(&r, 1);
  printf("\n## binomial: ns per draw (best of %d x %d draws)\n", reps, DRAWS);
  printf("%12s %9s %8s %10s %10s %10s %7s\n", "n", "p", "n*p", "branch", "tr_ns", "gsl_ns",
         "ratio");
  for (size_t i = 0; i < sizeof(grid) / sizeof(grid[0]); i++) {
    int64_t n = grid[i].n;
    double p = grid[i].p, best_t = 1e9, best_g = 1e9;
    tr_binp b;
    tr_binp_set(&b, p);
    int gsl_ok = n <= 0xffffffffLL;
    for (int k = 0; k < reps; k++) {
      int64_t s = 0;
      double t0 = cpu();
      for (int d = 0; d < DRAWS; d++)
        s += tr_binomial_prepared(&r, n, &b);
      double t1 = cpu();
      best_t = fmin(best_t, (t1 - t0) / DRAWS * 1e9);
      double mean = (double)s / DRAWS, se = sqrt((double)n * p * (1 - p) / DRAWS);
      check(fabs(mean - (double)n * p) < 6 * se + 1e-9, "binomial mean");
      if (gsl_ok) {
        t0 = cpu();
        for (int d = 0; d < DRAWS; d++)
          s += gsl_ran_binomial(g, p, (unsigned int)n);
        best_g = fmin(best_g, (cpu() - t0) / DRAWS * 1e9);
      }
      sink = s;
    }
    const char *branch = (double)n * fmin(p, 1 - p) < 10 ? "inversion" : "btrs";
    if (gsl_ok)
      printf("%12lld %9.4g %8.3g %10s %10.1f %10.1f %6.2fx\n", (long long)n, p,
             (double)n * p, branch, best_t, best_g, best_g / best_t);
    else
      printf("%12lld %9.4g %8.3g %10s %10.1f %10s %7s\n", (long long)n, p, (double)n * p,
             branch, best_t, "n>2^32", "-");
  }
  gsl_rng_free(g);
}

/* ---- (2) multinomial rows ------------------------------------------- */

static uint64_t sm(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Log-normal (sigma 1) integer weights summing to about 1e6. */
static void lognormal_weights(int E, uint64_t seed, int64_t *w, double *p) {
  double x[4096], sum = 0;
  for (int e = 0; e < E; e++) {
    double u = ((double)(sm(&seed) >> 11) + 0.5) * 0x1.0p-53;
    double v = (double)(sm(&seed) >> 11) * 0x1.0p-53;
    sum += (x[e] = exp(sqrt(-2 * log(u)) * cos(6.283185307179586 * v)));
  }
  int64_t tot = 0;
  for (int e = 0; e < E; e++)
    tot += (w[e] = 1 + (int64_t)(1e6 * x[e] / sum));
  for (int e = 0; e < E; e++)
    p[e] = (double)w[e] / (double)tot;
}

static void bench_multinomial(void) {
  static const int Ns[] = {512, 2048, 8192, 16384};
  static const int Es[] = {32, 64, 256};
  enum { ROWS = 4096 };
  printf("\n## multinomial row: ns per row of N slots over E experts, log-normal(1) "
         "weights (best of %d x %d rows)\n",
         reps, ROWS);
  printf("# tr = one row at a time (tr_multinomial_prepared); tr_x = %d rows, interleaved in blocks of 64 "
         "(tr_multinomial_rows, as the rescale draws the GPUs of one source rank)\n",
         ROWS);
  printf("%6s %4s %10s %10s %10s %13s %13s %7s %7s\n", "N", "E", "tr_ns/row", "tr_x_ns/row",
         "gsl_ns/row", "tr_x_ns/expert", "gsl_ns/expert", "ratio", "ratio_x");
  gsl_rng *g = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(g, 2);
  tr_rng r;
  tr_rng_seed(&r, 2);
  static tr_rng rows_rng[ROWS];
  static int64_t rows_out[(size_t)ROWS * 256];
  for (int i = 0; i < ROWS; i++)
    tr_rng_seed(&rows_rng[i], 100 + (uint64_t)i);
  for (size_t ie = 0; ie < sizeof(Es) / sizeof(Es[0]); ie++)
    for (size_t in = 0; in < sizeof(Ns) / sizeof(Ns[0]); in++) {
      int E = Es[ie], N = Ns[in];
      int64_t w[256], out[256];
      double p[256], sum[256] = {0};
      unsigned int gout[256];
      tr_binp cat[256];
      lognormal_weights(E, 7 + (uint64_t)E, w, p);
      tr_multinomial_prepare(cat, E, w);
      double best_t = 1e9, best_g = 1e9, best_x = 1e9;
      for (int k = 0; k < reps; k++) {
        int bad = 0;
        double tx = cpu();
        tr_multinomial_rows(rows_rng, ROWS, N, E, cat, rows_out, (size_t)E);
        best_x = fmin(best_x, (cpu() - tx) / ROWS * 1e9);
        for (int row = 0; row < ROWS; row++) {
          int64_t s = 0;
          for (int e = 0; e < E; e++)
            s += rows_out[(size_t)row * E + e];
          bad |= s != N;
        }
        double t0 = cpu();
        for (int row = 0; row < ROWS; row++) {
          tr_multinomial_prepared(&r, N, E, cat, out);
          int64_t s = 0;
          for (int e = 0; e < E; e++)
            s += out[e], sum[e] += (double)out[e];
          bad |= s != N;
        }
        best_t = fmin(best_t, (cpu() - t0) / ROWS * 1e9);
        check(!bad, "multinomial row total");
        t0 = cpu();
        int64_t s = 0;
        for (int row = 0; row < ROWS; row++) {
          gsl_ran_multinomial(g, (size_t)E, (unsigned int)N, p, gout);
          s += gout[row % E];
        }
        best_g = fmin(best_g, (cpu() - t0) / ROWS * 1e9);
        sink = s;
      }
      double rows = (double)ROWS * reps;
      for (int e = 0; e < E; e++) {
        double se = sqrt(N * p[e] * (1 - p[e]) / rows);
        check(fabs(sum[e] / rows - N * p[e]) < 6 * se + 1e-9, "multinomial mean");
      }
      printf("%6d %4d %10.0f %10.0f %10.0f %13.1f %13.1f %6.2fx %6.2fx\n", N, E, best_t,
             best_x, best_g, best_x / E, best_g / E, best_g / best_t, best_g / best_x);
    }
  gsl_rng_free(g);
}

/* ---- (2b) the Poisson method vs the binomial rows -------------------- */

/* ns per row of one source rank's GPUs, the method's preparation
 * included (once per source rank and slice, as the rescale does): 8, 32
 * and 128 rows are 64, 256 and 1,024 GPUs over 8 source ranks. Rows sum
 * to N and the means agree with N p within 6 standard errors. */
static void bench_mpois(void) {
  enum { E = 64, N = 8192, ROWS = 128, SETS = 64 };
  static const int per[] = {8, 32, 128};
  printf("\n## the Poisson method (tr_mpois_prepare + tr_mpois_rows) vs conditional binomials "
         "(tr_multinomial_prepare + tr_multinomial_rows): ns per row of %d slots over %d "
         "experts, log-normal(1) weights, preparation included (best of %d x %d sources)\n",
         N, E, reps, SETS);
  printf("%13s %12s %12s %7s\n", "rows/source", "binom_ns/row", "mpois_ns/row", "ratio");
  static tr_rng rg[ROWS];
  static int64_t out[(size_t)ROWS * E];
  int64_t w[E];
  double p[E];
  lognormal_weights(E, 11, w, p);
  tr_binp cat[E];
  tr_mpois m;
  tr_mpois_init(&m);
  for (size_t ip = 0; ip < sizeof(per) / sizeof(per[0]); ip++) {
    int rows = per[ip];
    double best_b = 1e9, best_m = 1e9, sum[E] = {0};
    int bad = 0;
    for (int k = 0; k < reps; k++) {
      double t0 = cpu();
      for (int set = 0; set < SETS; set++) {
        tr_multinomial_prepare(cat, E, w);
        for (int i = 0; i < rows; i++)
          tr_rng_seed(&rg[i], (uint64_t)(set * ROWS + i));
        tr_multinomial_rows(rg, rows, N, E, cat, out, E);
      }
      best_b = fmin(best_b, (cpu() - t0) / SETS / rows * 1e9);
      t0 = cpu();
      for (int set = 0; set < SETS; set++) {
        bad |= tr_mpois_prepare(&m, E, w, N) != TR_OK;
        for (int i = 0; i < rows; i++)
          tr_rng_seed(&rg[i], (uint64_t)(set * ROWS + i));
        tr_mpois_rows(rg, rows, &m, out, E);
        for (int i = 0; i < rows; i++) {
          int64_t t = 0;
          for (int e = 0; e < E; e++) {
            t += out[(size_t)i * E + e];
            if (k == 0) /* the repetitions draw the same rows again */
              sum[e] += (double)out[(size_t)i * E + e];
          }
          bad |= t != N;
        }
      }
      best_m = fmin(best_m, (cpu() - t0) / SETS / rows * 1e9);
    }
    check(!bad, "Poisson method row total");
    double n = (double)SETS * rows;
    for (int e = 0; e < E; e++)
      check(fabs(sum[e] / n - N * p[e]) < 6 * sqrt(N * p[e] * (1 - p[e]) / n) + 1e-9,
            "Poisson method mean");
    printf("%13d %12.0f %12.0f %6.2fx\n", rows, best_b, best_m, best_b / best_m);
  }
  tr_mpois_fini(&m);
}

/* ---- (3) tr_rescale_slice --------------------------------------------- */

/* The GSL rescale tr_rescale_slice used before (one MT19937 per slice, GPUs
 * in order, gsl_ran_multinomial per GPU), without the identity copy. */
static void gsl_rescale_slice(const tr_trace *t, int64_t it, int l, int G, int64_t N,
                              uint64_t seed, int64_t *src, double *p, unsigned int *draw,
                              int64_t *out) {
  int R = t->ranks, E = t->experts;
  tr_slice(t, it, l, src);
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, (unsigned long)tr_stream_seed(seed, (uint64_t)it, (uint64_t)l));
  for (int gpu = 0; gpu < G; gpu++) {
    const int64_t *row = src + (size_t)(gpu % R) * E;
    int64_t total = 0;
    for (int e = 0; e < E; e++)
      total += row[e];
    for (int e = 0; e < E; e++)
      p[e] = (double)row[e] / (double)total;
    gsl_ran_multinomial(rng, (size_t)E, (unsigned int)N, p, draw);
    for (int e = 0; e < E; e++)
      out[(size_t)gpu * E + e] = draw[e];
  }
  gsl_rng_free(rng);
}

static int bench_rescale(const char *trace_path) {
  char tmp[256] = "";
  tr_error err;
  if (!trace_path) {
    const char *dir = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/bench_tr_sample_%d.npy", dir && *dir ? dir : "/tmp",
             (int)getpid());
    tr_gen_config c;
    tr_gen_defaults(&c);
    c.iterations = 8;
    c.layers = 4;
    c.ranks = 8;
    c.experts = 64;
    c.tokens_per_rank = 4096;
    c.top_k = 2;
    c.seed = 1;
    tr_gen_pattern(&c, "realistic");
    if (tr_gen_write(&c, tmp, &err) != TR_OK) {
      fprintf(stderr, "bench_tr_sample: %s\n", err.msg);
      return 1;
    }
    trace_path = tmp;
  }
  tr_trace t;
  if (tr_open(&t, trace_path, &err) != TR_OK) {
    fprintf(stderr, "bench_tr_sample: %s: %s\n", trace_path, err.msg);
    return 1;
  }
  enum { G = 1024 };
  int64_t N = 8192;
  int E = t.experts, R = t.ranks;
  int64_t slices = t.iterations * t.layers;
  if (slices > 32)
    slices = 32;
  int64_t *out = malloc((size_t)G * E * sizeof(int64_t));
  int64_t *src = malloc((size_t)R * E * sizeof(int64_t));
  double *p = malloc((size_t)E * sizeof(double));
  unsigned int *draw = malloc((size_t)E * sizeof(unsigned int));
  printf("\n## tr_rescale_slice: ms per (iteration, layer), %d GPUs x %d experts, "
         "%lld slots per GPU, from %d ranks (best of %d x %lld slices)\n",
         G, E, (long long)N, R, reps, (long long)slices);
  if (tmp[0])
    printf("# trace generated: pattern realistic, %lld iterations x %d layers x %d ranks x %d "
           "experts, 4096 tokens per rank, top-2, seed 1\n",
           (long long)t.iterations, t.layers, R, E);
  else
    printf("# trace %s\n", trace_path);
  double best_t = 1e9, best_g = 1e9;
  for (int k = 0; k < reps; k++) {
    double t0 = cpu();
    int bad = 0;
    for (int64_t s = 0; s < slices; s++) {
      bad |= tr_rescale_slice(&t, s / t.layers, (int)(s % t.layers), G, N, 1, out) != TR_OK;
      int64_t tot = 0;
      for (size_t i = 0; i < (size_t)G * E; i++)
        tot += out[i];
      bad |= tot != (int64_t)G * N;
    }
    best_t = fmin(best_t, (cpu() - t0) / (double)slices * 1e3);
    check(!bad, "rescale slice totals");
    t0 = cpu();
    for (int64_t s = 0; s < slices; s++)
      gsl_rescale_slice(&t, s / t.layers, (int)(s % t.layers), G, N, 1, src, p, draw, out);
    best_g = fmin(best_g, (cpu() - t0) / (double)slices * 1e3);
  }
  /* The peer computes the same thing: per slice, source rank and expert,
   * the two rescales' totals over the GPUs reading that rank agree within 6
   * standard errors of their difference (both draw N slots per GPU from
   * the distribution of GPU g's source rank g mod R), and the peer's rows
   * sum to N. */
  double *mine = malloc((size_t)R * E * sizeof(double));
  double *theirs = malloc((size_t)R * E * sizeof(double));
  int agree = mine && theirs;
  for (int64_t s = 0; s < slices && agree; s++) {
    int64_t it = s / t.layers;
    int l = (int)(s % t.layers);
    tr_rescale_slice(&t, it, l, G, N, 1, out);
    memset(mine, 0, (size_t)R * E * sizeof(double));
    memset(theirs, 0, (size_t)R * E * sizeof(double));
    for (int g = 0; g < G; g++)
      for (int e = 0; e < E; e++)
        mine[(g % R) * E + e] += (double)out[(size_t)g * E + e];
    gsl_rescale_slice(&t, it, l, G, N, 1, src, p, draw, out);
    for (int g = 0; g < G; g++) {
      int64_t tot = 0;
      for (int e = 0; e < E; e++) {
        tot += out[(size_t)g * E + e];
        theirs[(g % R) * E + e] += (double)out[(size_t)g * E + e];
      }
      agree &= tot == N;
    }
    for (int r = 0; r < R; r++) {
      const int64_t *row = src + (size_t)r * E;
      double total = 0, n = (double)((G - 1 - r) / R + 1); /* GPUs reading rank r */
      for (int e = 0; e < E; e++)
        total += (double)row[e];
      for (int e = 0; e < E; e++) {
        double q = (double)row[e] / total, var = n * (double)N * q * (1 - q);
        agree &= fabs(mine[r * E + e] - theirs[r * E + e]) <= 6 * sqrt(2 * var) + 1e-9;
      }
    }
  }
  free(mine);
  free(theirs);
  check(agree, "the GSL peer and tr_rescale_slice draw the same distribution");
  double per_count = best_t * 1e6 / ((double)G * E);
  printf("%14s %14s %7s %14s %24s\n", "tr_ms/slice", "gsl_ms/slice", "ratio", "tr_ns/count",
         "tr_s per 1000 it x 24 L");
  printf("%14.3f %14.3f %6.2fx %14.1f %24.1f\n", best_t, best_g, best_g / best_t, per_count,
         best_t * 24);
  free(out);
  free(src);
  free(p);
  free(draw);
  tr_close(&t);
  if (tmp[0]) {
    unlink(tmp);
    size_t len = strlen(tmp);
    memcpy(tmp + len - 4, ".json", 6);
    unlink(tmp);
  }
  return 0;
}

/* ---- (4) opening a trace: the content-hash pass ---------------------- */

/* The former hash pass: FNV-1a 64, byte by byte over each count as a
 * little-endian int64, with the negative check. */
static uint64_t fnv_pass(const tr_trace *t) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t it = 0; it < t->iterations; it++)
    for (int l = 0; l < t->layers; l++)
      for (int r = 0; r < t->ranks; r++)
        for (int e = 0; e < t->experts; e++) {
          int64_t v = tr_at(t, it, l, r, e);
          if (v < 0)
            return 0;
          for (int i = 0; i < 8; i++) {
            h ^= ((uint64_t)v >> (8 * i)) & 0xff;
            h *= 0x100000001b3ULL;
          }
        }
  return h;
}

static int bench_open(int nfiles, char **files) {
  printf("\n## tr_open: CPU ms per open (map + checks + XXH3 hash) vs the byte-wise FNV-1a "
         "pass of before over the same counts (best of %d)\n",
         reps);
  printf("%-48s %10s %10s %10s %10s %7s\n", "file", "MB", "open_ms", "fnv_ms", "open_GB/s",
         "ratio");
  for (int i = 0; i < nfiles; i++) {
    double best_o = 1e9, best_f = 1e9, mb = 0;
    for (int k = 0; k < reps; k++) {
      tr_trace t;
      tr_error err;
      double t0 = cpu();
      if (tr_open(&t, files[i], &err) != TR_OK) {
        fprintf(stderr, "bench_tr_sample: %s\n", err.msg);
        return 1;
      }
      best_o = fmin(best_o, cpu() - t0);
      mb = (double)t.map_len / 1e6;
      t0 = cpu();
      sink = (int64_t)fnv_pass(&t);
      best_f = fmin(best_f, cpu() - t0);
      tr_close(&t);
    }
    const char *name = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
    printf("%-48s %10.1f %10.2f %10.2f %10.2f %6.1fx\n", name, mb, best_o * 1e3,
           best_f * 1e3, mb / 1e3 / best_o, best_f / best_o);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *trace = NULL;
  char **open_files = NULL;
  int nopen = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--trace") == 0 && i + 1 < argc)
      trace = argv[++i];
    else if (strcmp(argv[i], "--open") == 0 && i + 1 < argc) {
      open_files = argv + i + 1;
      nopen = argc - i - 1;
      break;
    } else {
      fprintf(stderr, "usage: bench_tr_sample [--reps K] [--trace TRACE] [--open FILE...]\n");
      return 2;
    }
  }
  if (reps < 1)
    reps = 1;
  gsl_set_error_handler_off();
  printf("# bench_tr_sample: flexmoe %s, GSL %s, one core, CPU time\n", FLEXMOE_VERSION,
         gsl_version);
  printf("# tr = tr_sample's binomials (xoshiro256**, inversion for n*p' < 10, BTRS above); "
         "gsl = gsl_ran_* on MT19937; ratio = gsl / tr\n");
  if (nopen)
    return bench_open(nopen, open_files);
  bench_binomial();
  bench_multinomial();
  bench_mpois();
  if (bench_rescale(trace))
    return 1;
  return failed;
}
