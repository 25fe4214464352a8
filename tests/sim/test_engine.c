/* Iteration model: analytic == DES without contention, stragglers, events. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_cost.h"
#include "placement/pl_error.h"
#include "placement/pl_placement.h"
#include "placement/pl_route.h"
#include "sim/sim_engine.h"
#include "sim/sim_error.h"

static const double tok[] = {16, 256, 4096};
static const double us[] = {27, 37, 332};

typedef struct fixture {
  sim_cluster cl;
  pl_cluster pc;
  pl_model m;
  pl_profile prof;
  pl_placement p[2];
  pl_routing r[2];
  int64_t counts[2][64 * 64];
} fixture;

static void setup(fixture *f, int nodes, int gpn, int experts) {
  memset(f, 0, sizeof(*f));
  snprintf(f->cl.name, sizeof(f->cl.name), "t");
  snprintf(f->cl.profile, sizeof(f->cl.profile), "h200");
  f->cl.nodes = nodes;
  f->cl.gpus_per_node = gpn;
  f->cl.hbm_gib = 80;
  f->cl.compute_scale = 1;
  f->cl.intra_GBps = 300;
  f->cl.intra_lat_us = 2;
  f->cl.inter_GBps = 25;
  f->cl.inter_lat_us = 5;
  f->cl.oversub = 1;
  int G = nodes * gpn;
  sim_cluster_to_pl(&f->cl, (experts + G - 1) / G, &f->pc);
  f->m = (pl_model){1024, 4096, 2, 2, 12.0};
  f->prof = (pl_profile){3, tok, us, 2.0, 15.0};
  unsigned s = 42;
  for (int l = 0; l < 2; l++) {
    cr_assert_eq(pl_placement_init(&f->p[l], experts, G, f->pc.slots), PL_OK);
    cr_assert_eq(pl_placement_static(&f->p[l]), PL_OK);
    cr_assert_eq(pl_routing_init(&f->r[l], G, experts, 1), PL_OK);
    for (int i = 0; i < G * experts; i++) {
      s = s * 1103515245u + 12345u;
      f->counts[l][i] = (s >> 16) % 300;
    }
    cr_assert_eq(pl_route(&f->p[l], &f->pc, f->counts[l], -1, &f->r[l]), PL_OK);
  }
}

static void teardown(fixture *f) {
  for (int l = 0; l < 2; l++) {
    pl_routing_fini(&f->r[l]);
    pl_placement_fini(&f->p[l]);
  }
}

/* in[0..2): f's two layers, their placement and routing, nothing else. */
static void plain_layers(fixture *f, sim_layer_in in[2]) {
  memset(in, 0, 2 * sizeof(*in));
  for (int l = 0; l < 2; l++) {
    in[l].placement = &f->p[l];
    in[l].routing = &f->r[l];
  }
}

static void run_net(fixture *f, sim_engine_kind kind, int aggregate, sim_iter_out *o,
                    sim_engine *keep) {
  sim_engine e;
  cr_assert_eq(sim_engine_init(&e, kind, &f->cl, &f->pc, &f->m, &f->prof, aggregate), SIM_OK);
  sim_layer_in in[2];
  plain_layers(f, in);
  for (int it = 0; it < 3; it++)
    cr_assert_eq(sim_engine_iteration(&e, in, 2, o), SIM_OK);
  if (keep)
    *keep = e;
  else
    sim_engine_fini(&e);
}

static void run(fixture *f, sim_engine_kind kind, sim_iter_out *o, sim_engine *keep) {
  run_net(f, kind, -1, o, keep);
}

/* 2 layers x 2 passes x 4 phases, each rounded to the ns. */
#define TOL_US (16 * 1e-3)

Test(engine, des_equals_analytic_without_contention_in_one_node) {
  static fixture f;
  setup(&f, 1, 8, 16); /* skewed random counts, no replicas, no moves */
  sim_iter_out a, d;
  run(&f, SIM_ENGINE_ANALYTIC, &a, NULL);
  run(&f, SIM_ENGINE_DES, &d, NULL);
  cr_assert(fabs(a.time_us - d.time_us) <= TOL_US, "analytic %.6f us, des %.6f us", a.time_us,
            d.time_us);
  cr_assert(fabs(a.compute_us - d.compute_us) <= TOL_US);
  cr_assert(fabs(a.alltoall_us - d.alltoall_us) <= TOL_US);
  cr_assert(fabs(a.other_us - d.other_us) <= TOL_US);
  cr_assert_gt(d.alltoall_us, 0);
  teardown(&f);
}

Test(engine, des_charges_capacity_padding_as_analytic_in_one_node) {
  static fixture f;
  setup(&f, 1, 8, 16); /* ~1,200 token slots per expert */
  sim_iter_out real, a, d;
  run(&f, SIM_ENGINE_ANALYTIC, &real, NULL);
  /* capacity 125 per source: drops some tokens, and pads every (source,
   * expert) buffer to 125 slots, every expert's compute to 8 x 125 */
  for (int l = 0; l < 2; l++)
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], 125, &f.r[l]), PL_OK);
  cr_assert(f.r[0].padded && f.r[0].dropped > 0);
  run(&f, SIM_ENGINE_ANALYTIC, &a, NULL);
  cr_assert(fabs(a.compute_us - real.compute_us) > 1.0, "padding must change the time");
  /* the bytes are those on the wire: every source sends each of the 7 other
   * GPUs 2 experts x 125 slots, 2 layers x 4 all-to-alls */
  int64_t wire = 4 * 2 * 8 * 7 * 250 * (int64_t)pl_token_bytes(&f.m);
  cr_assert_eq(a.bytes_alltoall, wire, "analytic: %lld bytes", (long long)a.bytes_alltoall);
  cr_assert_neq(real.bytes_alltoall, wire);
  for (int aggregate = 1; aggregate >= 0; aggregate--) { /* hose, then exact */
    run_net(&f, SIM_ENGINE_DES, aggregate, &d, NULL);
    cr_assert_eq(d.bytes_alltoall, wire, "aggregate %d: %lld bytes", aggregate,
                 (long long)d.bytes_alltoall);
    cr_assert(fabs(a.time_us - d.time_us) <= TOL_US, "aggregate %d: analytic %.6f us, des %.6f us",
              aggregate, a.time_us, d.time_us);
    cr_assert(fabs(a.compute_us - d.compute_us) <= TOL_US, "compute: analytic %.6f, des %.6f",
              a.compute_us, d.compute_us);
    cr_assert(fabs(a.alltoall_us - d.alltoall_us) <= TOL_US, "all-to-all: analytic %.6f, des %.6f",
              a.alltoall_us, d.alltoall_us);
  }
  teardown(&f);
}

