/* Routing: locality first, exact conservation, capacity drops. */
#include <criterion/criterion.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_cost.h"
#include "placement/pl_route.h"
#include "../../placement/pl_internal.h"

static pl_cluster cluster(int gpus, int gpn, int slots) {
  return (pl_cluster){gpus, gpn, slots, 450e9, 2e-6, 50e9, 5e-6, 1.0};
}

Test(route, a_local_replica_takes_all_of_its_gpus_tokens) {
  pl_cluster c = cluster(4, 2, 2);
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 4, 2), PL_OK);
  pl_placement_add(&p, 0, 0);
  pl_placement_add(&p, 0, 3);
  pl_placement_add(&p, 1, 1);
  cr_assert_eq(pl_routing_init(&r, 4, 2, 1), PL_OK);
  /* counts[src][e] */
  int64_t counts[8] = {10, 0, /* src0 */ 7, 0, /* src1 */ 9, 0, /* src2 */ 5, 4};
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  /* src0 local (10 on g0); src1 same node as g0 -> g0 (7); src2 node 1 has
   * g3 -> g3 (9); src3 local (5); expert 1 from src3 -> g1 (only replica). */
  cr_assert_eq(r.load[0 * 2 + 0], 17);
  cr_assert_eq(r.load[3 * 2 + 0], 14);
  cr_assert_eq(r.load[1 * 2 + 1], 4);
  cr_assert_eq(r.traffic[1 * 4 + 0], 7);
  cr_assert_eq(r.traffic[2 * 4 + 3], 9);
  cr_assert_eq(r.traffic[3 * 4 + 1], 4);
  cr_assert_eq(r.total, 35);
  cr_assert_eq(r.dropped, 0);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(route, remote_tokens_split_evenly_and_are_conserved) {
  pl_cluster c = cluster(8, 8, 1);
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 8, 8, 2), PL_OK);
  for (int e = 0; e < 8; e++)
    pl_placement_add(&p, e, e);
  pl_placement_add(&p, 0, 1);
  pl_placement_add(&p, 0, 2);
  cr_assert_eq(pl_routing_init(&r, 8, 8, 1), PL_OK);
  int64_t counts[64] = {0};
  for (int s = 3; s < 8; s++)
    counts[s * 8 + 0] = 100; /* sources 3..7 send 100 each to expert 0 */
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
  int64_t sum = r.load[0] + r.load[8] + r.load[16];
  cr_assert_eq(sum, 500);
  cr_assert(r.load[0] >= 166 && r.load[0] <= 167);
  cr_assert(r.load[8] >= 166 && r.load[8] <= 167);
  cr_assert_float_eq(pl_routing_balance(&r), 167.0 * 8 / 500.0, 1e-12);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(route, capacity_drops_per_source_and_expert_and_counts_it) {
  pl_cluster c = cluster(2, 2, 1);
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 2, 1), PL_OK);
  cr_assert_eq(pl_placement_static(&p), PL_OK);
  cr_assert_eq(pl_routing_init(&r, 2, 2, 0), PL_OK);
  int64_t counts[4] = {30, 5, 30, 5};
  /* each source keeps 20 of its 30 for expert 0 (not the first 40 of 60) */
  cr_assert_eq(pl_route(&p, &c, counts, 20, &r), PL_OK);
  cr_assert_eq(r.load[0], 40);
  cr_assert_eq(r.load[3], 10);
  cr_assert_eq(r.dropped, 20);
  cr_assert_eq(r.total, 70);
  cr_assert_eq(r.capacity, 20);
  cr_assert(r.padded);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

Test(route, negative_counts_are_refused) {
  pl_cluster c = cluster(2, 2, 1);
  pl_placement p;
  pl_routing r;
  pl_placement_init(&p, 2, 2, 1);
  pl_placement_static(&p);
  pl_routing_init(&r, 2, 2, 0);
  int64_t counts[4] = {1, -1, 0, 0};
  cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_EINVAL);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

/* Gives every expert of the empty placement p 1 to most replicas on
 * random GPUs with a free slot (a linear congruential stream in *x). */
static void random_replicas(pl_placement *p, int most, unsigned *x) {
  for (int e = 0; e < p->experts; e++) {
    *x = *x * 1103515245u + 12345u;
    int want = 1 + (int)((*x >> 16) % (unsigned)most);
    for (int tries = 0; tries < 200 && p->nrep[e] < want; tries++) {
      *x = *x * 1103515245u + 12345u;
      int g = (int)((*x >> 16) % (unsigned)p->gpus);
      if (p->nhost[g] < p->slots && !pl_placement_has(p, e, g))
        pl_placement_add(p, e, g);
    }
    cr_assert_gt(p->nrep[e], 0);
  }
}

