/* The capacity policy: DeepSpeed-MoE's per-rank capacity, drops per (rank,
 * expert), padded dispatch and the dropless padded mode (drop=0), checked
 * against hand-computed cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_cost.h"
#include "placement/pl_error.h"
#include "placement/pl_policy.h"

static const double tok[] = {16, 256, 4096};
static const double us[] = {27, 37, 332};

static pl_env env_of(int gpus, int gpn, int experts, int top_k) {
  pl_env env = PL_ENV_INIT;
  env.layers = 1;
  env.experts = experts;
  env.cluster = (pl_cluster){gpus, gpn, (experts + gpus - 1) / gpus + 1, 450e9, 2e-6,
                             50e9, 5e-6, 1.0};
  env.model = (pl_model){1024, 4096, top_k, 2, 12.0};
  env.profile = (pl_profile){3, tok, us, 2.0, 10.0};
  env.seed = 1;
  return env;
}

/*
 * Two ranks (GPUs 0 and 1, one node), four experts, static placement:
 * experts 0, 1 on GPU 0 and 2, 3 on GPU 1. Rank r keeps min(count, cap_r)
 * of each expert's slots, cap_r = max(min_capacity, ceil(T_r / 4 x cf x k)),
 * T_r = ceil(slots_r / k); drop=0: cap_r = the largest count (top-1: at most
 * T_r). Padded: rank 0 sends GPU 1 two buffers of cap_0, rank 1 sends GPU 0
 * two of cap_1, and every expert computes cap_0 + cap_1.
 */
typedef struct hand_case {
  const char *what;
  const char *spec;
  int k;
  int64_t counts[2][4];
  int64_t cap[2];
  int64_t drop[2][4]; /* per (rank, expert) */
} hand_case;

static const hand_case hand[] = {
    /* T = 10 and 12 tokens: ceil(2.5 x 2) = 5, ceil(3 x 2) = 6 */
    {"top-2, cf 1", "capacity", 2, {{10, 6, 3, 1}, {2, 2, 12, 8}}, {5, 6},
     {{5, 1, 0, 0}, {0, 0, 6, 2}}},
    /* the same slots with cf 2: ceil(2.5 x 4) = 10, ceil(3 x 4) = 12, no drops */
    {"top-2, cf 2", "capacity:cf=2", 2, {{10, 6, 3, 1}, {2, 2, 12, 8}}, {10, 12},
     {{0, 0, 0, 0}, {0, 0, 0, 0}}},
    /* top-1, the same slots are 20 and 24 tokens: ceil(5 x 1), ceil(6 x 1) */
    {"top-1, cf 1", "capacity", 1, {{10, 6, 3, 1}, {2, 2, 12, 8}}, {5, 6},
     {{5, 1, 0, 0}, {0, 0, 6, 2}}},
    /* top-2 with an odd slot count: T = ceil(21 / 2) = 11, ceil(2.75 x 2) = 6;
     * 13 slots: T = 7, ceil(1.75 x 2) = 4 */
    {"top-2, T rounded up", "capacity", 2, {{12, 4, 4, 1}, {7, 3, 2, 1}}, {6, 4},
     {{6, 0, 0, 0}, {3, 0, 0, 0}}},
    /* top-3 (topkgating: cf x k): T = 7 and 4, ceil(1.75 x 3) = 6, ceil(1 x 3) = 3 */
    {"top-3, cf 1", "capacity:min_capacity=0", 3, {{9, 6, 5, 1}, {6, 3, 2, 1}}, {6, 3},
     {{3, 0, 0, 0}, {3, 0, 0, 0}}},
    /* 4 slots = 2 tokens: ceil(0.5 x 2) = 1, raised to min_capacity 4 */
    {"min_capacity at small counts", "capacity", 2, {{2, 1, 1, 0}, {0, 1, 3, 0}}, {4, 4},
     {{0, 0, 0, 0}, {0, 0, 0, 0}}},
    {"min_capacity 0", "capacity:min_capacity=0", 2, {{2, 1, 1, 0}, {0, 1, 3, 0}}, {1, 1},
     {{1, 0, 0, 0}, {0, 0, 2, 0}}},
    /* 10 x 1.1 in float32 is 11 (in double 11.000000000000002, ceil 12) */
    {"cf in single precision", "capacity:cf=1.1", 1, {{40, 0, 0, 0}, {10, 10, 10, 10}},
     {11, 11}, {{29, 0, 0, 0}, {0, 0, 0, 0}}},
    /* dropless: the largest count, 12, for every rank; min_capacity unused */
    {"drop=0, top-2", "capacity:drop=0,min_capacity=64", 2, {{10, 6, 3, 1}, {2, 2, 12, 8}},
     {12, 12}, {{0, 0, 0, 0}, {0, 0, 0, 0}}},
    /* dropless top-1: rank 1 has only 4 tokens, its capacity is at most 4 */
    {"drop=0, top-1", "capacity:drop=0", 1, {{10, 0, 0, 0}, {1, 1, 1, 1}}, {10, 4},
     {{0, 0, 0, 0}, {0, 0, 0, 0}}},
};