Test(engine, des_equals_analytic_across_nodes_with_one_gpu_per_node) {
  static fixture f;
  setup(&f, 4, 1, 8); /* all traffic crosses the switch */
  sim_iter_out a, d;
  run(&f, SIM_ENGINE_ANALYTIC, &a, NULL);
  run(&f, SIM_ENGINE_DES, &d, NULL);
  cr_assert(fabs(a.time_us - d.time_us) <= TOL_US, "analytic %.6f us, des %.6f us", a.time_us,
            d.time_us);
  teardown(&f);
}

Test(engine, a_straggler_gpu_sets_the_layer_time) {
  static fixture f;
  setup(&f, 1, 4, 4);
  /* GPU 3 computes 4096 tokens (its own expert), the others 16 each; no
   * traffic at all (every GPU only routes to its own expert). */
  for (int l = 0; l < 2; l++) {
    memset(f.counts[l], 0, sizeof(f.counts[l]));
    for (int g = 0; g < 4; g++)
      f.counts[l][g * 4 + g] = g == 3 ? 4096 : 16;
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  sim_iter_out d;
  run(&f, SIM_ENGINE_DES, &d, NULL);
  /* per layer: 332 us forward + 2 x 332 backward, on the straggler */
  cr_assert_float_eq(d.compute_us, 2 * 332.0 * 3, 1e-6);
  cr_assert_float_eq(d.alltoall_us, 0.0, 1e-12);
  cr_assert_float_eq(d.time_us, d.compute_us + 4 * 15.0, 1e-6);
  teardown(&f);
}

Test(engine, lone_all_to_all_flows_in_closed_form_equal_the_network) {
  /* 4 nodes x 4 GPUs, 8 experts: every expert has 2 replicas, so the
   * backward all-reduce rings run as background flows on some GPUs' links
   * while the next all-to-alls start: some hose flows are alone on their
   * link (closed form), others share it (network). Per phase the two ways
   * may differ by 1 ns (the network drains a flow finishing within the
   * same nanosecond as another early): 3 iterations x 2 layers x 2 passes
   * x 2 all-to-alls = 24 phases. */
  static fixture f;
  setup(&f, 4, 4, 8);
  sim_iter_out a, b;
  run_net(&f, SIM_ENGINE_DES, SIM_AGG_ALL, &a, NULL);
  run_net(&f, SIM_ENGINE_DES, SIM_AGG_ALL | SIM_AGG_NO_SHORTCUT, &b, NULL);
  cr_assert_gt(a.allreduce_us + a.alltoall_us, 0);
  cr_assert_gt(b.alltoall_us, 0);
  cr_assert(fabs(a.time_us - b.time_us) <= 24e-3, "closed form %.6f us, network %.6f us",
            a.time_us, b.time_us);
  cr_assert(fabs(a.alltoall_us - b.alltoall_us) <= 24e-3);
  cr_assert(fabs(a.allreduce_us - b.allreduce_us) <= 24e-3);
  teardown(&f);
}

Test(engine, every_scheduled_event_is_executed_or_cancelled) {
  static fixture f;
  setup(&f, 2, 4, 8);
  sim_iter_out d;
  sim_engine e;
  /* every flow through the network, so that there are events to count */
  run_net(&f, SIM_ENGINE_DES, SIM_AGG_ALL | SIM_AGG_NO_SHORTCUT, &d, &e);
  uint64_t s, x, c;
  sim_engine_events(&e, &s, &x, &c);
  cr_assert_gt(s, 0);
  cr_assert_eq(s, x + c, "scheduled %llu != executed %llu + cancelled %llu",
               (unsigned long long)s, (unsigned long long)x, (unsigned long long)c);
  cr_assert_eq(sim_evq_check(&e.sim.q), SIM_OK);
  sim_engine_fini(&e);
  teardown(&f);
}

Test(engine, blocking_migration_adds_its_transfer_time) {
  static fixture f;
  setup(&f, 1, 2, 2);
  for (int l = 0; l < 2; l++) { /* no all-to-all: the matrix and its per-GPU sums */
    memset(f.r[l].traffic, 0, sizeof(int64_t) * 4);
    memset(f.r[l].hose, 0, sizeof(int64_t) * 4 * 2);
  }
  pl_move mv = {0, 0, 0, 1, PL_MOVE_REPLICATE, 3000000000, 0};
  sim_engine e;
  cr_assert_eq(sim_engine_init(&e, SIM_ENGINE_DES, &f.cl, &f.pc, &f.m, &f.prof, -1), SIM_OK);
  sim_layer_in in[2];
  memset(in, 0, sizeof(in));
  for (int l = 0; l < 2; l++) {
    in[l].placement = &f.p[l];
    in[l].routing = &f.r[l];
  }
  in[0].moves = &mv;
  in[0].nmoves = 1;
  sim_iter_out o;
  cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_OK);
  /* 3e9 bytes at 300 GB/s + 2 us */
  cr_assert_float_eq(o.migration_us, 10000.0 + 2.0, 1e-3);
  cr_assert_eq(o.bytes_migrated, 3000000000);
  sim_engine_fini(&e);
  teardown(&f);
}

/* Expert 0 of layer 0 replicated on GPUs `gpus[0..n)`; no tokens at all, so
 * the iteration is the non-MoE work of 2 layers x 2 passes followed by the
 * ring all-reduce of layer 0 (it starts after the last backward layer). */