/* Without the matrix a dropless route takes a faster path (range sums per
 * expert); it must give exactly what delivering share by share gives, and
 * the per-GPU sums must be the matrix's row and column sums, split by node. */
Test(route, per_gpu_sums_match_the_matrix_and_the_fast_path_is_exact) {
  enum { G = 32, GPN = 8, E = 12, S = 6 };
  pl_cluster c = cluster(G, GPN, S);
  unsigned x = 7;
  for (int trial = 0; trial < 20; trial++) {
    pl_placement p;
    pl_routing full, fast;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    random_replicas(&p, 12, &x); /* 1 to 12 replicas anywhere, within slots */
    static int64_t counts[G * E];
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = trial % 2 ? (x >> 16) % 23 : (x >> 16) % 5000; /* many remainders */
      if (trial % 5 == 4) /* around 2^32: the split's two ways of dividing */
        counts[i] = ((int64_t)1 << 32) - 40 + (int64_t)((x >> 16) % 80);
    }
    cr_assert_eq(pl_routing_init(&full, G, E, 1), PL_OK);
    cr_assert_eq(pl_routing_init(&fast, G, E, 0), PL_OK);
    /* capacities too: the fast path routes the experts that stay under it
     * and leaves the others to the general loop; every replica must get
     * what one loop over all experts gives it */
    int64_t caps[] = {0, 1, 40, 900, 4000, 30000};
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
      int64_t cap = trial % 2 ? caps[k] / 50 : caps[k];
      cr_assert_eq(pl_route(&p, &c, counts, cap, &full), PL_OK);
      cr_assert_eq(pl_route(&p, &c, counts, cap, &fast), PL_OK);
      cr_assert_eq(fast.total, full.total);
      cr_assert_eq(fast.dropped, full.dropped, "trial %d cap %lld", trial, (long long)cap);
      for (int i = 0; i < G * E; i++)
        cr_assert_eq(fast.load[i], full.load[i], "trial %d cap %lld load[%d]", trial,
                     (long long)cap, i);
      for (int i = 0; i < 4 * G; i++)
        cr_assert_eq(fast.hose[i], full.hose[i], "trial %d cap %lld hose[%d]", trial,
                     (long long)cap, i);
      for (int g = 0; g < G; g++)
        cr_assert_eq(fast.gpu_load[g], full.gpu_load[g]);
    }
    cr_assert_eq(pl_route(&p, &c, counts, -1, &full), PL_OK);
    cr_assert_eq(pl_route(&p, &c, counts, -1, &fast), PL_OK);
    cr_assert_eq(fast.total, full.total);
    for (int i = 0; i < G * E; i++)
      cr_assert_eq(fast.load[i], full.load[i], "trial %d load[%d]", trial, i);
    for (int i = 0; i < 4 * G; i++)
      cr_assert_eq(fast.hose[i], full.hose[i], "trial %d hose[%d]", trial, i);
    int64_t h[4 * G] = {0};
    for (int s = 0; s < G; s++)
      for (int d = 0; d < G; d++) {
        int inter = s / GPN != d / GPN;
        h[2 * G * inter + s] += full.traffic[s * G + d];
        h[2 * G * inter + G + d] += full.traffic[s * G + d];
      }
    for (int i = 0; i < 4 * G; i++)
      cr_assert_eq(full.hose[i], h[i], "trial %d hose[%d] vs matrix", trial, i);
    for (int g = 0; g < G; g++)
      cr_assert_eq(fast.gpu_load[g], full.gpu_load[g]);
    pl_routing_fini(&full);
    pl_routing_fini(&fast);
    pl_placement_fini(&p);
  }
}

/* A routing given as its G x G traffic matrix alone (hose NULL: a
 * pl_routing a caller fills by hand, e.g. measured traffic, as pl_route.h
 * allows) has the per-GPU sums of the routing it came from, row and column
 * sums of the matrix split by node, and so the same all-to-all time: on
 * random placements over 4 nodes, the matrix-only view of each routing
 * against the routing's own hose sums. */
