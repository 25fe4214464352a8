/* The kept cost terms (pl_cost_inc) against pl_cost_layer: the oracle's
 * local search takes a trial's time from them, so their total must be
 * pl_cost_layer's, bit for bit, after every routing change; the change
 * with kept splits (pl_route_change_delta) must route as pl_route does,
 * and the GPUs it reports (pl_route_delta) must cover every GPU whose
 * routing sums or experts changed. */
#include <criterion/criterion.h>
#include <string.h>

#include "pl_check.h"
#include "placement/pl_cost.h"
#include "placement/pl_route.h"
#include "../../placement/pl_internal.h"

/* 1 when a and b are the same double, bit for bit. */
static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof(double)) == 0; }

/* Random replicas: each expert 1 to `most` of them, within the slots. */
static void random_layout(pl_placement *p, int most, uint64_t *x) {
  pl_placement_clear(p);
  for (int e = 0; e < p->experts; e++) {
    int want = 1 + (int)(chk_rng(x) % (uint64_t)most);
    for (int tries = 0; tries < 200 && p->nrep[e] < want; tries++) {
      int g = (int)(chk_rng(x) % (uint64_t)p->gpus);
      if (p->nhost[g] < p->slots && !pl_placement_has(p, e, g))
        cr_assert_eq(pl_placement_add(p, e, g), PL_OK);
    }
    cr_assert_gt(p->nrep[e], 0);
  }
}

/* One of the local search's edits on p, at random: a replica added,
 * dropped (not the last) or moved to another GPU; `many` of them at once
 * now and then (as a node trade changes most experts). */
static void random_edit(pl_placement *p, int many, uint64_t *x) {
  int n = chk_rng(x) % 8 == 0 ? many : 1 + (int)(chk_rng(x) % 3);
  for (int k = 0; k < n; k++) {
    int e = (int)(chk_rng(x) % (uint64_t)p->experts), g = (int)(chk_rng(x) % (uint64_t)p->gpus);
    int d = (int)(chk_rng(x) % (uint64_t)p->gpus), op = (int)(chk_rng(x) % 3);
    if (op == 0 && !pl_placement_has(p, e, g) && p->nhost[g] < p->slots)
      cr_assert_eq(pl_placement_add(p, e, g), PL_OK);
    else if (op == 1 && pl_placement_has(p, e, g) && p->nrep[e] > 1)
      cr_assert_eq(pl_placement_remove(p, e, g), PL_OK);
    else if (op == 2 && pl_placement_has(p, e, g) && !pl_placement_has(p, e, d) &&
             p->nhost[d] < p->slots) {
      cr_assert_eq(pl_placement_remove(p, e, g), PL_OK);
      cr_assert_eq(pl_placement_add(p, e, d), PL_OK);
    }
  }
}

/* Random counts [G*E]: zeros, small and large ones (a large expert's
 * tokens over many replicas leave remainders). */
static void random_counts(int64_t *counts, int n, uint64_t *x) {
  int64_t scale = chk_rng(x) % 2 ? 5000 : 40;
  for (int i = 0; i < n; i++)
    counts[i] = chk_rng(x) % 4 == 0 ? 0 : (int64_t)(chk_rng(x) % (uint64_t)scale);
}

/* 1 when GPU g's routing sums or host list differ between (a, ra) and
 * (b, rb). */
static int gpu_differs(const pl_placement *a, const pl_routing *ra, const pl_placement *b,
                       const pl_routing *rb, int g) {
  int G = a->gpus, E = a->experts;
  if (ra->gpu_load[g] != rb->gpu_load[g] || a->nhost[g] != b->nhost[g] ||
      memcmp(a->host + (size_t)g * a->slots, b->host + (size_t)g * b->slots,
             (size_t)a->nhost[g] * sizeof(int)) ||
      memcmp(ra->load + (size_t)g * E, rb->load + (size_t)g * E, (size_t)E * sizeof(int64_t)))
    return 1;
  for (int k = 0; k < 4; k++)
    if (ra->hose[k * G + g] != rb->hose[k * G + g])
      return 1;
  return 0;
}

/* A walk of `steps` random edits from a random layout on cluster (G, gpn):
 * after each, the routing changed from the step before (pl_route_change_delta)
 * is a fresh routing's, costed from the kept terms (pl_cost_inc_update) it
 * gives pl_cost_layer's total, and every GPU that changed is reported. */