static void ring_only(fixture *f, const int *gpus, int n) {
  int G = f->pc.gpus;
  pl_placement_fini(&f->p[0]);
  cr_assert_eq(pl_placement_init(&f->p[0], G, G, 2), PL_OK);
  cr_assert_eq(pl_placement_static(&f->p[0]), PL_OK);
  for (int l = 0; l < 2; l++) {
    memset(f->counts[l], 0, sizeof(f->counts[l]));
    if (l == 0)
      for (int k = 0; k < n; k++)
        if (!pl_placement_has(&f->p[0], 0, gpus[k]))
          cr_assert_eq(pl_placement_add(&f->p[0], 0, gpus[k]), PL_OK);
    cr_assert_eq(pl_route(&f->p[l], &f->pc, f->counts[l], -1, &f->r[l]), PL_OK);
  }
}

static double ring_formula_us(const fixture *f, int n, double GBps, double lat_us) {
  double grad = (double)pl_expert_params(&f->m) * f->m.bytes_per_elem;
  return 2.0 * (n - 1) / n * grad / (GBps * 1e3) + 2.0 * (n - 1) * lat_us;
}

Test(engine, ring_all_reduce_on_one_node_equals_its_formula_in_both_modes) {
  static fixture f;
  setup(&f, 1, 4, 4);
  const int ring[4] = {0, 1, 2, 3};
  ring_only(&f, ring, 4);
  double want = ring_formula_us(&f, 4, 300, 2); /* 1.5 x 16.8 MB at 300 GB/s + 6 x 2 us */
  for (int agg = SIM_AGG_ALL; agg >= 0; agg -= SIM_AGG_ALL) {
    sim_iter_out d;
    run_net(&f, SIM_ENGINE_DES, agg, &d, NULL);
    cr_assert(fabs(d.allreduce_us - want) <= 1e-3, "aggregate %d: all-reduce %.6f us, want %.6f",
              agg, d.allreduce_us, want);
    cr_assert(fabs(d.time_us - (4 * 15.0 + want)) <= 1e-3);
  }
  teardown(&f);
}

Test(engine, ring_all_reduce_across_nodes_equals_its_formula_in_both_modes) {
  static fixture f;
  setup(&f, 3, 1, 3); /* one GPU per node: every ring step crosses the switch */
  const int ring[3] = {0, 1, 2};
  ring_only(&f, ring, 3);
  double want = ring_formula_us(&f, 3, 25, 5);
  for (int agg = SIM_AGG_ALL; agg >= 0; agg -= SIM_AGG_ALL) {
    sim_iter_out d;
    run_net(&f, SIM_ENGINE_DES, agg, &d, NULL);
    cr_assert(fabs(d.allreduce_us - want) <= 1e-3, "aggregate %d: all-reduce %.6f us, want %.6f",
              agg, d.allreduce_us, want);
  }
  teardown(&f);
}

Test(engine, moves_out_of_one_gpu_share_its_link_in_both_modes) {
  static fixture f;
  setup(&f, 2, 2, 4); /* GPUs 0, 1 on node 0; 2, 3 on node 1 */
  for (int l = 0; l < 2; l++) {
    memset(f.counts[l], 0, sizeof(f.counts[l]));
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  /* GPU 0 sends 1 GB to 2 and 1 GB to 3 (its NIC, 25 GB/s: 80 ms + 5 us)
   * and 0.3 GB to 1 (NVLink, 300 GB/s: 1 ms + 2 us, concurrently) */
  pl_move mv[3] = {{0, 0, 0, 2, PL_MOVE_REPLICATE, 1000000000, 0},
                   {0, 1, 0, 3, PL_MOVE_REPLICATE, 1000000000, 0},
                   {0, 2, 0, 1, PL_MOVE_REPLICATE, 300000000, 0}};
  for (int agg = SIM_AGG_ALL; agg >= 0; agg -= SIM_AGG_ALL) {
    sim_engine e;
    cr_assert_eq(sim_engine_init(&e, SIM_ENGINE_DES, &f.cl, &f.pc, &f.m, &f.prof, agg), SIM_OK);
    sim_layer_in in[2];
    plain_layers(&f, in);
    in[0].moves = mv;
    in[0].nmoves = 3;
    sim_iter_out o;
    cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_OK);
    cr_assert_float_eq(o.migration_us, 80000.0 + 5.0, 1e-3, "aggregate %d: %.6f us", agg,
                       o.migration_us);
    sim_engine_fini(&e);
  }
  teardown(&f);
}

/* The mirror image: moves into one GPU from several share its ingress link.
 * Each sender's egress carries only its own move, so a network that charged
 * egress alone would finish in half the time. */
Test(engine, moves_into_one_gpu_share_its_ingress_link_in_both_engines) {
  static fixture f;
  setup(&f, 2, 2, 4); /* GPUs 0, 1 on node 0; 2, 3 on node 1 */
  for (int l = 0; l < 2; l++) {
    memset(f.counts[l], 0, sizeof(f.counts[l]));
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  /* GPUs 2 and 3 send 1 GB each to GPU 0: 2 GB through GPU 0's 25 GB/s NIC
   * ingress, 80 ms + 5 us (each sender's NIC egress alone: 40 ms); GPU 1
   * sends 0.3 GB over NVLink (1 ms + 2 us, concurrently) */
  pl_move mv[3] = {{0, 0, 2, 0, PL_MOVE_REPLICATE, 1000000000, 0},
                   {0, 1, 3, 0, PL_MOVE_REPLICATE, 1000000000, 0},
                   {0, 2, 1, 0, PL_MOVE_REPLICATE, 300000000, 0}};
  static const struct {
    sim_engine_kind kind;
    int agg;
  } mode[] = {{SIM_ENGINE_DES, SIM_AGG_ALL}, {SIM_ENGINE_DES, 0}, {SIM_ENGINE_ANALYTIC, -1}};
  for (size_t k = 0; k < sizeof(mode) / sizeof(mode[0]); k++) {
    sim_engine e;
    cr_assert_eq(sim_engine_init(&e, mode[k].kind, &f.cl, &f.pc, &f.m, &f.prof, mode[k].agg),
                 SIM_OK);
    sim_layer_in in[2];
    plain_layers(&f, in);
    in[0].moves = mv;
    in[0].nmoves = 3;
    sim_iter_out o;
    cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_OK);
    cr_assert_float_eq(o.migration_us, 80000.0 + 5.0, 1e-3, "engine %d aggregate %d: %.6f us",
                       (int)mode[k].kind, mode[k].agg, o.migration_us);
    sim_engine_fini(&e);
  }
  teardown(&f);
}