Test(route, a_traffic_matrix_alone_gives_the_routings_per_gpu_sums_and_cost) {
  enum { G = 16, GPN = 4, E = 12, S = 5 };
  pl_cluster c = cluster(G, GPN, S);
  pl_model m = {2048, 8192, 2, 2, 12.0};
  static const double tok[] = {16, 4096}, us[] = {27, 332};
  pl_profile prof = {2, tok, us, 2.0, 10.0};
  unsigned x = 23;
  int64_t sent = 0;
  for (int trial = 0; trial < 10; trial++) {
    pl_placement p;
    pl_routing r;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    random_replicas(&p, 6, &x);
    static int64_t counts[G * E];
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = (x >> 16) % 700;
    }
    cr_assert_eq(pl_routing_init(&r, G, E, 1), PL_OK);
    cr_assert_eq(pl_route(&p, &c, counts, -1, &r), PL_OK);
    pl_routing bare = r; /* the same buffers, without the sums */
    bare.hose = NULL;
    int64_t h[4 * G];
    cr_assert_eq(pl_routing_wire_sums(&bare, &p, GPN, h), PL_OK);
    for (int i = 0; i < 4 * G; i++) {
      cr_assert_eq(h[i], r.hose[i], "trial %d sums[%d]: matrix %lld, routing %lld", trial, i,
                   (long long)h[i], (long long)r.hose[i]);
      sent += h[i];
    }
    pl_cost a, b;
    cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &r, &a), PL_OK);
    cr_assert_eq(pl_cost_layer(&c, &m, &prof, &p, &bare, &b), PL_OK);
    cr_assert(a.alltoall_us == b.alltoall_us && a.total_us == b.total_us,
              "trial %d: all-to-all %.9g us from the matrix, %.9g from the sums", trial,
              b.alltoall_us, a.alltoall_us);
    pl_routing_fini(&r);
    pl_placement_fini(&p);
  }
  cr_assert_gt(sent, 0, "no token crossed a link: nothing was compared");
}

/* Padded dispatch with several replicas: a source's buffer for an expert is
 * split like its tokens, locality first. 4 GPUs in 2 nodes; expert 0 on
 * GPUs 0 and 2, expert 1 on GPUs 2 and 3 (node 1 only). */
Test(route, padded_buffers_are_split_over_replicas_like_tokens) {
  pl_cluster c = cluster(4, 2, 2);
  pl_placement p;
  pl_routing r;
  cr_assert_eq(pl_placement_init(&p, 2, 4, 2), PL_OK);
  pl_placement_add(&p, 0, 0);
  pl_placement_add(&p, 0, 2);
  pl_placement_add(&p, 1, 2);
  pl_placement_add(&p, 1, 3);
  cr_assert_eq(pl_routing_init(&r, 4, 2, 1), PL_OK);
  int64_t counts[8] = {0}; /* no real tokens at all: the padding is still sent */
  int64_t cap[4] = {5, 7, 4, 6};
  cr_assert_eq(pl_route_caps(&p, &c, counts, cap, &r), PL_OK);
  cr_assert(r.padded);
  cr_assert_eq(r.capacity, 7);
  cr_assert_eq(r.dropped, 0);
  /* expert 0: GPU 0 keeps its own, GPU 1 sends to GPU 0 (its node), GPU 2
   * keeps its own, GPU 3 sends to GPU 2. Expert 1: GPUs 0 and 1 have no
   * replica on their node, so GPUs 2 and 3 share: 5 -> 3 to index 0 (GPU 2),
   * 2 to GPU 3; 7 from GPU 1 -> 4 to index 1 (GPU 3), 3 to GPU 2. */
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 1, 0), 7);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 0, 2), 3);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 0, 3), 2);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 1, 2), 3);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 1, 3), 4);
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 3, 2), 6, "expert 0's buffer; expert 1 local");
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 2, 3), 0, "both of GPU 2's experts are local");
  cr_assert_eq(pl_routing_wire_tokens(&r, &p, 0, 1), 0, "GPU 1 hosts nothing");
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 0, 0), 5 + 7);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 2, 0), 4 + 6);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 2, 1), 3 + 3 + 4);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 3, 1), 2 + 4 + 6);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 1, 0), 0);
  cr_assert_eq(pl_routing_compute_tokens(&r, &p, 1, 1), 0);
  cr_assert_eq(r.gpu_load[0] + r.gpu_load[1] + r.gpu_load[2] + r.gpu_load[3], 0);
  /* a negative capacity is refused and leaves r as it was */
  int64_t bad[4] = {5, -1, 4, 6};
  cr_assert_eq(pl_route_caps(&p, &c, counts, bad, &r), PL_EINVAL);
  cr_assert_eq(r.cap[1], 7);
  pl_routing_fini(&r);
  pl_placement_fini(&p);
}

/* For random placements and capacities: the padded per-GPU sums are the
 * per-pair buffers of pl_routing_wire_tokens summed by node, each expert
 * computes every source's buffer exactly once (sum over its replicas =
 * sum of cap), kept tokens never exceed a source's capacity, and the
 * padded volume is at least the real one. */
