/*
 * policy_oracle.c - the clairvoyant reference.
 *
 * Knows each iteration's counts before it runs (the `upcoming` argument of
 * the plan protocol) and re-plans every iteration for free: its moves are
 * reported (bytes) but marked uncharged, so no time is charged for them.
 * What it optimises: the analytic layer time of pl_cost_layer (compute +
 * all-to-all + replica all-reduce, after the real locality-first routing of
 * the upcoming counts) with at most `slots` replicas per GPU. The exact
 * optimum is a hard packing problem, so the oracle takes the best, under
 * that exact cost, of these candidates: the current placement, the static
 * layout, the greedy planner (pl_greedy, migration weight 0) run from the
 * current placement, from the static layout and from EPLB's layout of the
 * upcoming loads (budget: EPLB_SPARE below), EPLB's global and
 * hierarchical layouts as they are, and the fastest of these polished by a
 * local search under the exact cost (polish_best: drops, adds, moves,
 * swaps and GPU / node trades, `search` rounds). It is therefore never
 * worse than static or than keeping its placement; it is not a proof of
 * optimality. On the random small cases of tests/placement (chk_oracle_bounds)
 * it is at most every other policy on every iteration, flexmoe, hierarchical
 * eplb and smartmoe included (test_oracle_bound.c).
 *
 * shadow > 0: temporaries (pl_shadow.h) on top of the chosen placement,
 * decided on the iteration's own counts exactly as flexmoe's shadow decides
 * them (the `temporaries` op of the policy contract, charged by the
 * engines as flexmoe's are); with shadow_net=1 each candidate is judged by
 * its exact time less what its temporaries would save, as flexmoe's
 * shadow_net judges its plans, so the chosen placement may be slower alone
 * than with shadow=0 (the small-case check is for the placements alone:
 * shadow=0 or shadow_net=0).
 * Without upcoming counts it keeps its placement. O(K (G E + replicas)) per
 * plan for K candidates (it routes each, without the G x G matrix: the cost
 * needs only per-GPU sums), plus the greedy runs, plus the local search
 * (each trial re-routes only the experts it changes, pl_route_change), plus
 * with shadow_net one temporaries decision per candidate.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "placement/pl_policies.h"
#include "pl_internal.h"

/* shadow=5: per layer and iteration the better (predicted) of LAZY's and
 * FAST's decisions (or_temporaries) */
#define OR_SHADOW_BOTH 5
/* shadow's default: 5. Measured on the six cells of issue 17
 * (docs/placement.md, des, full real traces) and at 1,024 GPUs: the tightest
 * of shadow 0, 1, 3 and 5 in every cell, and at most flexmoe in all of them;
 * 3 (LAZY) is second at 8-64 GPUs, but above flexmoe at 1,024 GPUs, where 4
 * (FAST) takes better temporaries; without temporaries flexmoe beats the
 * oracle at noaux 64 GPUs by 14%. Its placements alone are then not the
 * fastest (shadow_net judges them net of the temporaries), so
 * chk_oracle_bounds, which checks placements alone, names oracle:shadow=0. */
#define OR_SHADOW_DEFAULT OR_SHADOW_BOTH

/* candidates: 0-5 below, 6 EPLB's layout unrefined, 7 hierarchical EPLB's
 * (groups: one per node), 8 the best of them polished (polish_best) */
#define NCAND 9
enum { C_EPLB_RAW = 6, C_HIER = 7, C_POLISH = 8 };

/* Budget of the EPLB start: EPLB always fills every slot it is given, so
 * with the cluster's memory-sized slots (often every expert on every GPU)
 * it replicates everything, and with many GPUs per expert (G >> E) even a
 * few slots per GPU mean dozens of replicas per expert: layouts whose
 * replica all-reduce dwarfs any balance they buy (4-8x the other
 * candidates' time), which the greedy then spent all of max_steps
 * shrinking one replica at a time - over 95% of the oracle's time, for a
 * candidate that never won. So the EPLB start gets ceil(E/G) + 2 slots per
 * GPU (the budget the quality benchmark gives every policy), fewer when
 * that means more than 6 replicas per expert on average (not below
 * ceil(E/G)), and never more than `slots`. */
#define EPLB_SPARE 2
#define EPLB_MAX_MEAN_REPLICAS 6

/* shadow_net=1: the temporaries or_plan decided for the candidate it chose
 * (its net judged it), kept for the engines' call of the same iteration,
 * which decides the same again on the same counts and placement (serving
 * = current = the chosen one, grad_hide_us of the same layers below): it
 * was a second full decision per layer and iteration, about a sixth of the
 * oracle's time at 1,024 GPUs. Used only when every input is equal. */
typedef struct or_memo {
  pl_tmemo m;      /* the decision; its placement the one it was decided on */
  double vlo, vhi; /* grad_hide_us for which it holds (both searches' range) */
  int64_t *counts; /* [G*E] the counts it was decided on */
} or_memo;

/* A local search step's change of the incumbent (polish_best). */
enum { OP_DROP, OP_ADD, OP_MOVE, OP_SWAP, OP_GSWAP, OP_NSWAP };
typedef struct or_edit {
  int op, x, a, b, y; /* expert x on GPU a (drop, move, swap) or to b (add, move, swap);
                         swap: expert y from b to a; gswap: GPUs a and b trade the
                         experts one of them holds; nswap: so do nodes a and b, GPU
                         by GPU (gpn in x) */
  int a2, b2;         /* then GPUs a2 and b2 trade theirs (none when equal) */
} or_edit;

/* A trial's placement: the round's incumbent changed by e when known (0:
 * unknown: another incumbent's, or an edit that failed). */
typedef struct or_trial {
  pl_placement p;
  or_edit e;
  int known;
} or_trial;

