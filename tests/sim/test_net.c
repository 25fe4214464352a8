/* Network model: closed forms of max-min fair sharing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_cluster.h"
#include "sim/sim_error.h"
#include "sim/sim_evq.h"
#include "sim/sim_net.h"

static sim_cluster mk(int nodes, int gpn, double intra, double ilat, double nic, double xlat,
                      double oversub) {
  sim_cluster c;
  memset(&c, 0, sizeof(c));
  snprintf(c.name, sizeof(c.name), "test");
  snprintf(c.profile, sizeof(c.profile), "h200");
  c.nodes = nodes;
  c.gpus_per_node = gpn;
  c.hbm_gib = 80;
  c.compute_scale = 1;
  c.intra_GBps = intra;
  c.intra_lat_us = ilat;
  c.inter_GBps = nic;
  c.inter_lat_us = xlat;
  c.oversub = oversub;
  return c;
}

/* Runs every flow to completion; finish[tag] in ns. */
static void run_all(sim_net *n, int64_t *finish) {
  int64_t tags[64], dones[64];
  while (sim_net_active(n) > 0) {
    int64_t t = sim_net_next(n);
    cr_assert(t >= 0 && t != INT64_MAX, "next %lld with flows active", (long long)t);
    int got = sim_net_advance(n, t, tags, dones, 64);
    cr_assert_geq(got, 1, "an advance to the next finish time finishes a flow");
    for (int k = 0; k < got; k++)
      finish[tags[k]] = dones[k];
  }
}

Test(net, one_flow_takes_latency_plus_bytes_over_bandwidth) {
  sim_cluster c = mk(1, 2, 100, 3, 100, 3, 1); /* 100 GB/s = 100 bytes/ns, 3 us */
  sim_net n;
  int64_t fin[1];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  cr_assert_geq(sim_net_start(&n, 0, 0, 1, 1e9, 0), 0);
  run_all(&n, fin);
  cr_assert_eq(fin[0], 3000 + 10000000); /* 3 us + 1e9 / 100 ns */
  sim_net_fini(&n);
}

Test(net, n_flows_on_one_link_each_get_bandwidth_over_n) {
  sim_cluster c = mk(1, 8, 100, 0, 100, 0, 1);
  sim_net n;
  int64_t fin[7];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  for (int k = 0; k < 7; k++) /* 7 flows out of GPU 0 */
    cr_assert_geq(sim_net_start(&n, 0, 0, k + 1, 7e8, k), 0);
  sim_net_next(&n);
  for (int k = 0; k < 7; k++)
    cr_assert_float_eq(n.flows[k].rate, 100.0 / 7, 1e-9);
  run_all(&n, fin);
  for (int k = 0; k < 7; k++)
    cr_assert_eq(fin[k], 49000000); /* 7 x 7e8 bytes at 100 bytes/ns */
  sim_net_fini(&n);
}

Test(net, textbook_two_bottleneck_max_min_example) {
  /* link A = GPU 0's NVLink out (10 GB/s), link B = its NIC out (4 GB/s).
   * f1 crosses A and B, f2 only A, f3 only B. Max-min: B saturates first
   * with f1 = f3 = 2; then f2 takes what is left of A: 8. */
  sim_cluster c = mk(2, 1, 10, 0, 4, 0, 1);
  sim_net n;
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  int A = n.intra_out0 + 0, B = n.nic_out0 + 0;
  int p1[2] = {A, B}, p2[1] = {A}, p3[1] = {B};
  int f1 = sim_net_start_path(&n, 0, p1, 2, 0, 8e9, 0);
  int f2 = sim_net_start_path(&n, 0, p2, 1, 0, 8e9, 1);
  int f3 = sim_net_start_path(&n, 0, p3, 1, 0, 8e9, 2);
  sim_net_next(&n);
  cr_assert_float_eq(n.flows[f1].rate, 2.0, 1e-12);
  cr_assert_float_eq(n.flows[f2].rate, 8.0, 1e-12);
  cr_assert_float_eq(n.flows[f3].rate, 2.0, 1e-12);
  int64_t fin[3];
  run_all(&n, fin);
  cr_assert_eq(fin[1], 1000000000); /* 8e9 / 8 */
  cr_assert_eq(fin[0], 4000000000); /* still bound by B after f2 left */
  cr_assert_eq(fin[2], 4000000000);
  sim_net_fini(&n);
}