/* Replicas and background moves under a skewed all-to-all on 2 x 4 GPUs:
 * the fully aggregated network stays within 2% of the exact per-pair one
 * (measured: -0.35%: the two ends of a pair are not coupled, and an
 * all-to-all hose flow weighs all the GPUs it could send to). */
Test(engine, aggregated_network_agrees_with_exact_within_two_percent) {
  static fixture f;
  setup(&f, 2, 4, 8); /* 1 slot per GPU; add replicas of experts 0 and 1 */
  for (int l = 0; l < 2; l++) {
    pl_placement_fini(&f.p[l]);
    cr_assert_eq(pl_placement_init(&f.p[l], 8, 8, 3), PL_OK);
    cr_assert_eq(pl_placement_static(&f.p[l]), PL_OK);
    for (int g = 1; g < 8; g += 2)
      cr_assert_eq(pl_placement_add(&f.p[l], 0, g), PL_OK);
    cr_assert_eq(pl_placement_add(&f.p[l], 1, 4), PL_OK);
    for (int g = 0; g < 8; g++) /* expert 0 is hot */
      f.counts[l][g * 8 + 0] *= 6;
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  pl_move mv[3] = {{1, 2, 2, 6, PL_MOVE_REPLICATE, 400000000, 0},
                   {1, 3, 3, 5, PL_MOVE_REPLICATE, 400000000, 0},
                   {1, 5, 5, 4, PL_MOVE_REPLICATE, 400000000, 0}};
  double t[2], ar[2];
  for (int k = 0; k < 2; k++) {
    sim_engine e;
    cr_assert_eq(sim_engine_init(&e, SIM_ENGINE_DES, &f.cl, &f.pc, &f.m, &f.prof,
                                 k ? 0 : SIM_AGG_ALL),
                 SIM_OK);
    sim_layer_in in[2];
    memset(in, 0, sizeof(in));
    for (int l = 0; l < 2; l++) {
      in[l].placement = &f.p[l];
      in[l].routing = &f.r[l];
      in[l].background = 1;
    }
    in[1].moves = mv;
    in[1].nmoves = 3;
    sim_iter_out o;
    cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_OK);
    t[k] = o.time_us;
    ar[k] = o.allreduce_us + o.migration_us;
    sim_engine_fini(&e);
  }
  cr_assert_gt(ar[1], 0, "the case must have background traffic");
  cr_assert(fabs(t[0] - t[1]) <= 0.02 * t[1], "hose %.3f us, exact %.3f us (%.2f%%)", t[0], t[1],
            (t[0] - t[1]) / t[1] * 100);
}

/* ------------------------------------------------ one schedule, two nets --- */

/* Runs one iteration of layers `in` on engine `kind` (hose network). */
static sim_iter_out one_iteration(fixture *f, sim_engine_kind kind, const sim_layer_in *in) {
  sim_engine e;
  cr_assert_eq(sim_engine_init(&e, kind, &f->cl, &f->pc, &f->m, &f->prof, -1), SIM_OK);
  sim_iter_out o;
  cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_OK);
  sim_engine_fini(&e);
  return o;
}

static void expect_same(const sim_iter_out *a, const sim_iter_out *d, const char *what) {
  /* every phase rounded to the ns by both; a few dozen phases */
  double tol = 0.05;
  cr_assert(fabs(a->time_us - d->time_us) <= tol, "%s: analytic %.4f us, des %.4f us", what,
            a->time_us, d->time_us);
  cr_assert(fabs(a->alltoall_us - d->alltoall_us) <= tol, "%s: all-to-all %.4f vs %.4f", what,
            a->alltoall_us, d->alltoall_us);
  cr_assert(fabs(a->allreduce_us - d->allreduce_us) <= tol, "%s: allreduce %.4f vs %.4f", what,
            a->allreduce_us, d->allreduce_us);
  cr_assert(fabs(a->migration_us - d->migration_us) <= tol, "%s: migration %.4f vs %.4f", what,
            a->migration_us, d->migration_us);
  cr_assert_eq(a->bytes_sync, d->bytes_sync, "%s", what);
}

/* Replicas spanning nodes, background moves that share links with the
 * all-to-alls, rings overlapping the backward of lower layers, a shadow:
 * the analytic network (per-link fluid) and the DES's aggregated network
 * carry the same flows, so they agree to the rounding. */
Test(engine, both_engines_agree_under_contention_moves_rings_and_shadows) {
  static fixture f;
  setup(&f, 2, 4, 8);
  for (int l = 0; l < 2; l++) {
    pl_placement_fini(&f.p[l]);
    cr_assert_eq(pl_placement_init(&f.p[l], 8, 8, 8), PL_OK);
    cr_assert_eq(pl_placement_static(&f.p[l]), PL_OK);
    for (int g = 1; g < 8; g += 2)
      cr_assert_eq(pl_placement_add(&f.p[l], 0, g), PL_OK);
    cr_assert_eq(pl_placement_add(&f.p[l], 1, 4), PL_OK);
    for (int g = 0; g < 8; g++)
      f.counts[l][g * 8 + 0] *= 6;
  }
  /* layer 1 also shadows expert 5 (owner GPU 5) on every GPU */
  for (int g = 0; g < 8; g++)
    if (!pl_placement_has(&f.p[1], 5, g))
      cr_assert_eq(pl_placement_add(&f.p[1], 5, g), PL_OK);
  int owner[8] = {-1, -1, -1, -1, -1, 5, -1, -1};
  for (int l = 0; l < 2; l++)
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  pl_move mv[3] = {{1, 2, 2, 6, PL_MOVE_REPLICATE, 40000000, 0},
                   {1, 3, 3, 5, PL_MOVE_REPLICATE, 40000000, 0},
                   {1, 5, 5, 4, PL_MOVE_REPLICATE, 40000000, 0}};
  for (int bg = 0; bg < 2; bg++) {
    sim_layer_in in[2];
    memset(in, 0, sizeof(in));
    for (int l = 0; l < 2; l++) {
      in[l].placement = &f.p[l];
      in[l].routing = &f.r[l];
      in[l].background = bg;
    }
    in[0].moves = mv;
    in[0].nmoves = 3;
    in[1].shadow_owner = owner;
    sim_iter_out a = one_iteration(&f, SIM_ENGINE_ANALYTIC, in);
    sim_iter_out d = one_iteration(&f, SIM_ENGINE_DES, in);
    expect_same(&a, &d, bg ? "background moves" : "blocking moves");
    cr_assert_gt(d.allreduce_us, 0, "the case must expose synchronisation");
    cr_assert_gt(d.bytes_sync, 0);
    if (!bg)
      cr_assert_gt(d.migration_us, 0);
  }
  teardown(&f);
}