typedef struct or_state {
  pl_env env;
  int slots, max_steps;
  int eplb_slots; /* EPLB start's budget: min(slots, ceil(E/G) + 2) */
  int shadow;     /* 1-4: temporaries as flexmoe's shadow=1-4 decides them */
  int shadow_net; /* shadow > 0: candidates judged net of their temporaries */
  pl_temps_cfg tcfg;
  double *load;   /* [E] */
  double *lay_us; /* [layers] exact time of each layer's last plan (-1: none) */
  pl_placement cand[NCAND];
  pl_routing r;
  pl_temps tg; /* shadow > 0: the temporaries that score each candidate */
  pl_temps tf; /* shadow=5: FAST's decision beside tg's LAZY one (temps_net) */
  pl_temps tb; /* the decision of the best candidate so far (or_plan) */
  or_memo *memo; /* [layers] shadow_net=1: the chosen candidate's decision */
  int polish;  /* `search`: local search rounds (polish_best) */
  or_trial lw[2];     /* polish_best: the trial and the one routed before it */
  pl_routing lr;      /* polish_best: routes lw's placements */
  pl_route_delta ld;  /* trial_us: what a trial's routing change touched */
  pl_cost_inc lc;     /* trial_us: the cost of lw[0] routed by lr, term by term */
  int64_t *gl;        /* [G] polish_best: compute tokens of the incumbent */
  int *sw;            /* [2 x cluster slots] gpu_swap's scratch */
  double *at;         /* [G] polish_round: each GPU's all-to-all time */
  int *nsel;          /* [nodes] polish_round: the nodes its trials go to */
} or_state;

static void or_fini(void *state) {
  or_state *s = state;
  if (!s)
    return;
  for (int k = 0; k < NCAND; k++)
    pl_placement_fini(&s->cand[k]);
  pl_routing_fini(&s->r);
  pl_temps_fini(&s->tg);
  pl_temps_fini(&s->tf);
  pl_temps_fini(&s->tb);
  for (int l = 0; s->memo && l < s->env.layers; l++) {
    pl_tmemo_fini(&s->memo[l].m);
    pl_free(s->memo[l].counts);
  }
  pl_free(s->memo);
  pl_placement_fini(&s->lw[0].p);
  pl_placement_fini(&s->lw[1].p);
  pl_routing_fini(&s->lr);
  pl_route_delta_fini(&s->ld);
  pl_cost_inc_fini(&s->lc);
  pl_free(s->gl);
  pl_free(s->sw);
  pl_free(s->at);
  pl_free(s->nsel);
  pl_free(s->load);
  pl_free(s->lay_us);
  pl_free(s);
}

/* Room for each layer's memo (or_memo). */
static int memo_init(or_state *s) {
  size_t GE = (size_t)s->env.cluster.gpus * s->env.experts;
  if (!(s->memo = pl_calloc((size_t)s->env.layers, sizeof(or_memo))))
    return PL_ENOMEM;
  for (int l = 0; l < s->env.layers; l++) {
    or_memo *m = &s->memo[l];
    int rc = pl_placement_init(&m->m.placement, s->env.experts, s->env.cluster.gpus,
                               s->env.cluster.slots);
    if (rc)
      return rc;
    if (!(m->counts = pl_calloc(GE, sizeof(int64_t))))
      return PL_ENOMEM;
  }
  return PL_OK;
}

static int or_init(void **state, const pl_env *env, const pl_kv *kv, int nkv,
                   pl_placement *initial) {
  or_state *s = pl_calloc(1, sizeof(*s));
  if (!s)
    return PL_ENOMEM;
  s->env = *env;
  int E = env->experts, G = env->cluster.gpus, rc;
  if ((rc = pl_param_slots(env, kv, nkv, env->cluster.slots, &s->slots)) ||
      (rc = pl_kv_int(kv, nkv, "max_steps", 0, 0, 1 << 24, &s->max_steps)) ||
      (rc = pl_kv_int(kv, nkv, "shadow", OR_SHADOW_DEFAULT, 0, OR_SHADOW_BOTH, &s->shadow)) ||
      (rc = pl_kv_int(kv, nkv, "shadow_net", 1, 0, 1, &s->shadow_net)) ||
      (rc = pl_kv_int(kv, nkv, "search", 4, 0, 1 << 20, &s->polish)))
    goto fail;
  /* flexmoe's shadow values and defaults (margin 1, no cap) */
  s->tcfg = (pl_temps_cfg){.margin = 1.0,
                           .max_temps = 0,
                           .search = s->shadow == OR_SHADOW_BOTH ? PL_TEMPS_SEARCH_LAZY
                                     : s->shadow > 1             ? s->shadow - 1
                                                                 : PL_TEMPS_SEARCH_FULL};
  if (s->max_steps == 0)
    s->max_steps = 8 * E;
  {
    int need = (E + G - 1) / G, dense = EPLB_MAX_MEAN_REPLICAS * E / G;
    s->eplb_slots = need + EPLB_SPARE;
    if (s->eplb_slots > (dense > need ? dense : need))
      s->eplb_slots = dense > need ? dense : need;
    if (s->eplb_slots > s->slots)
      s->eplb_slots = s->slots;
  }
  for (int k = 0; k < NCAND && !rc; k++)
    rc = pl_placement_init(&s->cand[k], E, G, env->cluster.slots);
  if (!rc)
    rc = pl_routing_init(&s->r, G, E, 0);
  for (int k = 0; k < 2 && !rc; k++)
    rc = pl_placement_init(&s->lw[k].p, E, G, env->cluster.slots);
  if (!rc)
    rc = pl_routing_init(&s->lr, G, E, 0);
  if (!rc)
    rc = pl_route_delta_init(&s->ld, G, E);
  if (!rc)
    rc = pl_cost_inc_init(&s->lc, G, E);
  if (!rc && s->shadow && s->shadow_net &&
      !(rc = pl_temps_init(&s->tg, E, G, env->cluster.slots)) &&
      !(rc = pl_temps_init(&s->tf, E, G, env->cluster.slots)) &&
      !(rc = pl_temps_init(&s->tb, E, G, env->cluster.slots)))
    rc = memo_init(s);
  if (rc)
    goto fail;
  s->load = pl_calloc((size_t)E, sizeof(double));
  s->lay_us = pl_calloc((size_t)env->layers, sizeof(double));
  s->gl = pl_calloc((size_t)G, sizeof(int64_t));
  s->sw = pl_calloc(2 * (size_t)env->cluster.slots, sizeof(int));
  s->at = pl_calloc((size_t)G, sizeof(double));
  s->nsel = pl_calloc((size_t)(G / env->cluster.gpus_per_node), sizeof(int));
  if (!s->load || !s->lay_us || !s->gl || !s->sw || !s->at || !s->nsel) {
    rc = PL_ENOMEM;
    goto fail;
  }
  for (int l = 0; l < env->layers; l++)
    s->lay_us[l] = -1;
  for (int l = 0; l < env->layers; l++)
    if ((rc = pl_placement_static(&initial[l])) != 0)
      goto fail;
  *state = s;
  return PL_OK;
fail:
  or_fini(s);
  return rc;
}