Test(net, rates_are_recomputed_when_a_flow_ends) {
  /* two flows out of one GPU, one small: after it ends the big one gets the
   * whole link. 100 bytes/ns; small 1e6 bytes, big 3e6. */
  sim_cluster c = mk(1, 3, 100, 0, 100, 0, 1);
  sim_net n;
  int64_t fin[2];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  sim_net_start(&n, 0, 0, 1, 1e6, 0);
  sim_net_start(&n, 0, 0, 2, 3e6, 1);
  run_all(&n, fin);
  cr_assert_eq(fin[0], 20000);         /* 1e6 at 50 */
  cr_assert_eq(fin[1], 20000 + 20000); /* 2e6 left at 100 */
  sim_net_fini(&n);
}

Test(net, uniform_all_to_all_on_full_bisection_equals_its_formula) {
  /* 2 nodes x 4 GPUs, every GPU sends B to every other: intra flows finish
   * at lat_i + (gpn-1) B / intra, inter flows at lat_x + (G-gpn) B / nic. */
  const int N = 2, gpn = 4, G = N * gpn;
  const double B = 1e8, intra = 450, nic = 50;
  sim_cluster c = mk(N, gpn, intra, 2, nic, 5, 1);
  sim_net n;
  int64_t fin[64];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  int tag = 0;
  for (int s = 0; s < G; s++)
    for (int d = 0; d < G; d++)
      if (s != d)
        cr_assert_geq(sim_net_start(&n, 0, s, d, B, tag++), 0);
  run_all(&n, fin);
  double want_i = 2000 + (gpn - 1) * B / intra, want_x = 5000 + (G - gpn) * B / nic;
  tag = 0;
  for (int s = 0; s < G; s++)
    for (int d = 0; d < G; d++) {
      if (s == d)
        continue;
      double want = (s / gpn == d / gpn) ? want_i : want_x;
      cr_assert(fabs((double)fin[tag] - want) <= 1.0, "flow %d->%d: %lld ns, formula %.1f", s, d,
                (long long)fin[tag], want);
      tag++;
    }
  sim_net_fini(&n);
}

Test(net, oversubscribed_switch_divides_the_node_uplink) {
  /* 2 nodes x 2 GPUs, NIC 50, oversubscription 2: node uplink 50 shared by
   * its two GPUs' cross-node flows: 25 each. */
  sim_cluster c = mk(2, 2, 450, 0, 50, 0, 2.0);
  sim_net n;
  int64_t fin[2];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  sim_net_start(&n, 0, 0, 2, 1e9, 0);
  sim_net_start(&n, 0, 1, 3, 1e9, 1);
  run_all(&n, fin);
  cr_assert_eq(fin[0], 40000000);
  cr_assert_eq(fin[1], 40000000);
  sim_net_fini(&n);
}

