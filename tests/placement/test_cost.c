/* Cost model: profile interpolation and closed-form layer costs. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "placement/pl_cost.h"
#include "placement/pl_error.h"
#include "placement/pl_route.h"
#include "../../placement/pl_internal.h"

static const double tok[] = {16, 256, 4096};
static const double us[] = {27, 37, 332};
static const pl_profile prof = {3, tok, us, 2.0, 10.0};

Test(cost, ffn_time_interpolates_linearly_between_points) {
  cr_assert_float_eq(pl_ffn_us(&prof, 0), 0.0, 1e-12);
  cr_assert_float_eq(pl_ffn_us(&prof, 1), 27.0, 1e-12);
  cr_assert_float_eq(pl_ffn_us(&prof, 16), 27.0, 1e-12);
  cr_assert_float_eq(pl_ffn_us(&prof, 136), 32.0, 1e-9);
  cr_assert_float_eq(pl_ffn_us(&prof, 4096), 332.0, 1e-9);
  /* beyond the table: last slope (295 us per 3840 tokens) */
  cr_assert_float_eq(pl_ffn_us(&prof, 7936), 332.0 + 295.0, 1e-9);
}

Test(cost, profile_check_refuses_unsorted_tokens) {
  const double bad[] = {16, 16, 32};
  pl_profile p = {3, bad, us, 2.0, 0};
  cr_assert_eq(pl_profile_check(&p), PL_EINVAL);
  cr_assert_eq(pl_profile_check(&prof), PL_OK);
}

Test(cost, layer_time_is_slowest_gpu_plus_alltoall_in_closed_form) {
  /* 2 GPUs in one node, 2 experts, expert e on GPU e. GPU 0 sends 256 tokens
   * to expert 1, GPU 1 sends nothing remote. */
  pl_cluster c = {2, 2, 1, 100e9, 1e-6, 10e9, 5e-6, 1.0};
  pl_model m = {1000, 4000, 1, 2, 12.0};
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 2, 1), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_routing_init(&r, 2, 2, 1), PL_OK);
  int64_t counts[4] = {16, 256, 0, 0};
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  pl_cost cost;
  cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &r, &cost), PL_OK);
  cr_assert_float_eq(cost.compute_us, 37.0 * 3.0, 1e-9); /* GPU 1: 256 tokens */
  double a2a = 1e-6 + 256.0 * 2000 / 100e9; /* seconds, one direction */
  cr_assert_float_eq(cost.alltoall_us, 4 * a2a * 1e6, 1e-9);
  cr_assert_float_eq(cost.allreduce_us, 0.0, 1e-12);
  cr_assert_float_eq(cost.other_us, 20.0, 1e-12);
  cr_assert_float_eq(cost.total_us,
                     cost.compute_us + cost.alltoall_us + cost.other_us, 1e-9);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(cost, replica_allreduce_is_a_ring_over_the_slowest_link) {
  pl_cluster c = {4, 2, 2, 100e9, 0, 10e9, 0, 2.0};
  pl_model m = {1000, 4000, 1, 2, 12.0};
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 4, 2), PL_OK);
  pl_placement_add(&p, 0, 0);
  pl_placement_add(&p, 0, 2); /* spans nodes: inter link / oversub = 5 GB/s */
  pl_placement_add(&p, 1, 1);
  cr_assert_eq(pl_routing_init(&r, 4, 2, 1), PL_OK);
  int64_t counts[8] = {0};
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  pl_cost cost;
  cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &r, &cost), PL_OK);
  double grad = 2.0 * 1000 * 4000 * 2;
  cr_assert_float_eq(cost.allreduce_us, 2.0 * 1 / 2 * grad / 5e9 * 1e6, 1e-6);
  cr_assert_eq(pl_expert_move_bytes(&m), 8000000LL * 14);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(cost, capacity_routing_is_charged_its_padded_buffers) {
  /* 2 GPUs, 2 experts (one each), capacity 20 per source: every source
   * sends every expert 20 slots whatever it has, every replica computes 40. */
  pl_cluster c = {2, 2, 1, 100e9, 0, 10e9, 0, 1.0};
  pl_model m = {1000, 4000, 1, 2, 12.0};
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 2, 1), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_routing_init(&r, 2, 2, 1), PL_OK);
  int64_t counts[4] = {30, 1, 30, 1}; /* GPU 1 sends 30 to expert 0, 20 kept */
  cr_assert_eq(pl_route(&p, &c, counts, 20, &r), PL_OK);
  cr_assert(r.padded);
  cr_assert_eq(r.capacity, 20);
  cr_assert_eq(r.dropped, 20);
  cr_assert_eq(r.traffic[1 * 2 + 0], 20, "traffic keeps the real tokens: 20 of 30 fit");
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 1, 0), 20);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 0, 1), 20, "padding is sent even for 1 token");
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 1, 1), 40);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 1, 0), 0);
  pl_cost cost;
  cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &r, &cost), PL_OK);
  cr_assert_float_eq(cost.compute_us, pl_ffn_us(&prof, 40) * 3.0, 1e-9);
  cr_assert_float_eq(cost.alltoall_us, 4 * 20.0 * 2000 / 100e9 * 1e6, 1e-9);
  /* a dropless routing of the same counts is not padded */
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  cr_assert(!r.padded);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 0, 1), 1);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(cost, background_moves_cost_only_what_exceeds_the_iteration) {
  cr_assert_float_eq(pl_cost_exposed_us(500, 0, 0, 2000), 500, 1e-12);
  cr_assert_float_eq(pl_cost_exposed_us(500, 1, 0, 2000), 0, 1e-12);
  cr_assert_float_eq(pl_cost_exposed_us(2500, 1, 0, 2000), 500, 1e-12);
  cr_assert_float_eq(pl_cost_exposed_us(2500, 0, 1, 2000), 0, 1e-12);
}

