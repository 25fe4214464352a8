/*
 * EPLB's replicate-and-pack (placement/pl_eplb.c) against an independent
 * reference written here from the algorithm of deepseek-ai/EPLB eplb.py
 * (replicate_experts, balanced_packing, rebalance_experts_hierarchical):
 *
 *   replicate  every expert one copy, then each further copy to the expert
 *              with the highest load per copy (the first such expert);
 *   pack       copies by load per copy, heaviest first, each into the pack
 *              with the lowest total among those with fewer than n/m items
 *              (the first such pack); the pack totals accumulate;
 *   hierarchy  expert groups (contiguous) packed onto nodes the same way by
 *              group load, then each node replicates and packs its own
 *              experts onto its GPUs with replicas / nodes copies.
 *
 * Where ours differs on purpose, and what is compared there instead:
 *   - it never puts two copies of one expert on one GPU (upstream can: the
 *     pack with the lowest total may already hold the expert), and so never
 *     gives an expert more copies than there are GPUs to hold them. Where
 *     upstream's layout has no duplicate, ours must be the same, copy for
 *     copy (and its replica counts wherever they fit the GPUs). Always,
 *     ours must be the layout of upstream's rule with that one change (a
 *     second reference: replicate with at most one copy per GPU, pack onto
 *     the lightest GPU with room that lacks the expert, pl_eplb.c's repair
 *     when there is none), and every GPU's total must stay within its
 *     heaviest copy of the mean, the greedy's bound. Where upstream
 *     doubles an expert, the ratio of the two largest GPU totals is logged
 *     (measured: ours 0.97 of upstream's on average, at most 1.16);
 *   - ties: ours orders equal loads per copy by expert id (so an expert's
 *     copies are adjacent), upstream by physical index. The random loads
 *     here are continuous, so only the copies of one expert tie, and their
 *     order does not matter.
 * Random inputs come from a fixed seed; the hand cases are worked out in
 * their comments.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../placement/pl_internal.h"
#include "pl_check.h"

enum { MAXE = 128, MAXG = 32, MAXR = MAXG * 16 };

/* ---- the reference ------------------------------------------------------ */

/* replicate_experts: cnt[n] copies of n experts for R >= n copies in all,
 * at most cap copies each (upstream: no cap; ours: the GPUs that can hold
 * them; copies left over when every expert is at the cap stay unmade). */
static void ref_replicate(const double *load, int n, int R, int cap, int *cnt) {
  for (int i = 0; i < n; i++)
    cnt[i] = 1;
  for (int k = n; k < R; k++) {
    int best = -1;
    for (int i = 0; i < n; i++)
      if (cnt[i] < cap && (best < 0 || load[i] / cnt[i] > load[best] / cnt[best]))
        best = i;
    if (best < 0)
      return;
    cnt[best]++;
  }
}

/* Repair of the legal packing when every pack with room holds `e`
 * (pl_eplb.c's documented rule, in its order): the first pack q without e
 * (packs ascending) gives the first of its experts x (ascending ids) that
 * the first pack f with room and without x can take; x moves to f and the
 * copy of e takes its place in q. Returns 0 when no such pair exists.
 * Replicated loads seem never to need it: an expert's copies are packed as
 * a run, and no random case here (nor 200,000 small ones tried while
 * writing this test) left fewer GPUs with room than copies in a run. */
static int ref_repair(int e, int m, int per, unsigned char has[MAXG][MAXE], int *items,
                      double *tot, const double *unit) {
  for (int q = 0; q < m; q++) {
    if (has[q][e])
      continue;
    for (int x = 0; x < MAXE; x++) {
      if (!has[q][x])
        continue;
      for (int f = 0; f < m; f++) {
        if (items[f] >= per || has[f][x])
          continue;
        has[q][x] = 0, has[f][x] = 1, has[q][e] = 1;
        items[f]++;
        tot[q] += unit[e] - unit[x];
        tot[f] += unit[x];
        return 1;
      }
    }
  }
  return 0;
}