Test(capacity, hand_cases_give_deepspeeds_capacity_drops_and_padded_buffers) {
  for (size_t i = 0; i < sizeof(hand) / sizeof(hand[0]); i++) {
    const hand_case *h = &hand[i];
    pl_env env = env_of(2, 2, 4, h->k);
    pl_policy *p = NULL;
    char err[256] = "";
    cr_assert_eq(pl_policy_create(&p, h->spec, &env, err, sizeof(err)), PL_OK, "%s: %s",
                 h->what, err);
    const pl_placement *pl = pl_policy_placement(p, 0);
    cr_assert(pl_placement_has(pl, 1, 0) && pl_placement_has(pl, 2, 1), "static layout");
    pl_routing r, one;
    cr_assert_eq(pl_routing_init(&r, 2, 4, 1), PL_OK);
    cr_assert_eq(pl_routing_init(&one, 2, 4, 0), PL_OK);
    int64_t drops = 0, real_wire = 0;
    for (int s = 0; s < 2; s++)
      for (int e = 0; e < 4; e++)
        drops += h->drop[s][e];
    cr_assert_eq(pl_policy_route(p, 0, &h->counts[0][0], &r), PL_OK, "%s", h->what);
    cr_assert_eq(r.cap[0], h->cap[0], "%s: cap_0 %lld", h->what, (long long)r.cap[0]);
    cr_assert_eq(r.cap[1], h->cap[1], "%s: cap_1 %lld", h->what, (long long)r.cap[1]);
    cr_assert(r.padded, "%s", h->what);
    cr_assert_eq(r.dropped, drops, "%s: dropped %lld", h->what, (long long)r.dropped);
    /* per (rank, expert): route one rank's row alone with the same capacities */
    for (int s = 0; s < 2; s++) {
      int64_t row[8] = {0};
      memcpy(row + 4 * s, h->counts[s], sizeof(h->counts[s]));
      cr_assert_eq(pl_route_caps(pl, &env.cluster, row, h->cap, &one), PL_OK);
      for (int e = 0; e < 4; e++) {
        int g = e / 2;
        cr_assert_eq(one.load[g * 4 + e], h->counts[s][e] - h->drop[s][e],
                     "%s: rank %d expert %d keeps %lld", h->what, s, e,
                     (long long)one.load[g * 4 + e]);
      }
    }
    /* padded: two experts' buffers each way, every expert computes both ranks' */
    cr_assert_eq(pl_routing_wire_tokens(&r, pl, 0, 1), 2 * h->cap[0], "%s", h->what);
    cr_assert_eq(pl_routing_wire_tokens(&r, pl, 1, 0), 2 * h->cap[1], "%s", h->what);
    for (int e = 0; e < 4; e++) {
      cr_assert_eq(pl_routing_compute_tokens(&r, pl, e / 2, e), h->cap[0] + h->cap[1],
                   "%s: expert %d", h->what, e);
      cr_assert_eq(pl_routing_compute_tokens(&r, pl, 1 - e / 2, e), 0);
      cr_assert_geq(pl_routing_compute_tokens(&r, pl, e / 2, e), r.load[(e / 2) * 4 + e]);
    }
    real_wire = r.traffic[1] + r.traffic[2];
    cr_assert_geq(2 * (h->cap[0] + h->cap[1]), real_wire, "%s: padding below the real volume",
                  h->what);
    pl_routing_fini(&one);
    pl_routing_fini(&r);
    pl_policy_destroy(p);
  }
}

/* Zipf-like skew: expert e gets weight 1 / (e + 1), rotated per rank a little. */
static void skewed(int G, int E, int64_t per_rank, unsigned seed, int64_t *counts) {
  double w[256], sum = 0;
  for (int e = 0; e < E; e++)
    sum += (w[e] = 1.0 / (e + 1));
  for (int s = 0; s < G; s++) {
    seed = seed * 1103515245u + 12345u;
    int shift = (int)((seed >> 16) % 3);
    int64_t left = per_rank;
    for (int e = 0; e < E; e++) {
      int64_t c = (int64_t)((double)per_rank * w[(e + shift) % E] / sum);
      counts[(size_t)s * E + e] = c;
      left -= c;
    }
    counts[(size_t)s * E + shift] += left;
  }
}