Test(cost, weights_first_moves_cost_a_late_weight_copy_and_a_late_state) {
  /* weights within their window and state within the iteration: free */
  cr_assert_float_eq(pl_cost_weights_first_us(100, 150, 1500, 2000), 0, 1e-12);
  /* weights 30 us past the window before the layer's forward */
  cr_assert_float_eq(pl_cost_weights_first_us(180, 150, 1500, 2000), 30, 1e-12);
  /* the state 500 us past the iteration holds the boundary */
  cr_assert_float_eq(pl_cost_weights_first_us(100, 150, 2500, 2000), 500, 1e-12);
  cr_assert_float_eq(pl_cost_weights_first_us(180, 150, 2500, 2000), 530, 1e-12);
  /* bf16 with Adam: the weights are 2 of the 14 bytes per parameter */
  pl_model m = {2048, 8192, 2, 2, 12.0};
  cr_assert_eq(pl_expert_weight_bytes(&m), 2 * 2048 * 8192 * 2);
  cr_assert_eq(7 * pl_expert_weight_bytes(&m), pl_expert_move_bytes(&m));
}

/* An allocator that fails its n-th call (1-based) and passes the rest to
 * malloc: pl_set_allocator's hook for tests. */
static int alloc_calls, alloc_fail_at;
static void *failing_malloc(size_t size) {
  return ++alloc_calls == alloc_fail_at ? NULL : malloc(size);
}

/*
 * The time of a list of moves, in closed form: 4 GPUs, 2 per node; GPU 0
 * sends 1 GB inside its node (to GPU 1) and 2 GB to GPU 2 in the other
 * node, GPU 3 sends 0.5 GB to GPU 2; a drop and a move of no bytes cost
 * nothing. GPU 0 is the slowest: 1 GB / 450 GB/s + 2 GB / 50 GB/s plus both
 * latencies (GPU 2 receives the same inter-node 2 GB but only 0.5 GB inside
 * its node). pl_cost_moves_us sums per GPU in scratch memory and falls back
 * to a scan when that cannot be allocated: with either of its two
 * allocations failing it gives the same bits.
 */