/* Background moves share the links of the all-to-alls: in both engines
 * they slow the iteration even when they end before it does. */
Test(engine, background_moves_slow_the_all_to_alls_they_share_links_with) {
  static fixture f;
  setup(&f, 1, 4, 4);
  pl_move mv[1] = {{0, 0, 0, 1, PL_MOVE_REPLICATE, 200000000, 0}}; /* 667 us on NVLink */
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_layer_in in[2];
    plain_layers(&f, in);
    sim_iter_out quiet = one_iteration(&f, kind, in);
    in[0].moves = mv;
    in[0].nmoves = 1;
    in[0].background = 1;
    sim_iter_out busy = one_iteration(&f, kind, in);
    cr_assert_gt(busy.alltoall_us, quiet.alltoall_us + 0.01, "kind %d: %.4f vs %.4f", kind,
                 busy.alltoall_us, quiet.alltoall_us);
  }
  teardown(&f);
}

/* A policy's decision on the host (sim_layer_in.decide_us) sits between a
 * layer's gate and its dispatch: with nothing in the background to overlap
 * it, the iteration is exactly that much longer, all of it other time, in
 * both engines; the backward does not wait for it again. */
Test(engine, a_layers_decision_delays_its_forward_dispatch_in_both_engines) {
  static fixture f;
  setup(&f, 2, 4, 16);
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_layer_in in[2];
    plain_layers(&f, in);
    sim_iter_out plain = one_iteration(&f, kind, in);
    in[0].decide_us = 12.5;
    in[1].decide_us = 40.0;
    sim_iter_out held = one_iteration(&f, kind, in);
    cr_assert(fabs(held.time_us - plain.time_us - 52.5) < 1e-6, "kind %d: %.6f -> %.6f us", kind,
              plain.time_us, held.time_us);
    cr_assert(fabs(held.other_us - plain.other_us - 52.5) < 1e-6);
    cr_assert_float_eq(held.alltoall_us, plain.alltoall_us, 1e-9);
    cr_assert_float_eq(held.compute_us, plain.compute_us, 1e-9);
  }
  teardown(&f);
}

/* Weights-first moves (pl_policy.h rule 6), 4 GPUs on one node, NVLink
 * 300 GB/s + 2 us, non-MoE work 15 us per layer and pass: one copy 0 -> 1
 * of `weights` bytes of parameters and `state` bytes of optimizer state on
 * layer `layer`, weights-first or plain background; one iteration. */
static sim_iter_out wf_iteration(fixture *f, sim_engine_kind kind, int layer, int wf,
                                 int64_t weights, int64_t state) {
  pl_move mv = {layer, 0, 0, 1, PL_MOVE_REPLICATE, weights + state, wf ? weights : 0};
  sim_layer_in in[2];
  plain_layers(f, in);
  in[layer].moves = &mv;
  in[layer].nmoves = 1;
  in[layer].background = 1;
  in[layer].weights_first = wf;
  return one_iteration(f, kind, in);
}

/* Layer 0 has only its own non-MoE work (15 us) to hide its weights behind:
 * 40 MB take 133.3 us + 2 us, so its forward waits 120.3 us, charged as
 * migration, in both engines alike; the same copy as a plain background
 * move waits for nothing. */
Test(engine, a_layer0_weight_copy_delays_the_forward_in_both_engines) {
  static fixture f;
  setup(&f, 1, 4, 4);
  double want = 40e6 / 300e3 + 2 - 15;
  sim_iter_out got[2];
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_iter_out plain = wf_iteration(&f, kind, 0, 0, 40000000, 2000000);
    got[k] = wf_iteration(&f, kind, 0, 1, 40000000, 2000000);
    cr_assert(fabs(got[k].migration_us - want) < 0.01, "kind %d: waited %.4f us, want %.4f", kind,
              got[k].migration_us, want);
    cr_assert_lt(plain.migration_us, 1e-3, "kind %d", kind);
    cr_assert_gt(got[k].time_us, plain.time_us + 100, "kind %d: %.3f vs %.3f", kind,
                 got[k].time_us, plain.time_us);
    cr_assert_eq(got[k].bytes_migrated, 42000000);
  }
  expect_same(&got[0], &got[1], "layer-0 weights");
  teardown(&f);
}

/* Layer 1's weights (4 MB: 13.3 us + 2 us) hide behind layer 0's forward
 * and layer 1's non-MoE work: no wait; the same copy on layer 0 exceeds
 * its 15 us of non-MoE work by 0.33 us. */
Test(engine, weights_hide_behind_earlier_layers_forward) {
  static fixture f;
  setup(&f, 1, 4, 4);
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_iter_out l1 = wf_iteration(&f, kind, 1, 1, 4000000, 1000000);
    sim_iter_out l0 = wf_iteration(&f, kind, 0, 1, 4000000, 1000000);
    cr_assert_lt(l1.migration_us, 1e-3, "kind %d: %.4f", kind, l1.migration_us);
    cr_assert(fabs(l0.migration_us - (4e6 / 300e3 + 2 - 15)) < 0.01, "kind %d: %.4f", kind,
              l0.migration_us);
  }
  teardown(&f);
}