static double layer_us(const char *spec, const pl_env *env, const int64_t *counts,
                       int64_t *dropped, pl_cost *out) {
  pl_policy *p = NULL;
  pl_routing r;
  cr_assert_eq(pl_policy_create(&p, spec, env, NULL, 0), PL_OK, "%s", spec);
  cr_assert_eq(pl_routing_init(&r, env->cluster.gpus, env->experts, 0), PL_OK);
  cr_assert_eq(pl_policy_route(p, 0, counts, &r), PL_OK);
  cr_assert_eq(pl_cost_layer(&env->cluster, &env->model, &env->profile,
                             pl_policy_placement(p, 0), &r, out),
               PL_OK);
  *dropped = r.dropped;
  pl_routing_fini(&r);
  pl_policy_destroy(p);
  return out->total_us;
}

Test(capacity, dropless_padded_mode_drops_nothing_and_is_never_faster_than_static) {
  /* one node of 8 and two nodes of 8, E > G and G > E */
  const int shapes[][3] = {{8, 8, 32}, {16, 8, 32}, {16, 8, 8}};
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    int G = shapes[k][0], gpn = shapes[k][1], E = shapes[k][2];
    pl_env env = env_of(G, gpn, E, 2);
    static int64_t counts[16 * 32];
    for (unsigned seed = 1; seed <= 5; seed++) {
      skewed(G, E, 4096, seed, counts);
      pl_cost st, dl, dr;
      int64_t d_st, d_dl, d_dr;
      double t_static = layer_us("static", &env, counts, &d_st, &st);
      double t_dropless = layer_us("capacity:drop=0", &env, counts, &d_dl, &dl);
      double t_drop = layer_us("capacity", &env, counts, &d_dr, &dr);
      cr_assert_eq(d_dl, 0, "drop=0 dropped %lld", (long long)d_dl);
      cr_assert_gt(d_dr, 0, "cf 1 on a skewed load drops");
      cr_assert_geq(dl.compute_us, st.compute_us - 1e-9);
      cr_assert_geq(dl.alltoall_us, st.alltoall_us - 1e-9);
      cr_assert_geq(t_dropless, t_static - 1e-9, "G %d E %d seed %u: dropless %.3f < static %.3f",
                    G, E, seed, t_dropless, t_static);
      cr_assert_gt(t_dropless, t_drop, "padding to the largest count costs more than to cf");
    }
  }
}

Test(capacity, capacity_is_per_rank_from_its_own_tokens) {
  /* rank 0 has 4x the tokens of rank 1: its capacity is 4x, and a count that
   * fits rank 0's capacity is dropped on rank 1 */
  pl_env env = env_of(2, 2, 4, 1);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "capacity:min_capacity=0", &env, NULL, 0), PL_OK);
  int64_t counts[8] = {40, 40, 40, 40, 10, 10, 10, 10};
  counts[1] = 30, counts[0] = 50; /* rank 0: 160 tokens, cap 40 */
  counts[5] = 5, counts[4] = 15;  /* rank 1: 40 tokens, cap 10 */
  pl_routing r;
  cr_assert_eq(pl_routing_init(&r, 2, 4, 1), PL_OK);
  cr_assert_eq(pl_policy_route(p, 0, counts, &r), PL_OK);
  cr_assert_eq(r.cap[0], 40);
  cr_assert_eq(r.cap[1], 10);
  cr_assert_eq(r.dropped, 10 + 5, "rank 0 drops 10 of expert 0, rank 1 5 of expert 0");
  cr_assert_eq(r.capacity, 40, "the largest per-rank capacity");
  pl_routing_fini(&r);
  pl_policy_destroy(p);
}

/* DeepSpeed's _capacity as its float32 tensors compute it, written out
 * here: ceil(float(T / E) x float(cf x k)), at least min_capacity. */
static int64_t ds_cap(int64_t tokens, int E, double cf, int k, int min_capacity) {
  float c = ceilf((float)((double)tokens / E) * (float)(cf * k));
  return (int64_t)c < min_capacity ? min_capacity : (int64_t)c;
}

/*
 * Random counts, capacity factors other than 1 (below and above), top-1 to
 * top-3, G below, equal to and above E (expert-data-parallel static layout:
 * an expert has G/E replicas), one and several nodes: the routing's drops,
 * capacities, kept tokens and padded buffers against a direct count. Each
 * rank r keeps min(count, cap_r) of each expert's slots; the padded
 * buffers are cap_r per (rank, expert), so the GPUs compute
 * sum_r E x cap_r slots in all and rank r sends cap_r for each expert it
 * does not host itself.
 */
