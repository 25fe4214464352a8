/*
 * bench_runs.c - whole simulator runs on one core: wall and CPU seconds per
 * policy for --engine des, with --engine analytic (the closed form, same
 * process, same inputs) as the peer; and how a run grows with the cluster.
 *
 *   bench_sim_runs real TRACE [NODES] [ORACLE_ITERS]
 *       every registered policy on dgx-h100 NODES x 8 GPUs (default 8), all
 *       iterations (the oracle, whose planner is slow at this size, on its
 *       first ORACLE_ITERS iterations, default 50, and the time scaled)
 *   bench_sim_runs scale TRACE ITERS G1,G2,...
 *       static and flexmoe on dgx-h100 with G GPUs (8 per node): CPU seconds
 *       per iteration = (run of ITERS - run of 1) / (ITERS - 1), and a
 *       1,000-iteration run estimated as run of 1 + 999 x that
 *   bench_sim_runs agg TRACE ITERS G1,G2,... [POLICY,...]
 *       the error of the DES's hose aggregation: each policy (default
 *       static,fastermoe,eplb,flexmoe) on dgx-h100 with G GPUs (8 per node,
 *       or one node of G for G < 8), first ITERS iterations, --engine des with
 *       three networks: hose (everything aggregated per GPU, the default),
 *       hose-a2a (all-to-alls aggregated, replica rings and migrations per
 *       GPU pair, as the default was before except that the all-to-all hose
 *       flows are now weighted) and exact (every GPU pair its own flow); mean iteration time, its all-to-all / all-reduce / migration
 *       parts, and the relative error of each against exact
 *
 *   bench_sim_runs perf TRACE ITERS [THREADS] [PERFORMANCE.md]
 *       issue 19's table: static and flexmoe, --engine des, on dgx-h100 with
 *       64, 256 and 1,024 GPUs, first ITERS iterations, THREADS threads
 *       (0 or none: every core), each run drawing its own rescaled counts:
 *       DES events per wall second, wall and CPU seconds per 1,000
 *       iterations (the run's times x 1,000 / ITERS, set-up included), and
 *       the ratio of the wall time recorded in PERFORMANCE.md's table
 *       (rows "| GPUS | POLICY | WALL_PER_1000 | ...") to this run's (above
 *       1: faster than recorded). Absolute times move with the machine's
 *       load: record numbers from a side-by-side run (docs/performance.md)
 *
 * Correctness in the same run: every run's mean iteration time is finite
 * and positive, and des == analytic where both are printed for static on
 * one node (checked by the test suite, not here).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flexmoe_config.h"
#include "placement/pl_policy.h"
#include "run/fm_sim.h"

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the calling thread alone (the engine's, with threads). */
static double cpu_self(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct timing {
  double wall_s, cpu_s, mean_ms;
  int64_t iters;
  fm_sim_summary sum;
} timing;

/* One run; network: 0 hose, 1 exact, 2 hose-alltoall (fm_sim_config). */
static int one_net(const char *trace, int nodes, int gpn, const char *policy,
                   const char *engine, int64_t iters, int network, timing *t) {
  fm_sim_config c = FM_SIM_CONFIG_INIT;
  c.trace_path = trace;
  c.cluster = "dgx-h100";
  c.nodes = nodes;
  c.gpus_per_node = gpn;
  c.policy = policy;
  c.engine = engine;
  c.exact_net = network;
  c.it_end = iters > 0 ? iters : -1;
  char err[1024];
  fm_sim_output *o = NULL;
  double w0 = wall(), c0 = cpu();
  int rc = fm_sim_compute(&c, &o, err, sizeof(err));
  t->wall_s = wall() - w0;
  t->cpu_s = cpu() - c0;
  if (rc) {
    fprintf(stderr, "bench_sim_runs: %s %s: %s\n", policy, engine, err);
    return 1;
  }
  t->sum = *fm_sim_summary_of(o);
  t->mean_ms = t->sum.mean_iteration_ms;
  t->iters = t->sum.iterations;
  fm_sim_output_free(o);
  if (!(t->mean_ms > 0) || !isfinite(t->mean_ms)) {
    fprintf(stderr, "bench_sim_runs: %s %s: bad mean %g\n", policy, engine, t->mean_ms);
    return 1;
  }
  return 0;
}

static int one(const char *trace, int nodes, const char *policy, const char *engine,
               int64_t iters, timing *t) {
  return one_net(trace, nodes, 8, policy, engine, iters, 0, t);
}

static double rel(double x, double ref) { return ref != 0 ? (x - ref) / ref * 100.0 : 0.0; }

static int agg(const char *trace, int64_t iters, const char *list, const char *pols) {
  printf("# bench_sim_runs agg: flexmoe %s, trace %s, iterations 0:%lld, dgx-h100, "
         "--engine des, one core\n",
         FLEXMOE_VERSION, trace, (long long)iters);
  printf("# networks: hose = all flows per GPU (default); hose-a2a = all-to-alls per GPU, "
         "rings and migrations per GPU pair; exact = all per GPU pair\n");
  printf("# ms = mean per iteration; err = (x - exact) / exact in %%\n");
  printf("%5s %-10s %-9s %8s %10s %9s %9s %9s %8s %8s %8s\n", "gpus", "policy", "network",
         "cpu_s", "iter_ms", "a2a_ms", "allred_ms", "migr_ms", "err_it%", "err_ar%", "err_a2a%");
  char buf[256], pbuf[256];
  snprintf(buf, sizeof(buf), "%s", list);
  int fail = 0;
  char *s1 = NULL;
  for (char *tok = strtok_r(buf, ",", &s1); tok; tok = strtok_r(NULL, ",", &s1)) {
    int g = atoi(tok);
    if (g < 1 || (g > 8 && g % 8)) {
      fprintf(stderr, "bench_sim_runs: %d GPUs: not 1..8 or a multiple of 8\n", g);
      return 1;
    }
    int nodes = g > 8 ? g / 8 : 1, gpn = g > 8 ? 8 : g;
    snprintf(pbuf, sizeof(pbuf), "%s", pols);
    char *s2 = NULL;
    for (char *pol = strtok_r(pbuf, ",", &s2); pol; pol = strtok_r(NULL, ",", &s2)) {
      static const int nets[3] = {1, 2, 0}; /* exact first: the reference */
      static const char *names[3] = {"exact", "hose-a2a", "hose"};
      timing t[3];
      int bad = 0;
      for (int k = 0; k < 3 && !bad; k++)
        bad = one_net(trace, nodes, gpn, pol, "des", iters, nets[k], &t[k]);
      if (bad) {
        fail = 1;
        continue;
      }
      for (int k = 0; k < 3; k++) {
        const fm_sim_summary *x = &t[k].sum, *ref = &t[0].sum;
        printf("%5d %-10s %-9s %8.2f %10.4f %9.4f %9.4f %9.4f %8.3f %8.3f %8.3f\n", g, pol,
               names[k], t[k].cpu_s, x->mean_iteration_ms, x->alltoall_ms, x->allreduce_ms,
               x->migration_ms, rel(x->mean_iteration_ms, ref->mean_iteration_ms),
               rel(x->allreduce_ms, ref->allreduce_ms), rel(x->alltoall_ms, ref->alltoall_ms));
      }
      fflush(stdout);
    }
  }
  return fail;
}

static int real(const char *trace, int nodes, int oracle_iters) {
  printf("# bench_sim_runs real: flexmoe %s, trace %s, dgx-h100 %d x 8 GPUs, one core\n",
         FLEXMOE_VERSION, trace, nodes);
  printf("# times: CPU seconds of fm_sim_compute (wall in brackets); peer = analytic engine\n");
  printf("%-10s %6s %10s %18s %18s %8s %10s %10s\n", "policy", "iters", "scaled_to", "des_cpu_s",
         "analytic_cpu_s", "des/an", "des_ms", "analytic_ms");
  const pl_policy_ops *const *reg = pl_policy_registry();
  int fail = 0;
  for (int i = 0; reg[i]; i++) {
    int64_t it = strcmp(reg[i]->name, "oracle") == 0 ? oracle_iters : -1;
    timing d, a;
    if (one(trace, nodes, reg[i]->name, "des", it, &d) ||
        one(trace, nodes, reg[i]->name, "analytic", it, &a)) {
      fail = 1;
      continue;
    }
    /* scale a partial run to the whole trace (same per-iteration cost) */
    double scale = it > 0 ? 908.0 / (double)d.iters : 1.0;
    char dc[32], ac[32];
    snprintf(dc, sizeof(dc), "%.2f (%.2f)", d.cpu_s * scale, d.wall_s * scale);
    snprintf(ac, sizeof(ac), "%.2f (%.2f)", a.cpu_s * scale, a.wall_s * scale);
    printf("%-10s %6lld %10s %18s %18s %7.2fx %10.3f %10.3f\n", reg[i]->name, (long long)d.iters,
           it > 0 ? "908" : "-", dc, ac, d.cpu_s / a.cpu_s, d.mean_ms, a.mean_ms);
    fflush(stdout);
  }
  return fail;
}

static int scale(const char *trace, int64_t iters, const char *list) {
  printf("# bench_sim_runs scale: flexmoe %s, trace %s, %lld iterations, dgx-h100 x 8 GPUs "
         "per node, one core\n",
         FLEXMOE_VERSION, trace, (long long)iters);
  printf("%6s %6s %-8s %10s %12s %16s %12s %10s\n", "gpus", "nodes", "policy", "engine",
         "cpu_s", "cpu_s_per_iter", "est_1000_s", "iter_ms");
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", list);
  int fail = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    int g = atoi(tok);
    if (g < 8 || g % 8) {
      fprintf(stderr, "bench_sim_runs: %d is not a multiple of 8\n", g);
      return 1;
    }
    const char *pols[] = {"static", "flexmoe"};
    const char *engs[] = {"analytic", "des"};
    for (int p = 0; p < 2; p++)
      for (int e = 0; e < 2; e++) {
        /* fixed costs (trace hash, policy set-up) cancel out: per iteration
         * = (time of ITERS - time of 1) / (ITERS - 1) */
        timing t, t1;
        if (one(trace, g / 8, pols[p], engs[e], iters, &t) ||
            one(trace, g / 8, pols[p], engs[e], 1, &t1)) {
          fail = 1;
          continue;
        }
        double per = (t.cpu_s - t1.cpu_s) / (double)(t.iters - 1);
        printf("%6d %6d %-8s %10s %12.2f %16.4f %12.1f %10.3f\n", g, g / 8, pols[p], engs[e],
               t.cpu_s, per, t1.cpu_s + per * 999.0, t.mean_ms);
        fflush(stdout);
      }
  }
  return fail;
}