Test(net, a_switch_tier_that_cannot_bind_is_left_off_without_changing_rates) {
  /* Per-GPU NICs of 50, 2 GPUs a node. Oversubscription 1: the uplink (100)
   * carries exactly its two NICs' flows, so it never binds and inter-node
   * routes cross the NICs alone; 0.5 (uplink 200) likewise; 2 (uplink 50)
   * binds and stays. One NIC per node (50): NIC and uplink carry the same
   * flows, and only the narrower of them is kept. In every case the two
   * flows 0->2 and 1->3 get the rates max-min gives with every link. */
  const struct {
    double oversub;
    int nic_per_node, plen;
    int64_t fin_ns;
  } cases[] = {
      {1.0, 0, 2, 20000000}, /* 1e9 bytes at 50 each */
      {0.5, 0, 2, 20000000},
      {2.0, 0, 4, 40000000}, /* uplink 50 shared: 25 each */
      {1.0, 1, 2, 40000000}, /* node NIC 50 shared: 25 each */
      {2.0, 1, 2, 80000000}, /* uplink 25 shared: 12.5 each */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sim_cluster c = mk(2, 2, 450, 0, 50, 0, cases[i].oversub);
    c.nic_per_node = cases[i].nic_per_node;
    sim_net n;
    int64_t fin[2], lat;
    int path[SIM_NET_MAXPATH], plen;
    cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
    sim_net_path(&n, 0, 2, path, &plen, &lat);
    cr_assert_eq(plen, cases[i].plen, "case %zu: %d links", i, plen);
    sim_net_start(&n, 0, 0, 2, 1e9, 0);
    sim_net_start(&n, 0, 1, 3, 1e9, 1);
    run_all(&n, fin);
    cr_assert_eq(fin[0], cases[i].fin_ns, "case %zu: %lld ns", i, (long long)fin[0]);
    cr_assert_eq(fin[1], cases[i].fin_ns, "case %zu", i);
    sim_net_fini(&n);
  }
}

Test(net, a_flow_of_weight_w_gets_w_shares_of_a_link) {
  sim_cluster c = mk(1, 4, 100, 0, 100, 0, 1);
  sim_net n;
  int64_t fin[3];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  /* out of GPU 0: weight 3 (to 1) and weight 1 (to 2) share its 100 bytes/ns;
   * GPU 3 -> 1 with weight 1 shares GPU 1's in link with the first */
  int p01[2], p02[2], p31[2], len;
  int64_t lat;
  sim_net_path(&n, 0, 1, p01, &len, &lat);
  sim_net_path(&n, 0, 2, p02, &len, &lat);
  sim_net_path(&n, 3, 1, p31, &len, &lat);
  cr_assert_geq(sim_net_start_weighted(&n, 0, p01, 2, 0, 75e6, 3.0, 0), 0);
  cr_assert_geq(sim_net_start_weighted(&n, 0, p02, 2, 0, 25e6, 1.0, 1), 0);
  cr_assert_geq(sim_net_start_weighted(&n, 0, p31, 2, 0, 25e6, 1.0, 2), 0);
  sim_net_next(&n);
  /* both links have weight 4: 25 bytes/ns per share; 0->1 gets 75 */
  cr_assert_float_eq(n.flows[0].rate, 75.0, 1e-9);
  cr_assert_float_eq(n.flows[1].rate, 25.0, 1e-9);
  cr_assert_float_eq(n.flows[2].rate, 25.0, 1e-9);
  run_all(&n, fin);
  for (int k = 0; k < 3; k++)
    cr_assert_eq(fin[k], 1000000, "flow %d: %lld ns", k, (long long)fin[k]);
  cr_assert_eq(sim_net_start_weighted(&n, 0, p01, 2, 0, 1, 0.0, 0), SIM_EINVAL);
  sim_net_fini(&n);
}

/* Weighted flows on one link, started at 0 and 5 us: each flow's whole path
 * (the one-link refill, sim_net.c's fill_link) or with a wider private
 * link behind it (the general progressive filling). Both must give the
 * same rates and the same completions to the nanosecond. */
