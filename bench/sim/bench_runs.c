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
#include "simrun.h"

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
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
} timing;

static int one(const char *trace, int nodes, const char *policy, const char *engine,
               int64_t iters, timing *t) {
  cli_sim_config c = CLI_SIM_CONFIG_INIT;
  c.trace_path = trace;
  c.cluster = "dgx-h100";
  c.nodes = nodes;
  c.gpus_per_node = 8;
  c.policy = policy;
  c.engine = engine;
  c.it_end = iters > 0 ? iters : -1;
  char err[1024];
  cli_sim_output *o = NULL;
  double w0 = wall(), c0 = cpu();
  int rc = cli_sim_compute(&c, &o, err, sizeof(err));
  t->wall_s = wall() - w0;
  t->cpu_s = cpu() - c0;
  if (rc) {
    fprintf(stderr, "bench_sim_runs: %s %s: %s\n", policy, engine, err);
    return 1;
  }
  t->mean_ms = cli_sim_summary_of(o)->mean_iteration_ms;
  t->iters = cli_sim_summary_of(o)->iterations;
  cli_sim_output_free(o);
  if (!(t->mean_ms > 0) || !isfinite(t->mean_ms)) {
    fprintf(stderr, "bench_sim_runs: %s %s: bad mean %g\n", policy, engine, t->mean_ms);
    return 1;
  }
  return 0;
}

static int real(const char *trace, int nodes, int oracle_iters) {
  printf("# bench_sim_runs real: flexmoe %s, trace %s, dgx-h100 %d x 8 GPUs, one core\n",
         FLEXMOE_VERSION, trace, nodes);
  printf("# times: CPU seconds of cli_sim_compute (wall in brackets); peer = analytic engine\n");
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

int main(int argc, char **argv) {
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
  fprintf(stderr, "usage: bench_sim_runs real TRACE [NODES] [ORACLE_ITERS]\n"
                  "       bench_sim_runs scale TRACE ITERS G1,G2,...\n");
  return 2;
}