/* balanced_packing: items w[n] into m packs of n / m each; pack[i] out.
 * legal (ours): owner[i] is item i's expert, a pack that holds the expert
 * already is passed over (ref_repair when none is left), and the result is
 * has[m][E] (pack[] is not filled). */
static void ref_pack(const double *w, int n, int m, int *pack, int legal, const int *owner,
                     unsigned char has[MAXG][MAXE]) {
  int order[MAXR], items[MAXG] = {0};
  double tot[MAXG] = {0}, unit[MAXE] = {0};
  for (int i = 0; i < n; i++)
    order[i] = i;
  for (int i = 1; i < n; i++) { /* insertion sort, descending, stable */
    int x = order[i], j = i - 1;
    while (j >= 0 && w[order[j]] < w[x]) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = x;
  }
  for (int k = 0; k < n; k++) {
    int i = order[k], e = legal ? owner[i] : 0, best = -1;
    for (int q = 0; q < m; q++)
      if (items[q] < n / m && !(legal && has[q][e]) && (best < 0 || tot[q] < tot[best]))
        best = q;
    if (legal) {
      unit[e] = w[i];
      if (best < 0) { /* the repair fills a slot and moves the weights itself */
        cr_assert(ref_repair(e, m, n / m, has, items, tot, unit), "no legal packing");
        continue;
      }
      has[best][e] = 1;
    } else {
      pack[i] = best;
    }
    items[best]++;
    tot[best] += w[i];
  }
}

/* A layout: for each GPU, the experts of its copies (upstream's a multiset:
 * an expert may repeat; ours ascending), and cnt[e] copies of expert e. */
typedef struct ref_layout {
  int G, S;
  int expert[MAXG][16];
  int cnt[MAXE];
} ref_layout;

/* Replicates experts ex[0..n) (loads load[ex[i]]) into R copies and packs
 * them onto GPUs g0 .. g0 + m - 1, as upstream (legal 0) or under ours'
 * rule (legal 1: at most m copies of an expert, never two on one GPU). */
static void ref_node(const double *load, const int *ex, int n, int R, int g0, int m, int legal,
                     ref_layout *out) {
  double l[MAXE] = {0}, w[MAXR] = {0};
  int cnt[MAXE], owner[MAXR] = {0}, pack[MAXR], fill[MAXG] = {0};
  static unsigned char has[MAXG][MAXE];
  memset(has, 0, sizeof has);
  for (int i = 0; i < n; i++)
    l[i] = load[ex[i]];
  ref_replicate(l, n, R, legal ? m : R, cnt);
  /* physical copies: the n originals, then the redundant ones (their order
   * only breaks ties, which the continuous loads here do not have) */
  int k = 0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < cnt[i]; c++, k++) {
      owner[k] = ex[i];
      w[k] = l[i] / cnt[i];
    }
  cr_assert_eq(k, R, "the tests keep to shapes where every copy is made");
  ref_pack(w, R, m, pack, legal, owner, has);
  for (int i = 0; i < n; i++)
    out->cnt[ex[i]] = cnt[i];
  if (!legal) {
    for (int j = 0; j < R; j++)
      out->expert[g0 + pack[j]][fill[pack[j]]++] = owner[j];
    return;
  }
  for (int q = 0; q < m; q++)
    for (int e = 0; e < MAXE; e++)
      if (has[q][e])
        out->expert[g0 + q][fill[q]++] = e;
}

/* rebalance_experts: global (groups = 0) or hierarchical; legal as
 * ref_node. */