Test(cost, moves_time_is_the_slowest_gpus_links_even_without_scratch_memory) {
  pl_cluster c = {4, 2, 4, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  const pl_move mv[] = {
      {.layer = 0, .expert = 0, .from = 0, .to = 1, .kind = PL_MOVE_MIGRATE, .bytes = 1000000000},
      {.layer = 0, .expert = 1, .from = 0, .to = 2, .kind = PL_MOVE_REPLICATE, .bytes = 2000000000},
      {.layer = 0, .expert = 2, .from = 3, .to = 2, .kind = PL_MOVE_MIGRATE, .bytes = 500000000},
      {.layer = 0, .expert = 3, .from = 1, .to = -1, .kind = PL_MOVE_DROP, .bytes = 0},
      {.layer = 0, .expert = 4, .from = 1, .to = 3, .kind = PL_MOVE_REPLICATE, .bytes = 0},
  };
  int n = (int)(sizeof(mv) / sizeof(mv[0]));
  double want = (1e9 / 450e9 + 2e9 / 50e9 + 2e-6 + 5e-6) * 1e6;
  double us = pl_cost_moves_us(&c, mv, n);
  cr_assert_float_eq(us, want, 1e-9 * want, "%.9g us, want %.9g", us, want);
  for (int at = 1; at <= 3; at++) {
    alloc_calls = 0;
    alloc_fail_at = at;
    pl_set_allocator(failing_malloc, NULL, NULL);
    double got = pl_cost_moves_us(&c, mv, n);
    int calls = alloc_calls;
    pl_set_allocator(NULL, NULL, NULL);
    cr_assert(got == us, "allocation %d failing: %.17g us, %.17g with memory", at, got, us);
    if (at == 3) /* nothing failed: so failing calls 1 and 2 covered every allocation */
      cr_assert_eq(calls, 2, "the scratch sums took %d allocations, not 2", calls);
  }
  cr_assert_eq(pl_cost_moves_us(&c, mv, 0), 0.0);
}

/* pl_cost_layer_floor bounds pl_cost_layer's total of the dropless routing
 * from below without routing, on random placements (1 to 6 replicas, 4
 * nodes, or one) and skewed random counts, and comes close where the routing is
 * predictable (every expert on one GPU: compute and out-traffic exact, the
 * floor differs only by in-traffic). With a profile whose times fall
 * somewhere the compute term is dropped, and it still bounds. */
Test(cost, layer_floor_is_below_the_routed_cost_and_close_when_replicas_are_single) {
  enum { G = 16, GPN = 4, E = 10, S = 4 };
  pl_cluster nodes4 = {G, GPN, S, 450e9, 2e-6, 50e9, 5e-6, 1.0};
  pl_cluster node1 = {G, G, S, 450e9, 2e-6, 50e9, 5e-6, 1.0}; /* all traffic intra */
  pl_model m = {2048, 8192, 2, 2, 12.0};
  static const double falls[] = {27, 37, 30, 332};
  static const double ftok[] = {16, 256, 1024, 4096};
  pl_profile down = {4, ftok, falls, 2.0, 10.0};
  unsigned x = 5;
  static int64_t counts[G * E];
  for (int trial = 0; trial < 40; trial++) {
    const pl_profile *pr = trial % 4 == 3 ? &down : &prof;
    pl_cluster c = trial % 2 ? node1 : nodes4;
    pl_placement p;
    pl_routing r;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    cr_assert_eq(pl_routing_init(&r, G, E, 0), PL_OK);
    if (trial % 5 == 0) {
      cr_assert_eq(pl_placement_static(&p), PL_OK); /* one replica each */
    } else {
      for (int e = 0; e < E; e++) {
        x = x * 1103515245u + 12345u;
        int want = 1 + (int)((x >> 16) % 6);
        for (int tries = 0; tries < 100 && p.nrep[e] < want; tries++) {
          x = x * 1103515245u + 12345u;
          int g = (int)((x >> 16) % G);
          if (p.nhost[g] < S && !pl_placement_has(&p, e, g))
            pl_placement_add(&p, e, g);
        }
        cr_assert_gt(p.nrep[e], 0);
      }
    }
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = (int64_t)((x >> 16) % 400) * (1 + (i % E == trial % E) * 20);
    }
    pl_cost cost;
    double fl = -1;
    cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
    cr_assert_eq(pl_cost_layer(&c, &m, pr, &p, &r, &cost), PL_OK);
    cr_assert_eq(pl_cost_layer_floor(&c, &m, pr, &p, counts, &fl), PL_OK);
    cr_assert(fl > 0 && fl <= cost.total_us, "trial %d: floor %.17g, cost %.17g", trial, fl,
              cost.total_us);
    if (trial % 5 == 0 && pr == &prof)
      cr_assert(fl >= 0.6 * cost.total_us, "trial %d: floor %g of %g", trial, fl,
                cost.total_us);
    pl_routing_fini(&r);
    pl_placement_fini(&p);
  }
}

/* Two GPUs of one node, expert e on GPU e, each sending the other some of
 * its tokens: a GPU's out is the other's in, so out alone is the exact
 * all-to-all, and single replicas make the compute floor exact: the floor
 * is the routed cost (less its 1e-9 margin). */
Test(cost, layer_floor_is_exact_when_traffic_is_symmetric_and_replicas_single) {
  pl_cluster c = {2, 2, 1, 100e9, 1e-6, 10e9, 5e-6, 1.0};
  pl_model m = {1000, 4000, 1, 2, 12.0};
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 2, 1), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_routing_init(&r, 2, 2, 0), PL_OK);
  int64_t counts[4] = {700, 300, 1200, 50}; /* GPU 0 sends 300 to GPU 1, GPU 1 1200 to 0 */
  pl_cost cost;
  double fl;
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &r, &cost), PL_OK);
  cr_assert_eq(pl_cost_layer_floor(&c, &m, &prof, &p, counts, &fl), PL_OK);
  cr_assert_float_eq(fl, cost.total_us, 1e-6 * cost.total_us, "floor %.17g, cost %.17g", fl,
                     cost.total_us);
  cr_assert(fl <= cost.total_us);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}