static int refine(or_state *s, pl_placement *p) {
  pl_greedy g;
  int rc = pl_greedy_init(&g, &s->env.cluster, &s->env.model, &s->env.profile,
                          p, s->load, 1, s->slots, 0.0);
  if (rc)
    return rc;
  rc = pl_greedy_run(&g, s->max_steps);
  pl_greedy_fini(&g);
  return rc;
}

static int exact_us(or_state *s, const pl_placement *p, const int64_t *counts,
                    double *us) {
  pl_cost cost;
  int rc = pl_route(p, &s->env.cluster, counts, -1, &s->r);
  if (!rc)
    rc = pl_cost_layer(&s->env.cluster, &s->env.model, &s->env.profile, p, &s->r, &cost);
  if (!rc)
    *us = cost.total_us;
  return rc;
}

/* Exchanges two decisions with their scratch (no copy). */
static void temps_swap(pl_temps *a, pl_temps *b) {
  pl_temps t = *a;
  *a = *b;
  *b = t;
}

/* The layer's temporaries on serving, current and counts for grad_hide_us
 * gh, as or_temporaries documents them, into out; *vlo, *vhi the range of
 * gh for which the same decision holds (pl_temps.hide_lo, hide_hi; with
 * shadow=5 both searches'). shadow=5 decides FAST's into `spare` and keeps
 * the better in out by swapping the two, or without a spare (the engines'
 * threads share none) decides LAZY's again into out when it wins (a pure
 * function: the same temporaries). */
static int decide(const or_state *s, const pl_placement *serving, const pl_placement *current,
                  const int64_t *counts, double gh, pl_temps *out, pl_temps *spare, double *vlo,
                  double *vhi) {
  const pl_env *env = &s->env;
  pl_temps_cfg cfg = s->tcfg;
  cfg.grad_hide_us = gh;
  int rc = pl_temps_decide(out, &cfg, &env->cluster, &env->model, &env->profile, serving,
                           current, counts, s->slots);
  *vlo = out->hide_lo;
  *vhi = out->hide_hi;
  if (rc || s->shadow != OR_SHADOW_BOTH)
    return rc;
  /* shadow=5: FAST's decision too; the one predicted to save more (LAZY's
   * on a tie) */
  double lazy = out->n > 0 ? out->gain_us - out->cost_us : 0.0;
  pl_temps *fast = spare ? spare : out;
  cfg.search = PL_TEMPS_SEARCH_FAST;
  if ((rc = pl_temps_decide(fast, &cfg, &env->cluster, &env->model, &env->profile, serving,
                            current, counts, s->slots)) != 0)
    return rc;
  *vlo = fmax(*vlo, fast->hide_lo);
  *vhi = fmin(*vhi, fast->hide_hi);
  if ((fast->n > 0 ? fast->gain_us - fast->cost_us : 0.0) > lazy) {
    if (spare)
      temps_swap(out, spare);
    return PL_OK;
  }
  if (spare)
    return PL_OK;
  cfg.search = PL_TEMPS_SEARCH_LAZY;
  return pl_temps_decide(out, &cfg, &env->cluster, &env->model, &env->profile, serving,
                         current, counts, s->slots);
}

/* shadow > 0: what the temporaries would save on candidate p for the
 * iteration's counts (their predicted gain less their cost, decided as
 * or_temporaries decides them, 0 without any), so that a candidate is
 * judged as it would serve (flexmoe's shadow_net does the same with the
 * counts it has observed); the decision is left in s->tg, its range of
 * grad_hide_us in *vlo, *vhi. 0 with shadow=0. */
static int temps_net(or_state *s, int layer, const pl_placement *p, const int64_t *counts,
                     double *net, double *vlo, double *vhi) {
  *net = 0;
  if (!s->shadow || !s->shadow_net)
    return PL_OK;
  int rc = decide(s, p, p, counts, pl_grad_hide_us(&s->env, s->lay_us, layer), &s->tg, &s->tf,
                  vlo, vhi);
  if (!rc && s->tg.n > 0)
    *net = fmax(0.0, s->tg.gain_us - s->tg.cost_us);
  return rc;
}

/* Decision t (valid for grad_hide_us in [vlo, vhi]) of placement key on
 * counts into the layer's memo; left invalid when out of memory (a memo
 * only saves time). */
static void memo_put(or_state *s, int layer, const pl_temps *t, const pl_placement *key,
                     const int64_t *counts, double vlo, double vhi) {
  or_memo *m = &s->memo[layer];
  if (pl_tmemo_room(&m->m, t->n) != 0 || pl_placement_copy(&m->m.placement, key) != 0)
    return;
  memcpy(m->counts, counts, (size_t)s->env.cluster.gpus * s->env.experts * sizeof(int64_t));
  pl_tmemo_fill(&m->m, t, 0);
  m->vlo = vlo;
  m->vhi = vhi;
}

/* The layer's memo into out when it holds the decision for these inputs
 * (1), else 0 (out untouched). */
static int memo_get(const or_state *s, int layer, const pl_placement *serving,
                    const pl_placement *current, const int64_t *counts, double gh,
                    pl_temps *out, int *rc) {
  const or_memo *m = s->memo ? &s->memo[layer] : NULL;
  if (!m || !m->m.valid || !(gh >= m->vlo && gh <= m->vhi) ||
      !pl_placement_equal(serving, &m->m.placement) ||
      (current && current != serving && !pl_placement_equal(current, &m->m.placement)) ||
      memcmp(counts, m->counts, (size_t)s->env.cluster.gpus * s->env.experts * sizeof(int64_t)))
    return 0;
  pl_tmemo_out(&m->m, out);
  *rc = m->m.n > 0 ? pl_temps_place(out, serving) : PL_OK;
  return 1;
}