static void ref_eplb(const double *load, int E, int G, int S, int gpn, int groups, int legal,
                     ref_layout *out) {
  memset(out, 0, sizeof(*out));
  out->G = G;
  out->S = S;
  int ex[MAXE];
  if (groups <= 0) {
    for (int e = 0; e < E; e++)
      ex[e] = e;
    ref_node(load, ex, E, G * S, 0, G, legal, out);
    return;
  }
  int nodes = G / gpn, size = E / groups, gnode[MAXE];
  double gw[MAXE];
  for (int k = 0; k < groups; k++) {
    gw[k] = 0;
    for (int e = k * size; e < (k + 1) * size; e++)
      gw[k] += load[e];
  }
  ref_pack(gw, groups, nodes, gnode, 0, NULL, NULL);
  for (int n = 0; n < nodes; n++) {
    int ne = 0;
    for (int k = 0; k < groups; k++)
      if (gnode[k] == n)
        for (int e = k * size; e < (k + 1) * size; e++)
          ex[ne++] = e;
    ref_node(load, ex, ne, G * S / nodes, n * gpn, gpn, legal, out);
  }
}

static int ref_has_duplicate(const ref_layout *r) {
  for (int g = 0; g < r->G; g++)
    for (int i = 0; i < r->S; i++)
      for (int j = i + 1; j < r->S; j++)
        if (r->expert[g][i] == r->expert[g][j])
          return 1;
  return 0;
}

/* ---- ours --------------------------------------------------------------- */

static pl_cluster cluster_of(int G, int gpn, int slots) {
  return (pl_cluster){G, gpn, slots, 450e9, 2e-6, 50e9, 5e-6, 1.0};
}

/* GPU totals of p when each expert's load is split evenly over its copies. */
static void gpu_totals(const pl_placement *p, const double *load, double *tot) {
  for (int g = 0; g < p->gpus; g++) {
    tot[g] = 0;
    for (int j = 0; j < p->nhost[g]; j++) {
      int e = p->host[(size_t)g * p->slots + j];
      tot[g] += load[e] / p->nrep[e];
    }
  }
}

/* Largest GPU total of a reference layout (upstream: each copy of e
 * weighs load[e] / cnt[e], duplicates included). */
static double ref_max_total(const ref_layout *r, const double *load) {
  double mx = 0;
  for (int g = 0; g < r->G; g++) {
    double t = 0;
    for (int j = 0; j < r->S; j++)
      t += load[r->expert[g][j]] / r->cnt[r->expert[g][j]];
    mx = fmax(mx, t);
  }
  return mx;
}

/* Compares ours with the references on one input. Returns 1 when upstream's
 * layout has a duplicate; *ratio: our largest GPU total over upstream's. */
