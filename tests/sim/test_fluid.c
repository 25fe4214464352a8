/*
 * The analytic engine's network (sim_fluid): weighted sharing on one link,
 * rate caps under a shared tier, lone flows in closed form, background
 * flows advanced lazily and drained, each against times worked out by hand.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "sim/sim_error.h"
#include "sim/sim_fluid.h"

/* nodes x gpn GPUs; intra 1 GB/s (= 1 byte per ns), NIC 1 GB/s per GPU,
 * latencies 10 ns (intra) and 20 ns (inter). */
static sim_cluster cluster(int nodes, int gpn, double oversub) {
  sim_cluster c;
  memset(&c, 0, sizeof(c));
  c.nodes = nodes;
  c.gpus_per_node = gpn;
  c.intra_GBps = 1;
  c.intra_lat_us = 0.010;
  c.inter_GBps = 1;
  c.inter_lat_us = 0.020;
  c.oversub = oversub;
  c.compute_scale = 1;
  return c;
}

typedef struct got {
  int64_t t[8];
  int n;
} got;

static void record(void *arg, int64_t tag, int64_t t) {
  got *g = arg;
  cr_assert(tag >= 0 && tag < 8);
  g->t[tag] = t;
  g->n++;
}

/* Weights 1 and 3 on one intra link (GPU 0's egress), 200 and 300 bytes:
 * rates 1/4 and 3/4 byte/ns; the heavy flow ends at 400 ns (300 / 0.75),
 * the light one then has 200 - 100 = 100 bytes left and the whole link:
 * 500 ns. Completions add the 10 ns latency. */
Test(fluid, flows_share_a_link_in_proportion_to_their_weights) {
  sim_cluster c = cluster(1, 2, 1);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 0, 0, 200, 1, 10, 0, 0, NULL), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 0, 0, 300, 3, 10, 1, 0, NULL), SIM_OK);
  got g = {0};
  int64_t end;
  cr_assert_eq(sim_fluid_run_fg(&f, 0, record, &g, &end), SIM_OK);
  cr_assert_eq(g.n, 2);
  cr_assert_eq(g.t[1], 400 + 10);
  cr_assert_eq(g.t[0], 500 + 10);
  cr_assert_eq(end, 510);
  sim_fluid_fini(&f);
}

/* A foreground flow alone on a link of its own is closed form: its
 * completion is known at its start and it is not carried. */
Test(fluid, a_lone_flow_completes_at_bytes_over_capacity_plus_latency) {
  sim_cluster c = cluster(2, 1, 1);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  int64_t done = 0;
  cr_assert_eq(sim_fluid_start(&f, 1000, 0, 1, 0, 250.5, 7, 20, 0, 0, &done), SIM_OK);
  cr_assert_eq(done, 1000 + 251 + 20, "ceil(1250.5) + latency");
  got g = {0};
  int64_t end;
  cr_assert_eq(sim_fluid_run_fg(&f, 1000, record, &g, &end), SIM_OK);
  cr_assert_eq(g.n, 0, "nothing was carried");
  sim_fluid_fini(&f);
}

/* A background flow slows the foreground flow it shares a link with and
 * is only advanced when needed; drain reports its completion and kind. */
Test(fluid, background_flows_share_links_and_are_drained_lazily) {
  sim_cluster c = cluster(1, 2, 1);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  /* background: 1,000 bytes out of GPU 0 from t = 0 (weight 1, kind 7) */
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 0, 0, 1000, 1, 10, -1, 7, NULL), SIM_OK);
  /* at t = 200 (800 left), a foreground flow of 300 bytes, weight 1: both
   * at 1/2 byte/ns; the foreground ends at 200 + 600 = 800, the
   * background has 800 - 300 = 500 left and ends at 1,300 */
  int64_t done;
  cr_assert_eq(sim_fluid_start(&f, 200, 0, 0, 0, 300, 1, 10, 3, 0, &done), SIM_OK);
  cr_assert_eq(done, -1, "the link is shared: not closed form");
  got g = {0};
  int64_t end;
  cr_assert_eq(sim_fluid_run_fg(&f, 200, record, &g, &end), SIM_OK);
  cr_assert_eq(g.t[3], 810);
  int kind;
  cr_assert_eq(sim_fluid_drain(&f, 810, &end, &kind), SIM_OK);
  cr_assert_eq(end, 1310);
  cr_assert_eq(kind, 7);
  /* a drained network is empty: the next drain ends now, with no kind */
  cr_assert_eq(sim_fluid_drain(&f, 2000, &end, &kind), SIM_OK);
  cr_assert_eq(end, 2000);
  cr_assert_eq(kind, -1);
  sim_fluid_fini(&f);
}

/* Per-GPU NICs of 1 GB/s under an uplink oversubscribed 1.5x (2 GPUs: 4/3
 * byte/ns): the flows live on the uplink with their NIC as a cap. Weights
 * 1 and 5 would give 2/9 and 10/9 byte/ns; the second is capped at its
 * NIC (1), the first gets the remaining 1/3. 100 bytes each: the second
 * ends at 100 ns, then the first (100 - 33.3 left) has the uplink to
 * itself but its NIC caps it at 1: 100 + 66.7 = 166.7 -> 167. */