/* polish_round's trials go to at most this many nodes */
#define OR_NODES 8

/* GPUs a and b trade the experts only one of them holds (those on both
 * stay): a valid placement stays valid, each GPU holding as many experts
 * as the other held. sw: scratch of 2 x p->slots. */
static int gpu_swap(pl_placement *p, int a, int b, int *sw) {
  int S = p->slots, na = 0, nb = 0, rc = PL_OK;
  for (int i = 0; i < p->nhost[a]; i++)
    if (!pl_placement_has(p, p->host[(size_t)a * S + i], b))
      sw[na++] = p->host[(size_t)a * S + i];
  for (int i = 0; i < p->nhost[b]; i++)
    if (!pl_placement_has(p, p->host[(size_t)b * S + i], a))
      sw[S + nb++] = p->host[(size_t)b * S + i];
  for (int i = 0; i < na && !rc; i++)
    rc = pl_placement_remove(p, sw[i], a);
  for (int i = 0; i < nb && !rc; i++)
    rc = pl_placement_remove(p, sw[S + i], b);
  for (int i = 0; i < na && !rc; i++)
    rc = pl_placement_add(p, sw[i], b);
  for (int i = 0; i < nb && !rc; i++)
    rc = pl_placement_add(p, sw[S + i], a);
  return rc;
}

/* Applies e to p (whose validity the caller checked). */
static int edit_apply(pl_placement *p, const or_edit *e, int *sw) {
  if (e->op == OP_GSWAP || e->op == OP_NSWAP) {
    int rc = e->op == OP_GSWAP ? gpu_swap(p, e->a, e->b, sw) : PL_OK;
    for (int i = 0; e->op == OP_NSWAP && i < e->x && !rc; i++)
      rc = gpu_swap(p, e->a * e->x + i, e->b * e->x + i, sw);
    return rc ? rc : gpu_swap(p, e->a2, e->b2, sw);
  }
  int rc = PL_OK;
  if (e->op != OP_ADD)
    rc = pl_placement_remove(p, e->x, e->a);
  if (!rc && e->op == OP_SWAP)
    rc = pl_placement_remove(p, e->y, e->b);
  if (!rc && e->op != OP_DROP)
    rc = pl_placement_add(p, e->x, e->b);
  if (!rc && e->op == OP_SWAP)
    rc = pl_placement_add(p, e->y, e->a);
  return rc;
}

/* Expert x's replica list in p copied back from w. */
static void restore_expert(pl_placement *p, const pl_placement *w, int x) {
  size_t G = (size_t)p->gpus;
  p->nrep[x] = w->nrep[x];
  memcpy(p->rep + x * G, w->rep + x * G, (size_t)w->nrep[x] * sizeof(int));
}

/* GPU g's host row in p copied back from w, with the replica list of each
 * expert on it in either. */
static void restore_gpu(pl_placement *p, const pl_placement *w, int g) {
  size_t S = (size_t)p->slots;
  for (int j = 0; j < p->nhost[g]; j++)
    restore_expert(p, w, p->host[g * S + j]);
  for (int j = 0; j < w->nhost[g]; j++)
    restore_expert(p, w, w->host[g * S + j]);
  p->nhost[g] = w->nhost[g];
  memcpy(p->host + g * S, w->host + g * S, (size_t)w->nhost[g] * sizeof(int));
}

/* p, which is w changed by e (edit_apply), made w again: e changes the
 * host rows of the GPUs it names (nswap: nodes a and b's) and the replica
 * lists of experts on them, and nothing else, so those are copied back:
 * the same arrays as pl_placement_copy(p, w) gives (lists ascend), in
 * O(the experts on them x their replicas) instead of O(G + replicas). */
static void edit_undo(pl_placement *p, const pl_placement *w, const or_edit *e) {
  if (e->op == OP_GSWAP || e->op == OP_NSWAP) {
    int k = e->op == OP_NSWAP ? e->x : 1; /* GPUs of a, of b */
    for (int i = 0; i < k; i++) {
      restore_gpu(p, w, e->a * k + i);
      restore_gpu(p, w, e->b * k + i);
    }
    restore_gpu(p, w, e->a2);
    restore_gpu(p, w, e->b2);
    return;
  }
  if (e->op != OP_ADD)
    restore_gpu(p, w, e->a);
  if (e->op != OP_DROP)
    restore_gpu(p, w, e->b);
}

/* The exact cost of w changed by e: lw[1] = w + e, routed from lw[0]'s
 * routing (s->lr) by re-routing only the experts whose replicas differ
 * (pl_route_change, the same routing as pl_route), and costed from lw[0]'s
 * cost terms (s->lc) by costing again only the GPUs that re-routing
 * touched (pl_cost_inc_update: pl_cost_layer's total, bit for bit); then
 * lw[0] and lw[1] trade places so that lw[0] is always the placement s->lr
 * routes and s->lc costs. lw[1] is made w again by undoing its edit
 * (edit_undo) when known, else by a copy. */
static int trial_us(or_state *s, const pl_placement *w, const or_edit *e, const int64_t *counts,
                    double *us) {
  const pl_env *env = &s->env;
  or_trial *t = &s->lw[1];
  int rc = PL_OK;
  if (t->known)
    edit_undo(&t->p, w, &t->e);
  else
    rc = pl_placement_copy(&t->p, w);
  t->known = 0;
  if (rc || (rc = edit_apply(&t->p, e, s->sw)))
    return rc;
  t->e = *e;
  t->known = 1;
  if ((rc = pl_route_change_delta(&s->lw[0].p, &t->p, &env->cluster, counts, &s->lr, &s->ld)) ||
      (rc = pl_cost_inc_update(&s->lc, &env->cluster, &env->model, &env->profile, &t->p, &s->lr,
                               &s->ld, us)))
    return rc;
  or_trial last = s->lw[0];
  s->lw[0] = *t;
  s->lw[1] = last;
  return PL_OK;
}