static int compare_one(const double *load, int E, int G, int S, int gpn, int groups,
                       const char *what, double *ratio) {
  pl_cluster c = cluster_of(G, gpn, S);
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
  cr_assert_eq(pl_eplb_layout(&p, &c, load, S, groups), PL_OK, "%s", what);
  cr_assert_eq(pl_placement_check(&p), PL_OK, "%s", what);
  for (int g = 0; g < G; g++)
    cr_assert_eq(p.nhost[g], S, "%s: GPU %d holds %d copies, not %d", what, g, p.nhost[g], S);
  static ref_layout up, legal;
  ref_eplb(load, E, G, S, gpn, groups, 0, &up);
  ref_eplb(load, E, G, S, gpn, groups, 1, &legal);
  /* upstream's replica counts wherever they are legal */
  int cap = groups > 0 ? gpn : G, legal_counts = 1;
  for (int e = 0; e < E; e++)
    legal_counts &= up.cnt[e] <= cap;
  if (legal_counts)
    for (int e = 0; e < E; e++)
      cr_assert_eq(p.nrep[e], up.cnt[e], "%s: expert %d has %d copies, upstream %d", what, e,
                   p.nrep[e], up.cnt[e]);
  /* upstream's layout, copy for copy, wherever it is legal */
  int dup = ref_has_duplicate(&up);
  if (!dup)
    for (int g = 0; g < G; g++)
      for (int j = 0; j < S; j++)
        cr_assert(pl_placement_has(&p, up.expert[g][j], g),
                  "%s: upstream puts expert %d on GPU %d, ours does not", what, up.expert[g][j],
                  g);
  /* always: upstream's rule with the never-two-copies rule and the repair */
  for (int e = 0; e < E; e++)
    cr_assert_eq(p.nrep[e], legal.cnt[e], "%s: expert %d has %d copies, the rule %d", what, e,
                 p.nrep[e], legal.cnt[e]);
  for (int g = 0; g < G; g++)
    for (int j = 0; j < S; j++)
      cr_assert_eq(p.host[(size_t)g * S + j], legal.expert[g][j],
                   "%s%s: GPU %d slot %d holds expert %d, the rule says %d", what,
                   dup ? " (upstream doubles one)" : "", g, j, p.host[(size_t)g * S + j],
                   legal.expert[g][j]);
  /* and the greedy's bound: a GPU's total exceeds the mean of its node (the
   * whole cluster when global) by at most the heaviest copy it holds */
  double tot[MAXG], mx = 0;
  gpu_totals(&p, load, tot);
  int span = groups > 0 ? gpn : G;
  for (int n0 = 0; n0 < G; n0 += span) {
    double sum = 0;
    for (int g = n0; g < n0 + span; g++)
      sum += tot[g];
    for (int g = n0; g < n0 + span; g++) {
      double heavy = 0;
      for (int j = 0; j < S; j++) {
        int e = p.host[(size_t)g * S + j];
        heavy = fmax(heavy, load[e] / p.nrep[e]);
      }
      cr_assert_leq(tot[g], sum / span + heavy + 1e-9 * sum,
                    "%s: GPU %d total %.6g, node mean %.6g, heaviest copy %.6g", what, g, tot[g],
                    sum / span, heavy);
      mx = fmax(mx, tot[g]);
    }
  }
  *ratio = mx / ref_max_total(&up, load);
  pl_placement_fini(&p);
  return dup;
}

/* ---- hand cases --------------------------------------------------------- */

/*
 * 4 GPUs x 2 slots, 6 experts, loads 12, 8, 5, 4.5, 3, 2 (34.5 in all).
 * Replicate 8 copies: expert 0 (12 per copy) gets a second (6 each), then
 * expert 1 (8) a second (4 each). Copies by load: 6 (e0), 6 (e0), 5 (e2),
 * 4.5 (e3), 4 (e1), 4 (e1), 3 (e4), 2 (e5). Pack: e0 on GPUs 0 and 1 (6,
 * 6), e2 on GPU 2 (5), e3 on GPU 3 (4.5); e1 on the lightest, GPU 3
 * (8.5, full), then on GPU 2 (9, full); e4 on GPU 0 (6 = 6: the first), 9;
 * e5 on GPU 1, 8. Totals 9, 8, 9, 8.5: max / mean = 9 / 8.625.
 */
Test(eplb, hand_case_replicates_the_hottest_and_packs_onto_the_lightest_gpu) {
  const double load[6] = {12, 8, 5, 4.5, 3, 2};
  const int want[4][2] = {{0, 4}, {0, 5}, {1, 2}, {1, 3}};
  pl_cluster c = cluster_of(4, 4, 2);
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 6, 4, 2), PL_OK);
  cr_assert_eq(pl_eplb_layout(&p, &c, load, 2, 0), PL_OK);
  for (int g = 0; g < 4; g++) {
    cr_assert_eq(p.nhost[g], 2);
    for (int j = 0; j < 2; j++)
      cr_assert_eq(p.host[g * 2 + j], want[g][j], "GPU %d slot %d: expert %d", g, j,
                   p.host[g * 2 + j]);
  }
  double tot[4], mx = 0, sum = 0;
  gpu_totals(&p, load, tot);
  const double want_tot[4] = {9, 8, 9, 8.5};
  for (int g = 0; g < 4; g++) {
    cr_assert_float_eq(tot[g], want_tot[g], 1e-12, "GPU %d total %g", g, tot[g]);
    mx = fmax(mx, tot[g]);
    sum += tot[g];
  }
  cr_assert_float_eq(mx / (sum / 4), 9 / 8.625, 1e-12);
  /* the reference agrees (no duplicate here) */
  double ratio;
  cr_assert_eq(compare_one(load, 6, 4, 2, 4, 0, "hand case", &ratio), 0);
  cr_assert_float_eq(ratio, 1.0, 1e-12);
  pl_placement_fini(&p);
}