static void one_link_flows(int one, int64_t *fin, double *rate) {
  sim_cluster c = mk(2, 4, 100, 0, 400, 0, 1);
  sim_net n;
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  const double w[3] = {1, 3, 2}, bytes[3] = {1e6, 3e6, 5e5};
  const int64_t at[3] = {0, 0, 5000};
  for (int k = 0; k < 3; k++) {
    int path[2] = {n.intra_out0, 0};
    cr_assert_eq(sim_net_inter_half(&n, 4 + k, 0, path + 1), 1);
    cr_assert_geq(sim_net_start_weighted(&n, at[k], path, one ? 1 : 2, 0, bytes[k], w[k], k),
                  0);
    if (k == 1) {
      cr_assert_eq(sim_net_next(&n), 40000); /* 1e6 bytes at 25 bytes/ns */
      rate[0] = n.flows[0].rate;
      rate[1] = n.flows[1].rate;
    }
  }
  sim_net_next(&n);
  rate[2] = n.flows[2].rate;
  run_all(&n, fin);
  sim_net_fini(&n);
}

Test(net, a_link_whose_flows_cross_only_it_is_refilled_as_the_general_filling_would) {
  int64_t fin1[3], fin2[3];
  double r1[3], r2[3];
  one_link_flows(1, fin1, r1);
  one_link_flows(0, fin2, r2);
  cr_assert_float_eq(r1[0], 25.0, 1e-12);
  cr_assert_float_eq(r1[1], 75.0, 1e-12);
  cr_assert_float_eq(r1[2], 100.0 * 2 / 6, 1e-12); /* weights 1 + 3 + 2 from 5 us */
  for (int k = 0; k < 3; k++) {
    cr_assert(r1[k] == r2[k], "flow %d: rate %.17g alone, %.17g with a second link", k, r1[k],
              r2[k]);
    cr_assert_eq(fin1[k], fin2[k], "flow %d: done at %lld alone, %lld with a second link", k,
                 (long long)fin1[k], (long long)fin2[k]);
  }
  /* closed forms: flow 2 sends 5e5 bytes at 100 / 3 from 5 us, done at 20
   * us; flow 0 sends at 25, at 100 / 6 from 5 to 20 us, then at 25 again */
  cr_assert_leq(llabs(fin1[2] - 20000), 1);
  double left0 = 1e6 - 25.0 * 5000 - 100.0 / 6 * 15000;
  cr_assert_leq(llabs(fin1[0] - (int64_t)ceil(20000 + left0 / 25.0)), 1);
}

/* Finding: a flow of 2^63 bytes made `net` loop for ever. A finish past
 * 2^53 ns (where t + 1 rounds back to t in a double) is still taken, at its
 * exact nanosecond; one past the clock's 2^62 ns is SIM_ETIME, not a wrapped
 * time. */
Test(net, a_finish_past_2_to_the_53_ns_completes_and_one_past_2_to_the_62_is_an_error) {
  /* the slowest link the ranges allow: 0.001 GB/s = 1e-3 bytes/ns */
  sim_cluster c = mk(1, 2, SIM_BW_MIN_GBPS, 7, 1, 0, 1);
  sim_net n;
  int64_t fin[1] = {-1};
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  cr_assert_geq(sim_net_start(&n, 0, 0, 1, 1125899906842624.0 /* 2^50 */, 0), 0);
  run_all(&n, fin);
  cr_assert_eq(fin[0], 1125899906842624000LL + 7000, "%lld", (long long)fin[0]);
  cr_assert_geq(sim_net_start(&n, fin[0], 0, 1, 1e22, 0), 0);
  cr_assert_eq(sim_net_next(&n), SIM_ETIME);
  sim_net_fini(&n);
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  cr_assert_eq(sim_net_start(&n, 0, 0, 1, INFINITY, 0), SIM_EINVAL);
  cr_assert_eq(sim_net_start(&n, 0, 0, 1, NAN, 0), SIM_EINVAL);
  cr_assert_eq(sim_net_start(&n, SIM_TIME_MAX + 1, 0, 1, 1, 0), SIM_EINVAL);
  sim_net_fini(&n);
}