/* Tries e; keeps it in *best when it beats *best_us. */
static int try_edit(or_state *s, const pl_placement *w, const or_edit *e, const int64_t *counts,
                    or_edit *best, double *best_us) {
  double us;
  int rc = trial_us(s, w, e, counts, &us);
  if (!rc && us < *best_us) {
    *best_us = us;
    *best = *e;
  }
  return rc;
}

/* The GPU of `node` other than `skip` without expert x with the fewest
 * compute tokens (s->gl; ties: lowest id), only among GPUs with a free slot
 * when need_free; -1 when none. */
static int coolest(const or_state *s, const pl_placement *w, int node, int skip, int x,
                   int need_free) {
  int gpn = s->env.cluster.gpus_per_node, d = -1;
  for (int g = node * gpn; g < (node + 1) * gpn; g++)
    if (g != skip && !pl_placement_has(w, x, g) && (!need_free || w->nhost[g] < s->slots) &&
        (d < 0 || s->gl[g] < s->gl[d]))
      d = g;
  return d;
}

/* The busiest GPU by compute tokens (s->gl) into *h, and the one with the
 * slowest all-to-all (pl_cost's per-GPU time from r's wire sums, each
 * GPU's in s->at) into *a; ties: lowest id. */
static void hot_gpus(or_state *s, const pl_routing *r, int *h, int *a) {
  const pl_cluster *c = &s->env.cluster;
  int G = c->gpus;
  const int64_t *hs = r->hose;
  *h = 0;
  for (int g = 1; g < G; g++)
    if (s->gl[g] > s->gl[*h])
      *h = g;
  *a = 0;
  for (int g = 0; g < G; g++) {
    int64_t intra = hs[g] > hs[G + g] ? hs[g] : hs[G + g];
    int64_t inter = hs[2 * G + g] > hs[3 * G + g] ? hs[2 * G + g] : hs[3 * G + g];
    s->at[g] = (intra ? c->intra_lat_s + (double)intra / c->intra_Bps : 0) +
               (inter ? c->inter_lat_s + (double)inter / (c->inter_Bps / c->oversub) : 0);
    if (s->at[g] > s->at[*a])
      *a = g;
  }
}

/* The nodes a round's trials go to, in id order into s->nsel, their
 * number returned: all of them up to OR_NODES, else h's, a's and those
 * with the fewest compute tokens (ties: lowest id), so that a round's
 * trials do not grow with the cluster. */
static int round_nodes(or_state *s, int h, int a) {
  int gpn = s->env.cluster.gpus_per_node, nodes = s->env.cluster.gpus / gpn;
  for (int n = 0; n < nodes; n++)
    s->nsel[n] = n;
  if (nodes <= OR_NODES)
    return nodes;
  for (int n = 0; n < nodes; n++)
    s->nsel[n] = n == h / gpn || n == a / gpn;
  for (int picked = h / gpn == a / gpn ? 1 : 2; picked < OR_NODES; picked++) {
    int b = -1;
    int64_t bsum = 0;
    for (int n = 0; n < nodes; n++) {
      if (s->nsel[n])
        continue;
      int64_t sum = 0;
      for (int g = n * gpn; g < (n + 1) * gpn; g++)
        sum += s->gl[g];
      if (b < 0 || sum < bsum) {
        b = n;
        bsum = sum;
      }
    }
    s->nsel[b] = 1;
  }
  int nn = 0;
  for (int n = 0; n < nodes; n++)
    if (s->nsel[n])
      s->nsel[nn++] = n;
  return nn;
}

/* The trials around the busiest GPU h: each expert x on h dropped there
 * (if replicated), and for each of the round's nn nodes, with its coolest
 * GPU without x that has a free slot, added there and moved there from h,
 * and with its coolest GPU d without x, swapped with the expert of d that
 * computes the fewest tokens on d (r: w's routing) and that h lacks. */
static int trials_busiest(or_state *s, const pl_placement *w, const pl_routing *r,
                          const int64_t *counts, int h, int nn, or_edit *best, double *best_us) {
  int E = s->env.experts, rc = PL_OK;
  for (int j = 0; j < w->nhost[h] && !rc; j++) {
    int x = w->host[(size_t)h * w->slots + j];
    if (w->nrep[x] > 1)
      rc = try_edit(s, w, &(or_edit){.op = OP_DROP, .x = x, .a = h, .b = -1, .y = -1}, counts, best,
                    best_us);
    for (int k = 0; k < nn && !rc; k++) {
      int n = s->nsel[k];
      int d = coolest(s, w, n, h, x, 1);
      if (d >= 0 &&
          !(rc = try_edit(s, w, &(or_edit){.op = OP_ADD, .x = x, .a = -1, .b = d, .y = -1}, counts,
                          best, best_us)))
        rc = try_edit(s, w, &(or_edit){.op = OP_MOVE, .x = x, .a = h, .b = d, .y = -1}, counts,
                      best, best_us);
      if (rc || (d = coolest(s, w, n, h, x, 0)) < 0)
        continue;
      int y = -1;
      for (int i = 0; i < w->nhost[d]; i++) {
        int v = w->host[(size_t)d * w->slots + i];
        if (!pl_placement_has(w, v, h) &&
            (y < 0 || r->load[(size_t)d * E + v] < r->load[(size_t)d * E + y]))
          y = v;
      }
      if (y >= 0)
        rc = try_edit(s, w, &(or_edit){.op = OP_SWAP, .x = x, .a = h, .b = d, .y = y}, counts, best,
                      best_us);
    }
  }
  return rc;
}

/* The trials around the GPU a with the slowest all-to-all: each expert x
 * on it moved to, or swapped with each expert of, the two GPUs of each of
 * the round's nn nodes with the shortest all-to-all (the locality of the
 * sources decides the all-to-all: which GPU holds which expert, not only
 * how many). */