/*
 * Where upstream doubles an expert: 2 GPUs x 3 slots, loads 10, 6, 4, 2.
 * Copies: e0 twice (5, 5), e1 twice (3, 3), e2 (4), e3 (2). Both pack e0
 * on GPUs 0 and 1, e2 on GPU 0 (5 = 5: the first; 9), e1 on GPU 1 (8).
 * Upstream puts e1's second copy on the lighter GPU 1 again (11, full) and
 * e3 on GPU 0 (11): one "replica" of e1 is a second copy on the same GPU.
 * Ours puts it on GPU 0 (12, full) and e3 on GPU 1 (10).
 */
Test(eplb, hand_case_never_puts_two_copies_of_an_expert_on_one_gpu) {
  const double load[4] = {10, 6, 4, 2};
  pl_cluster c = cluster_of(2, 2, 3);
  pl_placement p;
  cr_assert_eq(pl_placement_init(&p, 4, 2, 3), PL_OK);
  cr_assert_eq(pl_eplb_layout(&p, &c, load, 3, 0), PL_OK);
  const int want[2][3] = {{0, 1, 2}, {0, 1, 3}};
  for (int g = 0; g < 2; g++)
    for (int j = 0; j < 3; j++)
      cr_assert_eq(p.host[g * 3 + j], want[g][j], "GPU %d slot %d", g, j);
  double tot[2];
  gpu_totals(&p, load, tot);
  cr_assert_float_eq(tot[0], 12, 1e-12);
  cr_assert_float_eq(tot[1], 10, 1e-12);
  static ref_layout r;
  ref_eplb(load, 4, 2, 3, 2, 0, 0, &r);
  cr_assert(ref_has_duplicate(&r), "the reference must show upstream's duplicate here");
  cr_assert_eq(r.expert[1][2], 1);
  double ratio;
  cr_assert_eq(compare_one(load, 4, 2, 3, 2, 0, "hand case", &ratio), 1);
  cr_assert_float_eq(ratio, 12.0 / 11.0, 1e-12, "ours 12, upstream 11 (with the duplicate)");
  pl_placement_fini(&p);
}

/* ---- random inputs ------------------------------------------------------ */

/* Log-normal loads with spread sigma (continuous: no ties between
 * experts). */
static void random_loads(uint64_t *s, int E, double sigma, double *load) {
  for (int e = 0; e < E; e++) {
    double z = 0;
    for (int k = 0; k < 12; k++)
      z += chk_unif(s);
    load[e] = 1000.0 * exp(sigma * (z - 6.0));
  }
}

Test(eplb, global_layout_is_upstreams_on_random_loads) {
  static const int shapes[][3] = {/* E, G, extra slots over ceil(E/G) */
                                  {8, 2, 1},  {8, 4, 1},  {16, 4, 0},  {16, 4, 2}, {32, 8, 1},
                                  {32, 8, 3}, {24, 8, 1}, {64, 16, 1}, {12, 8, 2}, {6, 4, 1},
                                  {4, 4, 2},  {5, 4, 2},  {6, 4, 2},   {8, 8, 3},  {10, 8, 4}};
  uint64_t seed = 0x5eed0001;
  int same = 0, dup = 0;
  double worst = 0, mean = 0; /* our largest GPU total / upstream's, duplicate cases */
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    int E = shapes[k][0], G = shapes[k][1], S = (E + G - 1) / G + shapes[k][2];
    for (int trial = 0; trial < 60; trial++) {
      double load[MAXE];
      random_loads(&seed, E, 0.3 + 0.05 * trial, load);
      char what[96];
      snprintf(what, sizeof what, "E %d G %d S %d trial %d", E, G, S, trial);
      double ratio;
      if (compare_one(load, E, G, S, G, 0, what, &ratio)) {
        dup++;
        worst = fmax(worst, ratio);
        mean += ratio;
      } else {
        same++;
        cr_assert_float_eq(ratio, 1.0, 1e-12, "%s", what);
      }
    }
  }
  cr_log_info("global: %d layouts equal to upstream's, %d where upstream doubles an expert "
              "(there our largest GPU total / upstream's: mean %.4f, max %.4f)",
              same, dup, mean / dup, worst);
  /* both kinds of case occur, so both comparisons with upstream ran */
  cr_assert_gt(same, 150);
  cr_assert_gt(dup, 100);
}