/* The wall seconds per 1,000 iterations recorded for (gpus, policy) in the
 * markdown table of path, or 0 when there is none (no file, no row). */
static double recorded_wall(const char *path, int gpus, const char *policy) {
  FILE *f = path ? fopen(path, "r") : NULL;
  if (!f)
    return 0;
  char line[512], pol[64];
  double v = 0;
  while (fgets(line, sizeof(line), f)) {
    int g;
    double w;
    if (sscanf(line, " | %d | %63[a-z] | %lf |", &g, pol, &w) == 3 && g == gpus &&
        strcmp(pol, policy) == 0) {
      v = w;
      break;
    }
  }
  fclose(f);
  return v;
}

static int perf(const char *trace, int64_t iters, int threads, const char *doc) {
  printf("# bench_sim_runs perf: flexmoe %s, trace %s, iterations 0:%lld, dgx-h100 x 8 GPUs "
         "per node, --engine des, %d thread(s), draws not kept between runs\n",
         FLEXMOE_VERSION, trace, (long long)iters, threads);
  printf("# per 1,000 iterations = this run x 1,000 / iterations (set-up included); "
         "ratio = recorded wall / this wall (%s)\n", doc ? doc : "no record");
  printf("# cpu = all threads, main = the calling thread (the engine's); bound_s = "
         "max(main, cpu / %d): the wall on %d idle cores can be no less, whatever the load\n",
         threads, threads);
  printf("%6s %-8s %6s %12s %14s %12s %12s %12s %10s %12s %8s %10s\n", "gpus", "policy",
         "iters", "events", "events_per_s", "wall_1000_s", "cpu_1000_s", "main_1000_s",
         "bound_s", "recorded_s", "ratio", "iter_ms");
  static const int sizes[3] = {64, 256, 1024};
  static const char *pols[2] = {"static", "flexmoe"};
  int fail = 0;
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < 2; p++) {
      fm_sim_config c = FM_SIM_CONFIG_INIT;
      c.trace_path = trace;
      c.cluster = "dgx-h100";
      c.nodes = sizes[i] / 8;
      c.gpus_per_node = 8;
      c.policy = pols[p];
      c.engine = "des";
      c.it_end = iters;
      c.threads = threads;
      c.keep_draws = 0;
      char err[1024];
      fm_sim_output *o = NULL;
      double w0 = wall(), c0 = cpu(), m0 = cpu_self();
      int rc = fm_sim_compute(&c, &o, err, sizeof(err));
      double ws = wall() - w0, cs = cpu() - c0, ms = cpu_self() - m0;
      const fm_sim_summary *sum = rc ? NULL : fm_sim_summary_of(o);
      /* correctness in the same run: a finite positive time per iteration */
      if (rc || !(sum->mean_iteration_ms > 0) || !isfinite(sum->mean_iteration_ms)) {
        fprintf(stderr, "bench_sim_runs: %d GPUs %s: %s\n", sizes[i], pols[p],
                rc ? err : "no finite positive iteration time");
        fm_sim_output_free(o);
        fail = 1;
        continue;
      }
      double k = 1000.0 / (double)sum->iterations, rec = recorded_wall(doc, sizes[i], pols[p]);
      uint64_t ev = fm_sim_events(o);
      double bound = ms > cs / threads ? ms : cs / threads;
      printf("%6d %-8s %6lld %12llu %14.0f %12.2f %12.2f %12.2f %10.2f %12.2f %8.2f %10.3f\n",
             sizes[i], pols[p], (long long)sum->iterations, (unsigned long long)ev,
             (double)ev / ws, ws * k, cs * k, ms * k, bound * k, rec,
             rec > 0 ? rec / (ws * k) : 0.0, sum->mean_iteration_ms);
      fflush(stdout);
      fm_sim_output_free(o);
    }
  return fail;
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "perf") == 0) {
    int th = argc > 4 ? atoi(argv[4]) : 0;
    th = th ? th : fm_sim_default_threads();
    if (th < 1 || th > FM_SIM_MAX_THREADS || atoll(argv[3]) < 1) {
      fprintf(stderr, "bench_sim_runs perf: ITERS must be >= 1 and THREADS 0 (every core) "
                      "to %d\n", FM_SIM_MAX_THREADS);
      return 2;
    }
    return perf(argv[2], atoll(argv[3]), th, argc > 5 ? argv[5] : NULL);
  }
  if (argc >= 3 && strcmp(argv[1], "real") == 0) {
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
      printf("# bench_sim_runs: %s not present, skipped\n", argv[2]);
      return 77;
    }
    fclose(f);
    return real(argv[2], argc > 3 ? atoi(argv[3]) : 8, argc > 4 ? atoi(argv[4]) : 50);
  }
  if (argc >= 5 && strcmp(argv[1], "scale") == 0)
    return scale(argv[2], atoll(argv[3]), argv[4]);
  if (argc >= 5 && strcmp(argv[1], "agg") == 0)
    return agg(argv[2], atoll(argv[3]), argv[4],
               argc > 5 ? argv[5] : "static,fastermoe,eplb,flexmoe");
  fprintf(stderr, "usage: bench_sim_runs real TRACE [NODES] [ORACLE_ITERS]\n"
                  "       bench_sim_runs scale TRACE ITERS G1,G2,...\n"
                  "       bench_sim_runs agg TRACE ITERS G1,G2,... [POLICY,...]\n"
                  "       bench_sim_runs perf TRACE ITERS [THREADS] [PERFORMANCE.md]\n");
  return 2;
}