static int trials_slowest(or_state *s, const pl_placement *w, const int64_t *counts, int a,
                          int nn, or_edit *best, double *best_us) {
  int gpn = s->env.cluster.gpus_per_node, rc = PL_OK;
  for (int kn = 0; kn < nn && !rc; kn++) {
    int n = s->nsel[kn], d1 = -1, d2 = -1; /* the two shortest of node n but a (ties: lowest id) */
    for (int g = n * gpn; g < (n + 1) * gpn; g++) {
      if (g == a)
        continue;
      if (d1 < 0 || s->at[g] < s->at[d1]) {
        d2 = d1;
        d1 = g;
      } else if (d2 < 0 || s->at[g] < s->at[d2])
        d2 = g;
    }
    for (int k = 0; k < 2 && !rc; k++) {
      int d = k ? d2 : d1;
      for (int j = 0; d >= 0 && j < w->nhost[a] && !rc; j++) {
        int x = w->host[(size_t)a * w->slots + j];
        if (pl_placement_has(w, x, d))
          continue;
        if (w->nhost[d] < s->slots)
          rc = try_edit(s, w, &(or_edit){.op = OP_MOVE, .x = x, .a = a, .b = d, .y = -1}, counts,
                        best, best_us);
        for (int i = 0; i < w->nhost[d] && !rc; i++) {
          int y = w->host[(size_t)d * w->slots + i];
          if (!pl_placement_has(w, y, a))
            rc = try_edit(s, w, &(or_edit){.op = OP_SWAP, .x = x, .a = a, .b = d, .y = y}, counts,
                          best, best_us);
        }
      }
    }
  }
  return rc;
}

/* Every GPU of the round's nn nodes trading places with a, and every two
 * of those nodes trading places (up to OR_NODES nodes: a trade re-routes
 * two nodes' experts; the sources' locality again: the same sets of
 * experts, other GPUs). */
static int trials_trades(or_state *s, const pl_placement *w, const int64_t *counts, int a,
                         int nn, or_edit *best, double *best_us) {
  int gpn = s->env.cluster.gpus_per_node, nodes = s->env.cluster.gpus / gpn, rc = PL_OK;
  for (int kn = 0; kn < nn && !rc; kn++)
    for (int d = s->nsel[kn] * gpn; d < (s->nsel[kn] + 1) * gpn && !rc; d++)
      if (d != a)
        rc = try_edit(s, w, &(or_edit){.op = OP_GSWAP, .x = 0, .a = a, .b = d, .y = 0}, counts,
                      best, best_us);
  for (int kn = 0; kn < nn && nodes <= OR_NODES && !rc; kn++)
    for (int km = kn + 1; km < nn && !rc; km++)
      rc = try_edit(
          s, w, &(or_edit){.op = OP_NSWAP, .x = gpn, .a = s->nsel[kn], .b = s->nsel[km], .y = 0},
          counts, best, best_us);
  return rc;
}

/* One round's trials (r: w's routing): around the busiest GPU h
 * (trials_busiest), around the GPU with the slowest all-to-all
 * (trials_slowest, trials_trades), then every replicated expert's copy
 * on its busiest GPU but h dropped. */
static int polish_round(or_state *s, const pl_placement *w, const pl_routing *r,
                        const int64_t *counts, or_edit *best, double *best_us) {
  int G = s->env.cluster.gpus, E = s->env.experts, h, a;
  hot_gpus(s, r, &h, &a);
  int nn = round_nodes(s, h, a);
  int rc = trials_busiest(s, w, r, counts, h, nn, best, best_us);
  if (!rc)
    rc = trials_slowest(s, w, counts, a, nn, best, best_us);
  if (!rc)
    rc = trials_trades(s, w, counts, a, nn, best, best_us);
  for (int x = 0; x < E && !rc; x++) {
    if (w->nrep[x] < 2)
      continue;
    int b = -1;
    for (int i = 0; i < w->nrep[x]; i++) {
      int g = w->rep[(size_t)x * G + i];
      if (g != h && (b < 0 || s->gl[g] > s->gl[b]))
        b = g;
    }
    if (b >= 0)
      rc = try_edit(s, w, &(or_edit){.op = OP_DROP, .x = x, .a = b, .b = -1, .y = -1}, counts, best,
                    best_us);
  }
  return rc;
}

/* The whole neighbourhood of w, when it has at most FULL_MAX trials: every
 * replica moved to every GPU with a free slot and no copy of it, every
 * expert added to every such GPU, every two replicas of different
 * experts on different GPUs swapped, and every two GPUs trading places
 * (gpu_swap); first improvement (the first trial,
 * in that fixed order, that beats *best_us). Small layouts only (a few
 * GPUs, a few experts each): there the targeted trials of polish_round
 * stall on placements whose all-to-all one exchange elsewhere shortens. */