Test(capacity, drops_kept_tokens_and_buffers_equal_a_direct_count_for_any_cf_and_size) {
  static const int shapes[][3] = {/* G, gpus per node, E */
                                  {4, 4, 16}, {8, 4, 8}, {16, 8, 4}, {12, 4, 3}, {32, 8, 8}};
  static const double cfs[] = {0.5, 0.8, 1.25, 1.5, 2.0, 3.3};
  uint64_t seed = 0xca9ac17;
  int64_t total_dropped = 0, cases = 0, dropless = 0;
  for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++) {
    int G = shapes[sh][0], gpn = shapes[sh][1], E = shapes[sh][2];
    for (size_t ci = 0; ci < sizeof(cfs) / sizeof(cfs[0]); ci++)
      for (int k = 1; k <= 3; k++)
        for (int minc = 0; minc <= 8; minc += 8) {
          pl_env env = env_of(G, gpn, E, k);
          char spec[96];
          snprintf(spec, sizeof spec, "capacity:cf=%g,min_capacity=%d", cfs[ci], minc);
          pl_policy *p = NULL;
          cr_assert_eq(pl_policy_create(&p, spec, &env, NULL, 0), PL_OK, "%s", spec);
          const pl_placement *pl = pl_policy_placement(p, 0);
          /* skewed random counts; some ranks much busier than others */
          int64_t c[32 * 16];
          for (int s = 0; s < G; s++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            int busy = 1 + (int)((seed >> 33) % 4);
            for (int e = 0; e < E; e++) {
              seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
              int64_t u = (int64_t)((seed >> 33) % 1000);
              c[s * E + e] = busy * (u * u / 4000 + (e == s % E ? 300 : 0));
            }
          }
          int64_t cap[32], want_drop = 0, kept[16] = {0}, pad_total = 0, pad_wire = 0;
          for (int s = 0; s < G; s++) {
            int64_t slots = 0;
            for (int e = 0; e < E; e++)
              slots += c[s * E + e];
            cap[s] = ds_cap((slots + k - 1) / k, E, cfs[ci], k, minc);
            for (int e = 0; e < E; e++) {
              int64_t keep = c[s * E + e] < cap[s] ? c[s * E + e] : cap[s];
              kept[e] += keep;
              want_drop += c[s * E + e] - keep;
            }
            pad_total += E * cap[s];
            pad_wire += (E - pl->nhost[s]) * cap[s];
          }
          pl_routing r;
          cr_assert_eq(pl_routing_init(&r, G, E, 1), PL_OK);
          cr_assert_eq(pl_policy_route(p, 0, c, &r), PL_OK);
          for (int s = 0; s < G; s++)
            cr_assert_eq(r.cap[s], cap[s], "%s G %d E %d k %d: rank %d capacity %lld, want %lld",
                         spec, G, E, k, s, (long long)r.cap[s], (long long)cap[s]);
          cr_assert_eq(r.dropped, want_drop, "%s G %d E %d k %d: dropped %lld, want %lld", spec,
                       G, E, k, (long long)r.dropped, (long long)want_drop);
          int64_t got_pad = 0, got_wire = 0;
          for (int e = 0; e < E; e++) {
            int64_t sum = 0;
            for (int g = 0; g < G; g++) {
              sum += r.load[g * E + e];
              got_pad += pl_routing_compute_tokens(&r, pl, g, e);
            }
            cr_assert_eq(sum, kept[e], "%s G %d E %d k %d: expert %d computes %lld, want %lld",
                         spec, G, E, k, e, (long long)sum, (long long)kept[e]);
          }
          for (int s = 0; s < G; s++)
            for (int d = 0; d < G; d++)
              if (d != s)
                got_wire += pl_routing_wire_tokens(&r, pl, s, d);
          cr_assert_eq(got_pad, pad_total, "%s G %d E %d k %d: padded compute", spec, G, E, k);
          cr_assert_eq(got_wire, pad_wire, "%s G %d E %d k %d: padded wire", spec, G, E, k);
          total_dropped += want_drop;
          dropless += want_drop == 0;
          cases++;
          pl_routing_fini(&r);
          pl_policy_destroy(p);
        }
  }
  cr_log_info("%lld cases, %lld without drops, %lld slots dropped", (long long)cases,
              (long long)dropless, (long long)total_dropped);
  /* the cases drop, and not always: small cf drops, large cf keeps all */
  cr_assert_gt(cases - dropless, cases / 2);
  cr_assert_gt(dropless, 0);
}