/* The optimizer state (3 GB: 10 ms) follows behind the iteration and holds
 * the boundary: the iteration ends when it lands, the wait charged as
 * migration; it starts only once the weights have landed, so it ends no
 * earlier than the same bytes as a plain background move. */
Test(engine, a_late_state_part_holds_the_boundary_as_migration) {
  static fixture f;
  setup(&f, 1, 4, 4);
  sim_iter_out got[2];
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_iter_out plain = wf_iteration(&f, kind, 1, 0, 4000000, 3000000000);
    got[k] = wf_iteration(&f, kind, 1, 1, 4000000, 3000000000);
    cr_assert_gt(got[k].time_us, 10000, "kind %d: %.1f", kind, got[k].time_us);
    cr_assert_gt(got[k].migration_us, got[k].time_us - 1000, "kind %d: %.1f of %.1f", kind,
                 got[k].migration_us, got[k].time_us);
    cr_assert_geq(got[k].time_us, plain.time_us - 0.01, "kind %d", kind);
  }
  expect_same(&got[0], &got[1], "late state");
  teardown(&f);
}

/* The optimizer state starts when the weights have landed (rule 6), not
 * when the ranks reach the weights-first layer: layer 1's weights (300 kB:
 * 1 us + 2 us) land 3 us into the iteration, long before layer 1's
 * forward, and its state (300 MB: 1 ms) starts then; the iteration ends
 * with it. The same bytes as one plain background move start at 0 and take
 * one hop's latency less, sharing the same all-to-alls: the two iterations
 * differ by that 2 us (starting the state at layer 1's dispatch would add
 * layer 0's whole forward and two layers' non-MoE work). */
Test(engine, the_state_starts_when_the_weights_land_not_at_the_layer) {
  static fixture f;
  setup(&f, 1, 4, 4);
  sim_iter_out got[2];
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_iter_out plain = wf_iteration(&f, kind, 1, 0, 300000, 300000000);
    got[k] = wf_iteration(&f, kind, 1, 1, 300000, 300000000);
    cr_assert_gt(got[k].time_us, 1000, "kind %d: %.3f", kind, got[k].time_us);
    cr_assert(fabs(got[k].time_us - plain.time_us - 2.0) < 0.01,
              "kind %d: weights-first %.4f us, plain %.4f us: want 2 us more", kind,
              got[k].time_us, plain.time_us);
  }
  expect_same(&got[0], &got[1], "state after the weights");
  teardown(&f);
}

/* Weights that land during an all-to-all: the state starts at the
 * all-to-all's end (background flows join between foreground phases) in
 * both engines alike, and never before the weights have landed. */
Test(engine, weights_landing_inside_an_all_to_all_start_the_state_at_its_end) {
  static fixture f;
  setup(&f, 1, 4, 4);
  sim_layer_in in[2];
  memset(in, 0, sizeof(in));
  for (int l = 0; l < 2; l++) {
    in[l].placement = &f.p[l];
    in[l].routing = &f.r[l];
  }
  sim_iter_out quiet = one_iteration(&f, SIM_ENGINE_DES, in);
  double a2a = quiet.alltoall_us / 8; /* 2 layers x 4 all-to-alls, all alike */
  cr_assert_gt(a2a, 1.0, "%.4f us", a2a);
  /* send-end in the middle of layer 0's dispatch: 15 us of non-MoE work + a2a/2 */
  int64_t weights = (int64_t)((15 + a2a / 2 - 2) * 300e3);
  sim_iter_out got[2];
  for (int k = 0; k < 2; k++) {
    sim_engine_kind kind = k ? SIM_ENGINE_DES : SIM_ENGINE_ANALYTIC;
    sim_iter_out plain = wf_iteration(&f, kind, 1, 0, weights, 300000000);
    got[k] = wf_iteration(&f, kind, 1, 1, weights, 300000000);
    cr_assert_gt(got[k].time_us, plain.time_us + 2.0, "kind %d: %.4f vs %.4f", kind,
                 got[k].time_us, plain.time_us);
  }
  expect_same(&got[0], &got[1], "weights inside an all-to-all");
  teardown(&f);
}

typedef struct xfer_sum {
  double bytes[4][4]; /* [gpu][class: intra out, intra in, inter out, inter in] */
  int64_t lat[4][4];
  int n;
} xfer_sum;

static int sum_xfer(void *arg, int src, int dst, double bytes, int64_t lat_ns) {
  xfer_sum *s = arg;
  int inter = src / 2 != dst / 2; /* 2 GPUs per node */
  s->bytes[src][2 * inter] += bytes;
  s->bytes[dst][2 * inter + 1] += bytes;
  s->lat[src][2 * inter] = lat_ns;
  s->lat[dst][2 * inter + 1] = lat_ns;
  s->n++;
  return 0;
}

/* FasterMoE's shadow on 2 nodes x 2 GPUs, by hand: expert 1 (owner GPU 1)
 * shadowed on all four; its weights go 1 -> 2 -> 3 -> 0 (GPU order from
 * the owner), one parameter copy P per hop: GPU 1's NIC out, GPU 2's NIC
 * in and NVLink out, GPU 3's NVLink in and NIC out, GPU 0's NIC in; the
 * chain's latency is its hops summed (5 + 2 + 5 us). Its gradient goes
 * back the reverse way. Expert 3, replicated on GPUs 2 and 3 and not
 * shadowed, all-reduces by a ring (2(r-1)/r x P each way, 2(r-1) NVLink
 * hops). */