#define FULL_MAX 2048
static int polish_full(or_state *s, const pl_placement *w, const int64_t *counts, or_edit *best,
                       double *best_us) {
  int G = w->gpus, E = w->experts, S = w->slots, reps = 0, nfree = 0;
  for (int g = 0; g < G; g++) {
    reps += w->nhost[g];
    nfree += w->nhost[g] < s->slots;
  }
  if ((int64_t)reps * reps / 2 + (int64_t)(reps + E) * nfree + (int64_t)G * G / 2 > FULL_MAX)
    return PL_OK;
  double start = *best_us;
  int rc = PL_OK;
  for (int g = 0; g < G && !rc && !(*best_us < start); g++)
    for (int j = 0; j < w->nhost[g] && !rc && !(*best_us < start); j++) {
      int x = w->host[(size_t)g * S + j];
      for (int d = 0; d < G && !rc && !(*best_us < start); d++)
        if (d != g && w->nhost[d] < s->slots && !pl_placement_has(w, x, d))
          rc = try_edit(s, w, &(or_edit){.op = OP_MOVE, .x = x, .a = g, .b = d, .y = -1}, counts,
                        best, best_us);
    }
  for (int x = 0; x < E && !rc && !(*best_us < start); x++)
    for (int d = 0; d < G && !rc && !(*best_us < start); d++)
      if (w->nhost[d] < s->slots && !pl_placement_has(w, x, d))
        rc = try_edit(s, w, &(or_edit){.op = OP_ADD, .x = x, .a = -1, .b = d, .y = -1}, counts,
                      best, best_us);
  for (int g = 0; g < G && !rc && !(*best_us < start); g++)
    for (int j = 0; j < w->nhost[g] && !rc && !(*best_us < start); j++) {
      int x = w->host[(size_t)g * S + j];
      for (int d = g + 1; d < G && !rc && !(*best_us < start); d++)
        for (int i = 0; i < w->nhost[d] && !rc && !(*best_us < start); i++) {
          int y = w->host[(size_t)d * S + i];
          if (x != y && !pl_placement_has(w, x, d) && !pl_placement_has(w, y, g))
            rc = try_edit(s, w, &(or_edit){.op = OP_SWAP, .x = x, .a = g, .b = d, .y = y}, counts,
                          best, best_us);
        }
    }
  for (int g = 0; g < G && !rc && !(*best_us < start); g++)
    for (int d = g + 1; d < G && !rc && !(*best_us < start); d++)
      rc = try_edit(s, w, &(or_edit){.op = OP_GSWAP, .x = 0, .a = g, .b = d, .y = 0}, counts, best,
                    best_us);
  /* two such trades at once, a GPU's or a node's then a GPU's (a layout
   * mirrored across nodes is one node trade and a GPU trade away; neither
   * alone need pay), when there are at most FULL_MAX of them */
  int gpn = s->env.cluster.gpus_per_node, nodes = G / gpn;
  int64_t pairs = (int64_t)G * (G - 1) / 2, firsts = pairs + (int64_t)nodes * (nodes - 1) / 2;
  if (firsts * pairs > FULL_MAX)
    return rc;
  for (int f = 0; f < firsts && !rc && !(*best_us < start); f++) {
    or_edit e = {.op = OP_GSWAP};
    if (f < pairs) { /* the f-th pair (g, d), g < d, in row order */
      int k = f;
      e.a = 0;
      while (k >= G - 1 - e.a)
        k -= G - 1 - e.a++;
      e.b = e.a + 1 + k;
    } else {
      int k = (int)(f - pairs);
      e = (or_edit){.op = OP_NSWAP, .x = gpn, .a = 0, .b = 0, .y = 0, .a2 = 0, .b2 = 0};
      while (k >= nodes - 1 - e.a)
        k -= nodes - 1 - e.a++;
      e.b = e.a + 1 + k;
    }
    for (int g = 0; g < G && !rc && !(*best_us < start); g++)
      for (int d = g + 1; d < G && !rc && !(*best_us < start); d++) {
        e.a2 = g;
        e.b2 = d;
        rc = try_edit(s, w, &e, counts, best, best_us);
      }
  }
  return rc;
}

/* Local search under the exact cost (pl_route + pl_cost_layer) from w,
 * whose exact time is *us: up to `search` rounds (polish_round), each
 * taking its best trial when it lowers the time, stopping at the first
 * round that finds none. The greedy candidates end where the greedy's
 * estimate (even split of an expert's load over its replicas, uniform
 * sources) stops improving; the exact routing and cost can still gain
 * from a drop, an add, a move or a swap there (the small cases where
 * flexmoe, hierarchical eplb or smartmoe beat the candidates:
 * tests/placement/test_oracle_bound.c). w stays within the oracle's
 * slots. */
static int polish_best(or_state *s, pl_placement *w, const int64_t *counts, double *us) {
  int rc = PL_OK;
  pl_route_delta_forget(&s->ld); /* new counts, perhaps at the same address */
  for (int round = 0; round < s->polish && !rc; round++) {
    double now;
    if ((rc = exact_us(s, w, counts, &now)) != 0)
      return rc;
    memcpy(s->gl, s->r.gpu_load, (size_t)s->env.cluster.gpus * sizeof(int64_t));
    double lw_us;
    s->lw[0].known = s->lw[1].known = 0; /* edits of another w */
    if ((rc = pl_placement_copy(&s->lw[0].p, w)) ||
        (rc = pl_route(&s->lw[0].p, &s->env.cluster, counts, -1, &s->lr)) ||
        (rc = pl_cost_inc_full(&s->lc, &s->env.cluster, &s->env.model, &s->env.profile,
                               &s->lw[0].p, &s->lr, &lw_us)))
      return rc;
    assert(lw_us == now); /* the kept terms' total is pl_cost_layer's */
    or_edit best = {.op = -1};
    double best_us = now;
    if ((rc = polish_round(s, w, &s->r, counts, &best, &best_us)) != 0 ||
        (!(best_us < now) && (rc = polish_full(s, w, counts, &best, &best_us)) != 0))
      return rc;
    if (best.op < 0 || !(best_us < now))
      break;
    if ((rc = edit_apply(w, &best, s->sw)) != 0)
      return rc;
    *us = best_us;
  }
  return rc;
}