Test(eplb, hierarchical_layout_is_upstreams_on_random_loads) {
  static const int shapes[][5] = {/* E, G, gpus per node, groups, extra slots */
                                  {32, 16, 8, 4, 1}, {32, 16, 8, 8, 1}, {16, 8, 4, 2, 1},
                                  {32, 8, 2, 8, 0},  {48, 16, 4, 8, 2}, {64, 32, 8, 8, 1}};
  uint64_t seed = 0x5eed0002;
  int same = 0, dup = 0;
  double worst = 0, mean = 0; /* our largest GPU total / upstream's, duplicate cases */
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    int E = shapes[k][0], G = shapes[k][1], gpn = shapes[k][2], groups = shapes[k][3];
    int S = (E + G - 1) / G + shapes[k][4];
    for (int trial = 0; trial < 60; trial++) {
      double load[MAXE];
      random_loads(&seed, E, 0.3 + 0.05 * trial, load);
      char what[112];
      snprintf(what, sizeof what, "E %d G %d gpn %d groups %d S %d trial %d", E, G, gpn, groups,
               S, trial);
      double ratio;
      if (compare_one(load, E, G, S, gpn, groups, what, &ratio)) {
        dup++;
        worst = fmax(worst, ratio);
        mean += ratio;
      } else {
        same++;
        cr_assert_float_eq(ratio, 1.0, 1e-12, "%s", what);
      }
    }
  }
  cr_log_info("hierarchical: %d layouts equal to upstream's, %d where upstream doubles an "
              "expert (there our largest GPU total / upstream's: mean %.4f, max %.4f)",
              same, dup, mean / dup, worst);
  cr_assert_gt(same, 60);
  cr_assert_gt(dup, 100);
}

/* The policy feeds EPLB the per-expert loads summed over the source GPUs:
 * eplb:period=1,predictor=last after one observed iteration is the
 * reference's layout of those sums. */
Test(eplb, policy_plans_upstreams_layout_of_the_observed_loads) {
  enum { G = 8, E = 32, S = 5 };
  pl_env env = chk_env(1, E, G, 8, 6);
  chk_loads loads;
  chk_loads_generate(&loads, 1, 1, G, E, 4096, 21);
  const int64_t *c = chk_loads_at(&loads, 0, 0);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "eplb:slots=5,period=1,predictor=last,background=0", &env,
                                NULL, 0), PL_OK);
  pl_plan plan;
  pl_plan_init(&plan);
  cr_assert_eq(pl_policy_plan(p, 0, 0, NULL, &plan), PL_OK);
  cr_assert_eq(pl_policy_observe(p, 0, 0, c), PL_OK);
  cr_assert_eq(pl_policy_plan(p, 1, 0, NULL, &plan), PL_OK);
  double load[E] = {0};
  for (int g = 0; g < G; g++)
    for (int e = 0; e < E; e++)
      load[e] += (double)c[g * E + e];
  static ref_layout r;
  ref_eplb(load, E, G, S, 8, 0, 0, &r);
  cr_assert_not(ref_has_duplicate(&r), "pick loads without upstream's duplicate");
  const pl_placement *pl = pl_policy_placement(p, 0);
  for (int g = 0; g < G; g++) {
    cr_assert_eq(pl->nhost[g], S);
    for (int j = 0; j < S; j++)
      cr_assert(pl_placement_has(pl, r.expert[g][j], g), "GPU %d lacks expert %d", g,
                r.expert[g][j]);
  }
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
  chk_loads_free(&loads);
}