Test(route, padded_sums_match_the_pairs_and_bound_the_real_tokens) {
  enum { G = 24, GPN = 4, E = 10, S = 5 };
  pl_cluster c = cluster(G, GPN, S);
  unsigned x = 11;
  for (int trial = 0; trial < 20; trial++) {
    pl_placement p;
    pl_routing r;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    random_replicas(&p, 9, &x);
    static int64_t counts[G * E];
    int64_t cap[G];
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = (x >> 16) % 300;
    }
    for (int g = 0; g < G; g++) {
      x = x * 1103515245u + 12345u;
      cap[g] = (x >> 16) % 200;
    }
    cr_assert_eq(pl_routing_init(&r, G, E, trial % 2), PL_OK);
    cr_assert_eq(pl_route_caps(&p, &c, counts, cap, &r), PL_OK);
    int64_t h[4 * G], want[4 * G], drop = 0, sumcap = 0;
    memset(want, 0, sizeof(want));
    for (int s = 0; s < G; s++) {
      sumcap += cap[s];
      for (int e = 0; e < E; e++)
        drop += counts[s * E + e] > cap[s] ? counts[s * E + e] - cap[s] : 0;
      for (int d = 0; d < G; d++) {
        int64_t t = pl_routing_wire_tokens(&r, &p, s, d);
        int inter = s / GPN != d / GPN;
        want[2 * G * inter + s] += t;
        want[2 * G * inter + G + d] += t;
      }
    }
    cr_assert_eq(r.dropped, drop, "trial %d", trial);
    cr_assert_eq(pl_routing_wire_sums(&r, &p, GPN, h), PL_OK);
    for (int i = 0; i < 4 * G; i++) {
      cr_assert_eq(h[i], want[i], "trial %d sums[%d]", trial, i);
      cr_assert_geq(h[i], r.hose[i], "trial %d: padding below the real tokens", trial);
    }
    for (int e = 0; e < E; e++) {
      int64_t sum = 0;
      for (int g = 0; g < G; g++) {
        int64_t t = pl_routing_compute_tokens(&r, &p, g, e);
        cr_assert(t == 0 || pl_placement_has(&p, e, g));
        cr_assert_geq(t, r.load[g * E + e]);
        sum += t;
      }
      cr_assert_eq(sum, sumcap, "trial %d expert %d", trial, e);
    }
    pl_routing_fini(&r);
    pl_placement_fini(&p);
  }
}

/* pl_route_change re-routes only the experts whose replicas differ: from
 * the routing of one random placement, a few of its experts given other
 * replicas (or, past half of them, all: pl_route's fallback), the result
 * must be pl_route's for the new placement, every integer the same. */
Test(route, rerouting_the_changed_experts_gives_the_full_routing) {
  enum { G = 32, GPN = 8, E = 12, S = 6 };
  pl_cluster c = cluster(G, GPN, S);
  unsigned x = 11;
  static int64_t counts[G * E];
  for (int trial = 0; trial < 24; trial++) {
    pl_placement a, b;
    pl_routing inc, full;
    cr_assert_eq(pl_placement_init(&a, E, G, S), PL_OK);
    cr_assert_eq(pl_placement_init(&b, E, G, S), PL_OK);
    random_replicas(&a, 10, &x);
    cr_assert_eq(pl_placement_copy(&b, &a), PL_OK);
    int change = trial % 8; /* experts given other replicas: 0 to 7 of 12 */
    for (int k = 0; k < change; k++) {
      int e = (trial + 5 * k) % E;
      x = x * 1103515245u + 12345u;
      int g = (int)((x >> 16) % G);
      if (pl_placement_has(&b, e, g)) {
        if (b.nrep[e] > 1)
          pl_placement_remove(&b, e, g);
      } else if (b.nhost[g] < S) {
        pl_placement_add(&b, e, g);
      }
    }
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = trial % 3 == 2 ? ((int64_t)1 << 32) - 9 + (x >> 16) % 20 : (x >> 16) % 3000;
    }
    cr_assert_eq(pl_routing_init(&inc, G, E, 0), PL_OK);
    cr_assert_eq(pl_routing_init(&full, G, E, 0), PL_OK);
    cr_assert_eq(pl_route(&a, &c, counts, -1, &inc), PL_OK);
    cr_assert_eq(pl_route_change(&a, &b, &c, counts, &inc), PL_OK);
    cr_assert_eq(pl_route(&b, &c, counts, -1, &full), PL_OK);
    cr_assert_eq(inc.total, full.total);
    for (int i = 0; i < G * E; i++)
      cr_assert_eq(inc.load[i], full.load[i], "trial %d load[%d]", trial, i);
    for (int i = 0; i < 4 * G; i++)
      cr_assert_eq(inc.hose[i], full.hose[i], "trial %d hose[%d]", trial, i);
    for (int g = 0; g < G; g++)
      cr_assert_eq(inc.gpu_load[g], full.gpu_load[g], "trial %d gpu %d", trial, g);
    pl_routing_fini(&inc);
    pl_routing_fini(&full);
    pl_placement_fini(&a);
    pl_placement_fini(&b);
  }
}