Test(net, a_link_graph_outside_the_cluster_ranges_is_refused) {
  sim_net n;
  sim_cluster bad[] = {mk(2, 8, 1e-300, 2, 50, 5, 1), mk(2, 8, 450, 2, 50, 5, 1e300),
                       mk(2, 8, 450, 2, 4.9e-324, 5, 1), mk(2, 8, 450, 1e300, 50, 5, 1),
                       mk(2, 8, NAN, 2, 50, 5, 1), mk(70000, 1, 450, 2, 50, 5, 1)};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert_eq(sim_net_init(&n, &bad[i]), SIM_ERANGE, "case %zu", i);
}

/* Every flow on one link, each with its own finish: each finish refills
 * all the others, flows^2 / 2 re-ratings. The work limit stops it with
 * SIM_ELIMIT instead of a run of hours; below the limit nothing changes. */
Test(net, the_work_limit_turns_quadratic_refilling_into_an_error) {
  sim_cluster c = mk(1, 2, 100, 0, 100, 0, 1);
  sim_net n;
  enum { F = 400 };
  int64_t fin[F];
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  for (int k = 0; k < F; k++)
    cr_assert_geq(sim_net_start(&n, 0, 0, 1, 1e6 + 1e3 * k, k), 0);
  run_all(&n, fin);
  uint64_t work = n.work;
  cr_assert_geq(work, (uint64_t)F * (F + 1) / 2, "%llu", (unsigned long long)work);
  sim_net_fini(&n);
  cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
  n.work_limit = work / 2;
  for (int k = 0; k < F; k++)
    cr_assert_geq(sim_net_start(&n, 0, 0, 1, 1e6 + 1e3 * k, k), 0);
  int64_t tags[64], dones[64], t = 0;
  int steps = 0;
  while (steps++ < 2 * F && (t = sim_net_next(&n)) >= 0 && t != INT64_MAX)
    cr_assert_geq(sim_net_advance(&n, t, tags, dones, 64), 1);
  cr_assert_eq(t, SIM_ELIMIT, "%lld", (long long)t);
  sim_net_fini(&n);
}

/* Max-min filling never leaves an active flow at rate 0 (it would never
 * finish): random clusters, paths, weights and sizes, fixed seed; every
 * step to sim_net_next's time finishes at least one flow. */
Test(net, every_active_flow_has_a_positive_rate_and_every_step_finishes_one) {
  srand(20);
  const double caps[] = {0.1, 0.3, 1.0 / 3, 0.7, 3.3, SIM_BW_MIN_GBPS, SIM_BW_MAX_GBPS};
  for (int trial = 0; trial < 2000; trial++) {
    sim_cluster c = mk(1 + rand() % 3, 1 + rand() % 4, caps[rand() % 7], 0, caps[rand() % 7],
                       0, 1 + (rand() % 7) * 0.5);
    c.nic_per_node = rand() % 2;
    int G = c.nodes * c.gpus_per_node;
    if (G < 2)
      continue;
    sim_net n;
    cr_assert_eq(sim_net_init(&n, &c), SIM_OK);
    int nf = 1 + rand() % 40;
    for (int k = 0; k < nf; k++) {
      int s = rand() % G, d = (s + 1 + rand() % (G - 1)) % G, path[SIM_NET_MAXPATH], plen;
      int64_t lat;
      sim_net_path(&n, s, d, path, &plen, &lat);
      cr_assert_geq(sim_net_start_weighted(&n, 0, path, plen, lat, 1e3 + rand() % 1000,
                                           1 + rand() % 3, k),
                    0);
    }
    int64_t tags[64], dones[64];
    while (sim_net_active(&n) > 0) {
      int64_t t = sim_net_next(&n);
      cr_assert(t >= 0 && t != INT64_MAX, "trial %d: next %lld", trial, (long long)t);
      for (int i = 0; i < n.nactive; i++)
        cr_assert_gt(n.flows[n.active[i]].rate, 0, "trial %d", trial);
      cr_assert_geq(sim_net_advance(&n, t, tags, dones, 64), 1, "trial %d", trial);
    }
    sim_net_fini(&n);
  }
}