Test(engine, shadow_broadcast_and_reduce_bytes_per_link_by_hand) {
  static fixture f;
  setup(&f, 2, 2, 4);
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 4, 4, 3), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK); /* expert g on GPU g */
  for (int g = 0; g < 4; g++)
    if (g != 1)
      cr_assert_eq(pl_placement_add(&p, 1, g), PL_OK);
  cr_assert_eq(pl_placement_add(&p, 3, 2), PL_OK);
  int owner[4] = {-1, 1, -1, -1};
  double P = 2.0 * 1024 * 4096 * 2; /* parameters x bf16 */
  xfer_sum fw = {0}, bw = {0};
  cr_assert_eq(sim_sync_transfers(&f.cl, &f.m, &p, owner, 0, sum_xfer, &fw), SIM_OK);
  cr_assert_eq(sim_sync_transfers(&f.cl, &f.m, &p, owner, 1, sum_xfer, &bw), SIM_OK);
  const double want_fw[4][4] = {{0, 0, 0, P}, {0, 0, P, 0}, {P, 0, 0, P}, {0, P, P, 0}};
  cr_assert_eq(fw.n, 3, "one chain of 3 hops");
  for (int g = 0; g < 4; g++)
    for (int c = 0; c < 4; c++) {
      cr_assert_float_eq(fw.bytes[g][c], want_fw[g][c], 1e-6, "forward GPU %d class %d", g, c);
      if (want_fw[g][c] > 0)
        cr_assert_eq(fw.lat[g][c], 12000, "chain latency = 5 + 2 + 5 us");
    }
  /* backward: the reverse chain (3 hops) plus the ring of expert 3 (2 steps) */
  const double want_bw[4][4] = {
      {0, 0, P, 0}, {0, 0, 0, P}, {P, P + P, P, 0}, {P + P, P, 0, P}};
  cr_assert_eq(bw.n, 5);
  for (int g = 0; g < 4; g++)
    for (int c = 0; c < 4; c++)
      cr_assert_float_eq(bw.bytes[g][c], want_bw[g][c], 1e-6, "backward GPU %d class %d", g, c);
  /* without the shadow, expert 1 is all-reduced by a 4-GPU ring that spans
   * the nodes: 2(r-1) = 6 hops of the inter-node latency */
  xfer_sum ring = {0};
  cr_assert_eq(sim_sync_transfers(&f.cl, &f.m, &p, NULL, 1, sum_xfer, &ring), SIM_OK);
  cr_assert_eq(ring.n, 4 + 2);
  cr_assert_float_eq(ring.bytes[1][2], 1.5 * P, 1e-6, "GPU 1 -> 2 crosses the switch");
  cr_assert_eq(ring.lat[1][2], 6 * 5000);
  pl_placement_fini(&p);
  teardown(&f);
}

/* A GPU computes a shadow only once its weights arrived: with weights
 * that take long to broadcast the forward compute phase lasts the
 * broadcast plus the shadow's compute, and that wait is reported as
 * synchronisation, in both engines. */
Test(engine, shadowed_experts_wait_for_their_broadcast) {
  static fixture f;
  setup(&f, 2, 2, 4);
  f.m.d_ff = 65536; /* 268 MB of weights: 10.7 ms over a 25 GB/s NIC */
  for (int l = 0; l < 2; l++) {
    pl_placement_fini(&f.p[l]);
    cr_assert_eq(pl_placement_init(&f.p[l], 4, 4, 3), PL_OK);
    cr_assert_eq(pl_placement_static(&f.p[l]), PL_OK);
    for (int g = 0; g < 4; g++)
      if (g != 1)
        cr_assert_eq(pl_placement_add(&f.p[l], 1, g), PL_OK);
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  int owner[4] = {-1, 1, -1, -1};
  sim_layer_in in[2];
  memset(in, 0, sizeof(in));
  for (int l = 0; l < 2; l++) {
    in[l].placement = &f.p[l];
    in[l].routing = &f.r[l];
    in[l].shadow_owner = owner;
  }
  sim_iter_out a = one_iteration(&f, SIM_ENGINE_ANALYTIC, in);
  sim_iter_out d = one_iteration(&f, SIM_ENGINE_DES, in);
  expect_same(&a, &d, "shadow");
  double P = 2.0 * 1024 * 65536 * 2;
  /* per layer: the chain's two NIC hops run concurrently (pipelined),
   * each P / 25 GB/s, + 12 us of hop latencies; two layers forward */
  double bcast = P / 25e3 + 12.0;
  cr_assert_gt(d.allreduce_us, 2 * bcast * 0.9, "allreduce %.1f us, broadcast %.1f us",
               d.allreduce_us, bcast);
  teardown(&f);
}

/* One iteration of the fixture's two layers on engine kind; its code. */
static int bounded_iteration(fixture *f, sim_engine_kind kind, int aggregate, int max_flows,
                         uint64_t max_work, sim_iter_out *o) {
  sim_engine e;
  cr_assert_eq(sim_engine_init(&e, kind, &f->cl, &f->pc, &f->m, &f->prof, aggregate), SIM_OK);
  if (max_flows)
    e.max_flows = max_flows;
  if (max_work)
    e.max_work = max_work;
  sim_layer_in in[2];
  plain_layers(f, in);
  int rc = sim_engine_iteration(&e, in, 2, o);
  sim_engine_fini(&e);
  return rc;
}

/* Finding: extreme numbers reached undefined behaviour in the engines (a
 * compute time past int64 ns through llround, an all-to-all end past it
 * through a cast, the analytic network's completion cast). Each is now
 * SIM_ETIME at once, from both engines and every DES network. */
Test(engine, a_time_past_the_clock_is_an_error_from_both_engines) {
  static fixture f;
  static const double huge_us[] = {1e17, 1e17, 1e17}; /* 1e20 ns per expert */
  sim_iter_out o;
  setup(&f, 2, 2, 8);
  f.prof.us = huge_us;
  for (int agg = -1; agg <= 0; agg++) {
    cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_ANALYTIC, agg, 0, 0, &o), SIM_ETIME);
    cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, agg, 0, 0, &o), SIM_ETIME, "aggregate %d",
                 agg);
  }
  teardown(&f);
  /* the network: about 1e15 bytes per GPU (tokens of 2^40 bytes) over
   * 0.001 GB/s links behind a 1000x oversubscribed switch: 1e21 ns */
  setup(&f, 2, 2, 8);
  f.cl.intra_GBps = f.cl.inter_GBps = SIM_BW_MIN_GBPS;
  f.cl.oversub = SIM_OVERSUB_MAX;
  f.m.d_model = 1 << 20;
  f.m.bytes_per_elem = 1 << 20;
  sim_cluster_to_pl(&f.cl, f.pc.slots, &f.pc);
  for (int agg = -1; agg <= 0; agg++) {
    cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_ANALYTIC, agg, 0, 0, &o), SIM_ETIME);
    cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, agg, 0, 0, &o), SIM_ETIME, "aggregate %d",
                 agg);
  }
  teardown(&f);
}