/* One routing reused for a sequence of routes on random placements (of two
 * slot counts), counts, capacities (dropless, capped, padded), changes
 * (pl_route_change) and a traffic matrix gives, after each, what a fresh
 * routing gives: a route clears only the entries the last placement hosted
 * (issue 19), so every entry another placement left must be zero again. */
Test(route, a_reused_routing_equals_a_fresh_one_after_every_route) {
  enum { G = 32, GPN = 8, E = 12, S = 6, N = 40 };
  pl_cluster c = cluster(G, GPN, S);
  unsigned x = 29;
  static int64_t counts[G * E];
  pl_routing reused, reused_tm;
  cr_assert_eq(pl_routing_init(&reused, G, E, 0), PL_OK);
  cr_assert_eq(pl_routing_init(&reused_tm, G, E, 1), PL_OK);
  pl_placement prev;
  cr_assert_eq(pl_placement_init(&prev, E, G, S), PL_OK);
  random_replicas(&prev, 8, &x);
  cr_assert_eq(pl_route(&prev, &c, counts, -1, &reused), PL_OK);
  for (int n = 0; n < N; n++) {
    int slots = n % 3 ? S : 4; /* another placement shape now and then */
    pl_placement p;
    cr_assert_eq(pl_placement_init(&p, E, G, slots), PL_OK);
    random_replicas(&p, n % 2 ? 3 : 9, &x);
    for (int i = 0; i < G * E; i++) {
      x = x * 1103515245u + 12345u;
      counts[i] = (x >> 16) % 2000;
    }
    int kind = n % 4; /* 0 dropless, 1 capped, 2 padded (capacity), 3 changed from prev */
    pl_routing fresh, fresh_tm;
    cr_assert_eq(pl_routing_init(&fresh, G, E, 0), PL_OK);
    cr_assert_eq(pl_routing_init(&fresh_tm, G, E, 1), PL_OK);
    int64_t cap = kind == 1 || kind == 2 ? 600 : -1;
    if (kind == 3 && prev.slots == slots) {
      /* reused holds prev's routing of these counts: change it to p's */
      cr_assert_eq(pl_route(&prev, &c, counts, -1, &reused), PL_OK);
      cr_assert_eq(pl_route_change(&prev, &p, &c, counts, &reused), PL_OK);
    } else {
      cr_assert_eq(pl_route(&p, &c, counts, cap, &reused), PL_OK);
    }
    cr_assert_eq(pl_route(&p, &c, counts, kind == 3 ? -1 : cap, &fresh), PL_OK);
    cr_assert_eq(pl_route(&p, &c, counts, kind == 3 ? -1 : cap, &reused_tm), PL_OK);
    cr_assert_eq(pl_route(&p, &c, counts, kind == 3 ? -1 : cap, &fresh_tm), PL_OK);
    cr_assert_eq(memcmp(reused.load, fresh.load, sizeof(int64_t) * G * E), 0, "route %d", n);
    cr_assert_eq(memcmp(reused.gpu_load, fresh.gpu_load, sizeof(int64_t) * G), 0);
    cr_assert_eq(memcmp(reused.hose, fresh.hose, sizeof(int64_t) * 4 * G), 0);
    cr_assert_eq(memcmp(reused_tm.load, fresh_tm.load, sizeof(int64_t) * G * E), 0, "tm %d", n);
    cr_assert_eq(memcmp(reused_tm.traffic, fresh_tm.traffic, sizeof(int64_t) * G * G), 0);
    cr_assert_eq(reused.total, fresh.total);
    cr_assert_eq(reused.dropped, fresh.dropped);
    pl_routing_fini(&fresh);
    pl_routing_fini(&fresh_tm);
    pl_placement_fini(&prev);
    prev = p;
  }
  pl_placement_fini(&prev);
  pl_routing_fini(&reused);
  pl_routing_fini(&reused_tm);
}