Test(fluid, a_shared_tier_is_water_filled_under_each_flows_nic) {
  sim_cluster c = cluster(2, 2, 1.5);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 1, 0, 100, 1, 20, 0, 0, NULL), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 1, 1, 0, 100, 5, 20, 1, 0, NULL), SIM_OK);
  got g = {0};
  int64_t end;
  cr_assert_eq(sim_fluid_run_fg(&f, 0, record, &g, &end), SIM_OK);
  cr_assert_eq(g.t[1], 100 + 20);
  cr_assert_eq(g.t[0], 167 + 20);
  sim_fluid_fini(&f);
}

/* A flow the network could not carry is refused and leaves nothing behind:
 * a weight that is not positive (a zero share would never finish, and a
 * negative one would send backwards), a GPU id outside 0..G-1 (G itself
 * included), and a size that is not finite. */
Test(fluid, a_flow_without_a_positive_weight_a_gpu_or_a_finite_size_is_refused) {
  sim_cluster c = cluster(2, 2, 1);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  static const struct {
    int g;
    double bytes, w;
  } bad[] = {{0, 100, 0},   {0, 100, -0.0},  {0, 100, -1},       {0, 100, NAN},
             {-1, 100, 1},  {4, 100, 1},     {0, INFINITY, 1},   {0, NAN, 1}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    for (int fg = 0; fg < 2; fg++) {
      int64_t done = 0;
      cr_assert_eq(sim_fluid_start(&f, 0, bad[i].g, 0, 0, bad[i].bytes, bad[i].w, 10,
                                   fg ? (int64_t)i : -1, 0, &done),
                   SIM_EINVAL, "gpu %d, %g bytes, weight %g", bad[i].g, bad[i].bytes, bad[i].w);
      cr_assert_eq(done, -1);
    }
  got g = {0};
  int64_t end;
  int kind;
  cr_assert_eq(sim_fluid_run_fg(&f, 0, record, &g, &end), SIM_OK);
  cr_assert_eq(g.n, 0, "nothing was started");
  cr_assert_eq(sim_fluid_drain(&f, 5, &end, &kind), SIM_OK);
  cr_assert_eq(end, 5);
  cr_assert_eq(kind, -1);
  /* the smallest of each still works: GPU G - 1, any positive weight */
  int64_t done;
  cr_assert_eq(sim_fluid_start(&f, 5, 3, 0, 0, 100, 1e-300, 10, 0, 0, &done), SIM_OK);
  cr_assert_eq(done, 5 + 100 + 10);
  sim_fluid_fini(&f);
}

/* sim_fluid_track (the analytic engine's wait for every weight part before
 * the optimizer state starts): kinds >= 5 tracked from the call on; GPU 0's
 * egress carries a tracked 100 bytes beside an untracked 1000 (half the
 * link each: sent at 200 ns, completes at 210), GPU 1's a tracked 300 alone
 * (310). At 250 one is left and the latest completion is 210; at 400 none
 * is left, the latest is 310, and GPU 0's link stopped at its tracked
 * flow's end (200 ns), so a flow can still join it at 310. With tracking
 * off nothing is counted. */
Test(fluid, tracked_flows_report_their_latest_completion_without_passing_it) {
  sim_cluster c = cluster(1, 2, 1);
  sim_fluid f;
  cr_assert_eq(sim_fluid_init(&f, &c), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 1, 0, 1, 50, 1, 10, -1, 2, NULL), SIM_OK); /* untracked */
  sim_fluid_track_kinds(&f, 5, NULL, NULL);
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 0, 0, 100, 1, 10, -1, 5, NULL), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 0, 0, 0, 1000, 1, 10, -1, 2, NULL), SIM_OK);
  cr_assert_eq(sim_fluid_start(&f, 0, 1, 0, 0, 300, 1, 10, -1, 6, NULL), SIM_OK);
  int64_t left, last;
  cr_assert_eq(sim_fluid_track(&f, 250, &left, &last), SIM_OK);
  cr_assert_eq(left, 1);
  cr_assert_eq(last, 210);
  cr_assert_eq(sim_fluid_track(&f, 400, &left, &last), SIM_OK);
  cr_assert_eq(left, 0);
  cr_assert_eq(last, 310);
  cr_assert_float_eq(f.links[f.link_of[0]].t, 200.0, 1e-9, "GPU 0's egress clock");
  int64_t end;
  int kind;
  cr_assert_eq(sim_fluid_drain(&f, 400, &end, &kind), SIM_OK);
  cr_assert_eq(end, 200 + 900 + 10);
  cr_assert_eq(kind, 2);
  cr_assert_eq(f.track_left, 0);
  sim_fluid_track_kinds(&f, -1, NULL, NULL);
  cr_assert_eq(sim_fluid_start(&f, 2000, 0, 0, 0, 100, 1, 10, -1, 5, NULL), SIM_OK);
  cr_assert_eq(sim_fluid_track(&f, 5000, &left, &last), SIM_OK);
  cr_assert_eq(left, 0, "nothing tracked");
  cr_assert_eq(last, -1);
  sim_fluid_fini(&f);
}