/* The ends of the cluster ranges still simulate: the slowest links, the
 * longest latency and the most oversubscribed switch give finite times on
 * which the engines agree as they do on a preset. */
Test(engine, the_ends_of_the_cluster_ranges_simulate_and_the_engines_agree) {
  static fixture f;
  sim_iter_out a, d;
  setup(&f, 2, 2, 8);
  f.cl.intra_GBps = SIM_BW_MIN_GBPS;
  f.cl.inter_GBps = SIM_BW_MIN_GBPS;
  f.cl.intra_lat_us = f.cl.inter_lat_us = SIM_LAT_MAX_US;
  f.cl.oversub = SIM_OVERSUB_MAX;
  sim_cluster_to_pl(&f.cl, f.pc.slots, &f.pc);
  for (int l = 0; l < 2; l++)
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_ANALYTIC, -1, 0, 0, &a), SIM_OK);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, -1, 0, 0, &d), SIM_OK);
  cr_assert(isfinite(a.time_us) && a.time_us > 8 * SIM_LAT_MAX_US, "%g us", a.time_us);
  cr_assert(fabs(a.time_us - d.time_us) <= 1e-6 * a.time_us, "analytic %.3f us, des %.3f us",
            a.time_us, d.time_us);
  teardown(&f);
}

/* The DES's work per iteration is bounded: past the flow or the rate-update
 * bound an iteration is SIM_ELIMIT, not hours of refilling (the exact
 * network grows with about G^4); the defaults leave a real run untouched. */
Test(engine, the_des_work_bounds_stop_an_iteration_with_an_error) {
  static fixture f;
  sim_iter_out o, ref;
  setup(&f, 2, 4, 16);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, 0, 0, 0, &ref), SIM_OK);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, 0, 20, 0, &o), SIM_ELIMIT);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, 0, 0, 50, &o), SIM_ELIMIT);
  cr_assert_eq(bounded_iteration(&f, SIM_ENGINE_DES, 0, 0, 0, &o), SIM_OK);
  cr_assert_eq(o.time_us, ref.time_us);
  teardown(&f);
}

/* Temporaries (pl_policy.h's contract) on 2 nodes x 2 GPUs: expert 1
 * (planned on GPU 1 only) gets a temporary on GPU 2, its weights sent
 * 1 -> 2 in the forward pass and its gradient 2 -> 1 after the backward,
 * P bytes each, and no ring (the planned placement has one replica). With
 * weights that take long over the NIC, GPU 2 computes the temporary only
 * once they have arrived: the wait is reported as synchronisation. Both
 * engines charge the same; the same placement with expert 1 planned on
 * GPUs 1 and 2 is all-reduced by a ring instead and does not wait. */
Test(engine, temporaries_are_copied_in_and_reduced_back_by_both_engines) {
  static fixture f;
  setup(&f, 2, 2, 4);
  f.m.d_ff = 65536; /* 268 MB of weights: 10.7 ms over a 25 GB/s NIC */
  pl_placement planned[2];
  pl_temp temp = {.expert = 1, .from = 1, .to = 2};
  for (int l = 0; l < 2; l++) {
    pl_placement_fini(&f.p[l]);
    cr_assert_eq(pl_placement_init(&planned[l], 4, 4, 2), PL_OK);
    cr_assert_eq(pl_placement_static(&planned[l]), PL_OK);
    cr_assert_eq(pl_placement_init(&f.p[l], 4, 4, 2), PL_OK);
    cr_assert_eq(pl_placement_copy(&f.p[l], &planned[l]), PL_OK);
    cr_assert_eq(pl_placement_add(&f.p[l], 1, 2), PL_OK);
    cr_assert_eq(pl_route(&f.p[l], &f.pc, f.counts[l], -1, &f.r[l]), PL_OK);
  }
  sim_layer_in in[2], ring[2];
  memset(in, 0, sizeof(in));
  memset(ring, 0, sizeof(ring));
  for (int l = 0; l < 2; l++) {
    in[l].placement = ring[l].placement = &f.p[l];
    in[l].routing = ring[l].routing = &f.r[l];
    in[l].temps = &temp;
    in[l].ntemps = 1;
    in[l].planned = &planned[l];
  }
  sim_iter_out a = one_iteration(&f, SIM_ENGINE_ANALYTIC, in);
  sim_iter_out d = one_iteration(&f, SIM_ENGINE_DES, in);
  expect_same(&a, &d, "temporaries");
  double P = 2.0 * 1024 * 65536 * 2;
  cr_assert_eq(d.bytes_sync, 2 * 2 * (int64_t)P, "one copy in and one back per layer");
  cr_assert_eq(d.bytes_migrated, 0);
  double copy = P / 25e3 + 5.0; /* us over the NIC, one hop of latency */
  cr_assert_gt(d.allreduce_us, 2 * copy * 0.9, "allreduce %.1f us, copies %.1f us",
               d.allreduce_us, copy);
  sim_iter_out r = one_iteration(&f, SIM_ENGINE_DES, ring);
  cr_assert_eq(r.bytes_sync, 2 * 2 * (int64_t)P, "a 2-ring sends P each way per layer");
  cr_assert_lt(r.time_us, d.time_us - copy, "planned %.1f us, temporaries %.1f us", r.time_us,
               d.time_us);
  /* a temporary naming a GPU out of range is refused */
  pl_temp bad = {.expert = 1, .from = 1, .to = 4};
  in[0].temps = &bad;
  sim_engine e;
  sim_iter_out o;
  cr_assert_eq(sim_engine_init(&e, SIM_ENGINE_DES, &f.cl, &f.pc, &f.m, &f.prof, -1), SIM_OK);
  cr_assert_eq(sim_engine_iteration(&e, in, 2, &o), SIM_EINVAL);
  sim_engine_fini(&e);
  for (int l = 0; l < 2; l++)
    pl_placement_fini(&planned[l]);
  teardown(&f);
}