static void walk(int G, int gpn, int E, int S, int most, int steps, uint64_t seed) {
  pl_env env = chk_env(1, E, G, gpn, S);
  const pl_cluster *c = &env.cluster;
  uint64_t x = seed;
  pl_placement p[2];
  pl_routing r, fresh, before;
  pl_route_delta d;
  pl_cost_inc ci;
  int64_t *counts = calloc((size_t)G * E, sizeof(int64_t));
  cr_assert_not_null(counts);
  for (int k = 0; k < 2; k++)
    cr_assert_eq(pl_placement_init(&p[k], E, G, S), PL_OK);
  cr_assert_eq(pl_routing_init(&r, G, E, 0), PL_OK);
  cr_assert_eq(pl_routing_init(&fresh, G, E, 0), PL_OK);
  cr_assert_eq(pl_routing_init(&before, G, E, 0), PL_OK);
  cr_assert_eq(pl_route_delta_init(&d, G, E), PL_OK);
  cr_assert_eq(pl_cost_inc_init(&ci, G, E), PL_OK);
  double us, inc;
  pl_cost ref;
  for (int step = 0; step < steps; step++) {
    if (step % 40 == 0) { /* a new start: layout, counts, every term from scratch */
      random_layout(&p[0], most, &x);
      random_counts(counts, G * E, &x);
      pl_route_delta_forget(&d); /* other counts at the same address */
      cr_assert_eq(pl_route(&p[0], c, counts, -1, &r), PL_OK);
      cr_assert_eq(pl_cost_inc_full(&ci, c, &env.model, &env.profile, &p[0], &r, &us), PL_OK);
      cr_assert_eq(pl_cost_layer(c, &env.model, &env.profile, &p[0], &r, &ref), PL_OK);
      cr_assert(same_bits(us, ref.total_us), "G %d step %d: %.17g vs %.17g", G, step, us,
                ref.total_us);
    }
    cr_assert_eq(pl_placement_copy(&p[1], &p[0]), PL_OK);
    random_edit(&p[1], E / 2 + 1, &x);
    cr_assert_eq(pl_route(&p[0], c, counts, -1, &before), PL_OK);
    cr_assert_eq(pl_route_change_delta(&p[0], &p[1], c, counts, &r, &d), PL_OK);
    cr_assert_eq(pl_cost_inc_update(&ci, c, &env.model, &env.profile, &p[1], &r, &d, &inc),
                 PL_OK);
    cr_assert_eq(pl_route(&p[1], c, counts, -1, &fresh), PL_OK);
    for (int g = 0; g < G; g++) /* the kept splits' routing is pl_route's */
      cr_assert(!gpu_differs(&p[1], &r, &p[1], &fresh, g), "G %d step %d: GPU %d routed otherwise",
                G, step, g);
    cr_assert_eq(pl_cost_layer(c, &env.model, &env.profile, &p[1], &fresh, &ref), PL_OK);
    cr_assert(same_bits(inc, ref.total_us), "G %d gpn %d step %d: %.17g vs %.17g", G, gpn, step,
              inc, ref.total_us);
    for (int g = 0; !d.all && g < G; g++)
      cr_assert(d.mark[g] == d.id || !gpu_differs(&p[0], &before, &p[1], &fresh, g),
                "G %d step %d: GPU %d changed, not reported", G, step, g);
    pl_placement t = p[0];
    p[0] = p[1];
    p[1] = t;
  }
  pl_cost_inc_fini(&ci);
  pl_route_delta_fini(&d);
  pl_routing_fini(&before);
  pl_routing_fini(&fresh);
  pl_routing_fini(&r);
  for (int k = 0; k < 2; k++)
    pl_placement_fini(&p[k]);
  free(counts);
}

Test(cost_inc, kept_terms_give_the_layer_cost_on_one_node) {
  walk(8, 8, 12, 4, 2, 400, 3);
}

Test(cost_inc, kept_terms_give_the_layer_cost_on_several_nodes) {
  walk(32, 8, 12, 3, 10, 400, 5);
  walk(64, 4, 16, 2, 8, 400, 7);
}

Test(cost_inc, kept_terms_give_the_layer_cost_with_many_replicas_per_expert) {
  /* G >> E, as at 1,024 GPUs: experts on many nodes, most nodes without a
   * given expert */
  walk(128, 8, 8, 2, 40, 200, 11);
}