/*
 * More slots than an expert can use: a GPU holds at most one copy of an
 * expert, so once every expert is on every GPU of its span (the cluster, or
 * its node when hierarchical) the remaining slots stay empty, and the
 * layout is exactly "every expert everywhere" whatever the loads. Global:
 * 3 experts on 4 GPUs with 5 slots each; hierarchical: 2 groups of 2
 * experts on 2 nodes of 2 GPUs with 3 slots, and on 2 nodes of one GPU
 * each; and through the policy, eplb:slots=6 for 4 experts on 2 GPUs (the
 * cluster's memory fits them all, as the oracle's comment warns is common).
 */
Test(eplb, slots_beyond_every_expert_on_every_gpu_stay_empty) {
  static const struct {
    int E, G, gpn, S, groups;
  } cases[] = {{3, 4, 4, 5, 0}, {4, 4, 2, 3, 2}, {2, 2, 1, 2, 2}, {6, 2, 2, 9, 0}};
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    int E = cases[k].E, G = cases[k].G, gpn = cases[k].gpn, S = cases[k].S;
    int groups = cases[k].groups;
    int span = groups ? gpn : G, per_span = groups ? E / (G / gpn) : E;
    pl_cluster c = cluster_of(G, gpn, S);
    double load[8];
    for (int e = 0; e < E; e++)
      load[e] = 100.0 * (e + 1) * (e + 1); /* skewed: the hot ones would take more */
    pl_placement p;
    cr_assert_eq(pl_placement_init(&p, E, G, S), PL_OK);
    cr_assert_eq(pl_eplb_layout(&p, &c, load, S, groups), PL_OK, "case %zu", k);
    cr_assert_eq(pl_placement_check(&p), PL_OK);
    for (int e = 0; e < E; e++)
      cr_assert_eq(p.nrep[e], span, "case %zu: expert %d has %d copies, not %d", k, e,
                   p.nrep[e], span);
    for (int g = 0; g < G; g++) {
      cr_assert_eq(p.nhost[g], per_span, "case %zu: GPU %d holds %d", k, g, p.nhost[g]);
      /* its span's experts, in order: all of them, or one whole group (the
       * one its node drew), the same on every GPU of the node */
      int base = p.host[(size_t)g * S], first = p.host[(size_t)(g / span * span) * S];
      cr_assert(base % per_span == 0 && base == first, "case %zu: GPU %d starts at %d", k, g,
                base);
      for (int j = 0; j < per_span; j++)
        cr_assert_eq(p.host[(size_t)g * S + j], base + j);
    }
    pl_placement_fini(&p);
  }
  pl_env env = chk_env(1, 4, 2, 2, 6);
  chk_loads loads;
  chk_loads_generate(&loads, 3, 1, 2, 4, 4096, 5);
  pl_policy *pol = NULL;
  char err[256] = "";
  cr_assert_eq(pl_policy_create(&pol, "eplb:slots=6,period=1", &env, err, sizeof err), PL_OK,
               "%s", err);
  pl_plan plan;
  pl_plan_init(&plan);
  for (int it = 0; it < loads.iterations; it++) {
    cr_assert_eq(pl_policy_plan(pol, it, 0, NULL, &plan), PL_OK, "iteration %d", it);
    cr_assert_eq(pl_policy_observe(pol, it, 0, chk_loads_at(&loads, it, 0)), PL_OK);
  }
  const pl_placement *pl = pl_policy_placement(pol, 0);
  for (int g = 0; g < 2; g++)
    cr_assert_eq(pl->nhost[g], 4, "GPU %d holds %d experts", g, pl->nhost[g]);
  pl_plan_fini(&plan);
  pl_policy_destroy(pol);
  chk_loads_free(&loads);
}