static int or_plan(void *state, int iteration, int layer, const pl_placement *current,
                   const int64_t *upcoming, pl_plan *plan) {
  or_state *s = state;
  const pl_env *env = &s->env;
  plan->changed = 0;
  if (!upcoming)
    return PL_OK;
  (void)iteration;
  pl_sum_sources(upcoming, env->cluster.gpus, env->experts, s->load);
  int rc;
  /* 0 current, 1 static, 2 greedy(current), 3 greedy(static), 4 greedy(eplb) */
  if ((rc = pl_placement_copy(&s->cand[0], current)) ||
      (rc = pl_placement_static(&s->cand[1])) ||
      (rc = pl_placement_copy(&s->cand[2], current)) || (rc = refine(s, &s->cand[2])))
    return rc;
  /* The greedy is deterministic: from the same start it ends in the same
   * place, so when the current placement is the static layout (the first
   * iterations, or a layer the oracle never changed) copy instead of
   * running it again. */
  if (pl_placement_equal(&s->cand[1], current))
    rc = pl_placement_copy(&s->cand[3], &s->cand[2]);
  else if (!(rc = pl_placement_static(&s->cand[3])))
    rc = refine(s, &s->cand[3]);
  if (rc || (rc = pl_eplb_layout(&s->cand[4], &env->cluster, s->load, s->eplb_slots, 0)) ||
      (rc = refine(s, &s->cand[4])))
    return rc;
  /* 5 greedy(eplb with the fewest slots, ceil(E/G) per GPU): few replica
   * groups per GPU, so little all-reduce (the start flexmoe's rebuild
   * uses; skipped when it is the EPLB start above) */
  int E = env->experts, G = env->cluster.gpus, gpn = env->cluster.gpus_per_node;
  int need = (E + G - 1) / G, nodes = G / gpn;
  int use[NCAND] = {1, 1, 1, 1, 1, need < s->eplb_slots, 1, 0, 0};
  if (use[5] && ((rc = pl_eplb_layout(&s->cand[5], &env->cluster, s->load, need, 0)) ||
                 (rc = refine(s, &s->cand[5]))))
    return rc;
  /* 6, 7: EPLB's layouts as they are (the greedy may leave them for a
   * worse one under the exact cost), global and hierarchical (one group of
   * contiguous experts per node, as eplb:mode=hierarchical without expert
   * groups), at the EPLB start's budget */
  if ((rc = pl_eplb_layout(&s->cand[C_EPLB_RAW], &env->cluster, s->load, s->eplb_slots, 0)))
    return rc;
  if (nodes > 1 && E % nodes == 0 && gpn * s->eplb_slots >= E / nodes &&
      s->eplb_slots <= E / nodes) { /* each GPU's copies from its node's group */
    if ((rc = pl_eplb_layout(&s->cand[C_HIER], &env->cluster, s->load, s->eplb_slots, nodes)))
      return rc;
    use[C_HIER] = 1;
  }
  double us[NCAND];
  int first = -1;
  for (int k = 0; k < C_POLISH; k++)
    if (use[k]) {
      if ((rc = exact_us(s, &s->cand[k], upcoming, &us[k])) != 0)
        return rc;
      if (first < 0 || us[k] < us[first])
        first = k;
    }
  /* 8: the fastest of them under the exact cost, polished */
  if (s->polish > 0) {
    us[C_POLISH] = us[first];
    if ((rc = pl_placement_copy(&s->cand[C_POLISH], &s->cand[first])) ||
        (rc = polish_best(s, &s->cand[C_POLISH], upcoming, &us[C_POLISH])))
      return rc;
    use[C_POLISH] = us[C_POLISH] < us[first];
  }
  /* each candidate judged net of its temporaries; one equal to an earlier
   * one is that one again (the same score: it never wins over it) */
  int best = 0, kept = 0;
  double best_score = INFINITY, best_us = 0, net[NCAND], lo = 0, hi = 0, vlo, vhi;
  for (int k = 0; k < NCAND; k++) {
    if (!use[k])
      continue;
    int j = 0;
    while (j < k && !(use[j] && pl_placement_equal(&s->cand[j], &s->cand[k])))
      j++;
    if (j < k)
      net[k] = net[j];
    else if ((rc = temps_net(s, layer, &s->cand[k], upcoming, &net[k], &vlo, &vhi)) != 0)
      return rc;
    if (us[k] - net[k] < best_score) {
      if (j == k && s->shadow && s->shadow_net) { /* its decision, in tg: kept in tb */
        temps_swap(&s->tb, &s->tg);
        kept = 1, lo = vlo, hi = vhi;
      }
      best_score = us[k] - net[k];
      best_us = us[k];
      best = k;
    }
  }
  if (kept)
    memo_put(s, layer, &s->tb, &s->cand[best], upcoming, lo, hi);
  s->lay_us[layer] = best_us;
  if (best == 0 || pl_placement_equal(&s->cand[best], current))
    return PL_OK;
  if ((rc = pl_plan_take_copy(plan, &s->cand[best])) != 0)
    return rc;
  plan->changed = 1;
  plan->uncharged = 1;
  plan->background = 0;
  return PL_OK;
}

/* shadow > 0: the layer's temporaries on the iteration's own counts, as
 * flexmoe's shadow decides them (pl_temps_decide, the same search, margin
 * and slots rule; the contract in pl_policy.h), their gradients' way back
 * charged beyond what the layers below hide (pl_grad_hide_us of the exact
 * times of the oracle's own last plans); or_plan's decision for the
 * placement it chose when every input is the same (or_memo). */
static int or_temporaries(void *state, int layer, const pl_placement *serving,
                          const pl_placement *current, const int64_t *counts, pl_temps *out) {
  const or_state *s = state;
  out->n = 0;
  if (!s->shadow)
    return PL_OK;
  double gh = pl_grad_hide_us(&s->env, s->lay_us, layer), lo, hi;
  int rc;
  if (memo_get(s, layer, serving, current, counts, gh, out, &rc))
    return rc;
  return decide(s, serving, current, counts, gh, out, NULL, &lo, &hi);
}

static const pl_param_desc or_params[] = {
    {"slots", "0", "replicas per GPU (0: the cluster's slots); 0 or ceil(E/G) to the GPU's slots"},
    {"max_steps", "0", "greedy steps per candidate (0: 8 x experts); 0 to 16777216"},
    {"search", "4", "rounds of local search under the exact cost from the best candidate (drops, adds, moves and swaps around the busiest GPU; 0: off); 0 to 1048576"},
    {"shadow", PL_STR(OR_SHADOW_DEFAULT), "1-4: each iteration, on its own gate counts, temporaries (weights copied for that iteration only) on top of the chosen placement, decided as flexmoe's shadow=1-4 decides them (pl_shadow.h) and charged by the engines as flexmoe's; 5: per layer and iteration the one of 3's and 4's predicted to save more; 0: off; 0 to 5"},
    {"shadow_net", "1", "shadow > 0: 1: each candidate placement is judged by its exact layer time less what its temporaries would save (their predicted gain less their cost), as flexmoe's shadow_net judges plans; 0: by its exact layer time alone; 0 or 1"},
    {NULL, NULL, NULL}};

const pl_policy_ops pl_policy_oracle_ops = {
    .name = "oracle",
    .summary = "clairvoyant reference: best placement for each iteration's real counts, moves free, with temporaries on those counts",
    .params = or_params,
    .clairvoyant = 1,
    .init = or_init,
    .observe = NULL,
    .plan = or_plan,
    .capacity = NULL,
    .fini = or_fini,
    .temporaries = or_temporaries,
};
