/*
 * pl_greedy.c - the cost-aware greedy planner of `flexmoe` and `oracle`
 * (model in pl_internal.h) and the tournament tree it keeps its maxima in.
 *
 * A step considers these candidates and takes the one with the lowest
 * objective, if it is lower than now (DESIGN.md's planner):
 *   expand   the hot expert (highest load per replica) gets a replica on the
 *            least-loaded GPU that has a free slot and no copy of it;
 *   swap     when the least-loaded GPU without the hot expert is full: the
 *            cold expert (lowest load per replica among those with more
 *            than one replica) is shrunk by one replica, on that GPU if it
 *            has one there, else elsewhere, and a third expert of the full
 *            GPU migrates into the freed slot, so the hot one can expand
 *            there (expand + shrink + migrate keep slot limits);
 *   migrate  an expert of the most loaded GPU moves to the least-loaded
 *            GPU with a free slot;
 *   relieve  on the most loaded GPU, a replicated expert drops its replica
 *            there, or one of its experts trades places with one of the
 *            least-loaded GPU's (the move that still works when every slot
 *            is taken);
 *   shrink   the cold expert loses a replica (saves all-reduce time).
 * Candidates are applied to the model, scored and reverted exactly (every
 * per-GPU quantity is recomputed from the placement, and the sums over
 * GPUs and nodes are kept in fixed point, never accumulated in floating
 * point, so reverting restores the same bits and the objective of a
 * placement does not depend on the path to it). A migration or a swap is
 * one operation that refreshes only the two nodes it touches, where a
 * remove and an add would refresh every replica of the expert twice.
 *
 * Trials. Most candidates are only scored: a trial journals every value it
 * overwrites (per GPU, per expert, the migration times, the spread sums)
 * and the revert restores them, instead of refreshing every touched GPU a
 * second time; it leaves the tournament trees alone, and the objective
 * takes each maximum from the untouched tree (its top, or when the top was
 * touched the best untouched entry, read without changing the tree) and the
 * journaled entries' new values. The same values in the same expressions:
 * the objective and every decision are the bits a refresh would give.
 */
#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "pl_internal.h"

/* Covered loads are kept in fixed point, 1/PL_QSCALE of a token (see
 * pl_greedy.cover): sums that go up and down by whole experts' loads come
 * back to the same value, and a node that holds every expert sends exactly
 * nothing over the NIC. */
#define PL_QSCALE 1024.0
/* The same for the sums of the spread term (pl_greedy.tq): 1/1024 us. */
#define PL_TSCALE 1024.0

/* Weight of the spread term in the objective (see pl_greedy_objective). */
#define PL_TIE 0.2

/* ---- tournament tree ---------------------------------------------------- */

static int seg_better(const pl_seg *s, int a, int b) {
  if (a < 0)
    return b;
  if (b < 0)
    return a;
  double va = s->v[a], vb = s->v[b];
  if (va == vb)
    return a < b ? a : b;
  return (s->max ? va > vb : va < vb) ? a : b;
}

int pl_seg_init(pl_seg *s, int n, const double *v, int max) {
  int P = 1;
  while (P < n)
    P <<= 1;
  s->t = pl_malloc(sizeof(int) * 2 * (size_t)P);
  if (!s->t)
    return PL_ENOMEM;
  s->n = n;
  s->P = P;
  s->max = max;
  s->v = v;
  for (int i = 0; i < P; i++)
    s->t[P + i] = i < n ? i : -1;
  for (int k = P - 1; k >= 1; k--)
    s->t[k] = seg_better(s, s->t[2 * k], s->t[2 * k + 1]);
  return PL_OK;
}

void pl_seg_fini(pl_seg *s) {
  if (s) {
    pl_free(s->t);
    s->t = NULL;
  }
}

void pl_seg_update(pl_seg *s, int i) {
  if (!s->t) /* not built yet: pl_seg_init will see the value */
    return;
  int k = (s->P + i) >> 1;
  for (; k >= 1; k >>= 1) {
    int old = s->t[k];
    s->t[k] = seg_better(s, s->t[2 * k], s->t[2 * k + 1]);
    /* the same winner, and not the element whose value changed: nothing
     * above can change either */
    if (s->t[k] == old && old != i)
      return;
  }
}

/* Only paths to changed winners above the best so far are walked: a
 * subtree's winner bounds its unchanged entries (the tree is the one of
 * the values before the changes), so one whose winner is unchanged
 * answers for its subtree, and one whose changed winner's old value does
 * not exceed the best cannot raise it. Depth-first with a stack of at
 * most one pending sibling per level. */
double pl_seg_max_unchanged(const pl_seg *t, const double *v, const pl_seg_changed *c,
                            double m) {
  int stack[2 * 32 + 2], sp = 0;
  stack[sp++] = 1;
  while (sp > 0) {
    int k = stack[--sp], w = t->t[k];
    if (w < 0)
      continue;
    if (c->stamp[w] != c->id) {
      if (v[w] > m)
        m = v[w];
    } else if (k < t->P && c->old[(size_t)c->pos[w] * c->stride] > m) {
      stack[sp++] = 2 * k + 1;
      stack[sp++] = 2 * k;
    }
  }
  return m;
}

/* ---- the model ---------------------------------------------------------- */

static int node_of(const pl_greedy *g, int gpu) { return gpu / g->gpn; }

/* Values per journaled GPU: sa2a and scomp of each scenario, comp, ar,
 * tok, kfree. */
static size_t jg_width(const pl_greedy *g) { return 2 * (size_t)g->K + 4; }

/* On trial, the first time GPU gpu's values are about to change: keep them. */
static void journal_gpu(pl_greedy *g, int gpu) {
  if (!g->trial || g->jg[gpu] == g->jid)
    return;
  g->jg[gpu] = g->jid;
  int i = g->njg++, K = g->K;
  g->jgl[i] = gpu;
  g->jgp[gpu] = i;
  double *v = g->jgv + (size_t)i * jg_width(g);
  for (int k = 0; k < K; k++) {
    v[k] = g->sa2a[(size_t)k * g->G + gpu];
    v[K + k] = g->scomp[(size_t)k * g->G + gpu];
  }
  v[2 * K] = g->comp[gpu];
  v[2 * K + 1] = g->ar[gpu];
  v[2 * K + 2] = g->tok[gpu];
  v[2 * K + 3] = g->kfree[gpu];
  g->jgq[i] = g->tq[gpu];
}

static void journal_mig(pl_greedy *g, int gpu) {
  if (!g->trial || g->jm[gpu] == g->jid)
    return;
  g->jm[gpu] = g->jid;
  g->jml[g->njm] = gpu;
  g->jmp[gpu] = g->njm;
  g->jmv[g->njm++] = g->migt[gpu];
}

static void journal_expert(pl_greedy *g, int e) {
  if (!g->trial || g->je[e] == g->jid)
    return;
  g->je[e] = g->jid;
  int i = g->nje++;
  g->jel[i] = e;
  double *v = g->jev + 4 * (size_t)i;
  v[0] = g->per[e];
  v[1] = g->ring[e];
  v[2] = g->khot[e];
  v[3] = g->kcold[e];
}

/* A trial starts: an empty journal, the spread sums kept. */
static void trial_begin(pl_greedy *g) {
  g->trial = 1;
  g->jid++;
  g->njg = g->njm = g->nje = 0;
  g->j_sum_t = g->sum_t;
  g->j_sq = g->sq;
}

/* The trial ends, its placement changes already undone: every journaled
 * value back. The trees were never touched, nor the committed ways of the
 * terms cache (pl_internal.h). */
static void trial_end(pl_greedy *g) {
  int K = g->K;
  for (int i = 0; i < g->njg; i++) {
    int gpu = g->jgl[i];
    const double *v = g->jgv + (size_t)i * jg_width(g);
    for (int k = 0; k < K; k++) {
      g->sa2a[(size_t)k * g->G + gpu] = v[k];
      g->scomp[(size_t)k * g->G + gpu] = v[K + k];
    }
    g->comp[gpu] = v[2 * K];
    g->ar[gpu] = v[2 * K + 1];
    g->tok[gpu] = v[2 * K + 2];
    g->kfree[gpu] = v[2 * K + 3];
    g->tq[gpu] = g->jgq[i];
  }
  for (int i = 0; i < g->njm; i++)
    g->migt[g->jml[i]] = g->jmv[i];
  for (int i = 0; i < g->nje; i++) {
    int e = g->jel[i];
    const double *v = g->jev + 4 * (size_t)i;
    g->per[e] = v[0];
    g->ring[e] = v[1];
    g->khot[e] = v[2];
    g->kcold[e] = v[3];
  }
  g->sum_t = g->j_sum_t;
  g->sq = g->j_sq;
  g->ndirty = 0;
  g->trial = 0;
}

/* A journal as top_of reads one tree's values in it: its entries' list
 * and where each one's value before the trial lies. */
typedef struct jview {
  pl_seg_changed c;
  const int *list;
  int n;
} jview;

/* The largest of v over the entries of max-tree t: its top, or on trial
 * the larger of the journaled entries' current values and the best entry
 * not journaled. The value a tree updated for the trial would give (ties
 * pick the same value, whatever the index). */
static double top_of(const pl_greedy *g, const pl_seg *t, const double *v, const jview *j) {
  int top = pl_seg_top(t);
  if (!g->trial || j->n == 0)
    return v[top];
  double m = v[j->list[0]];
  for (int i = 1; i < j->n; i++)
    if (v[j->list[i]] > m)
      m = v[j->list[i]];
  return pl_seg_max_unchanged(t, v, &j->c, m);
}

/* The per-GPU journal as top_of reads the value at offset off of its
 * rows (journal_gpu), or the migration journal (off < 0). */
static jview journal_view(const pl_greedy *g, int off) {
  if (off < 0)
    return (jview){.c = {.stamp = g->jm, .id = g->jid, .pos = g->jmp, .old = g->jmv, .stride = 1},
                   .list = g->jml, .n = g->njm};
  return (jview){.c = {.stamp = g->jg, .id = g->jid, .pos = g->jgp, .old = g->jgv + off,
                       .stride = jg_width(g)},
                 .list = g->jgl, .n = g->njg};
}

/* Ring all-reduce time of expert e's replica group, us (pl_cost's rule). */
static double ring_us(const pl_greedy *g, int e) {
  const pl_placement *p = g->p;
  int n = p->nrep[e];
  if (n < 2)
    return 0.0;
  const int *rep = p->rep + (size_t)e * p->gpus;
  int spans = node_of(g, rep[0]) != node_of(g, rep[n - 1]);
  double bw = spans ? g->c->inter_Bps / g->c->oversub : g->c->intra_Bps;
  double lat = spans ? g->c->inter_lat_s : g->c->intra_lat_s;
  return (2.0 * (n - 1) / n * g->grad_bytes / bw + 2.0 * (n - 1) * lat) * 1e6;
}

/* One all-to-all of a GPU with these token counts (pl_cost's rule), us. */
static double a2a_us(const pl_greedy *g, double intra, double inter) {
  const pl_cluster *c = g->c;
  double t = 0;
  if (intra > 0)
    t += c->intra_lat_s + intra * g->token_bytes / c->intra_Bps;
  if (inter > 0)
    t += c->inter_lat_s + inter * g->token_bytes / g->xbps;
  return t * 1e6;
}

/*
 * Expected routing of GPU `gpu` under uniform sources (each GPU sends L/G of
 * an expert's load L), locality first as pl_route: for expert e hosted on
 * gpu in node n, with c replicas in node n, r in all and k nodes holding
 * one, the replica computes
 *     L/G x gpn x (1/c + (N - k)/r)          (N nodes of gpn GPUs):
 * its own GPU's tokens, an even share of its node's GPUs without e (intra
 * in) and of the nodes without e (inter in). Out of the GPU go, over the
 * intra link, its tokens for experts its node holds elsewhere
 * ((cover_n - own) / G) and, over the NIC, those for experts its node lacks
 * ((total - cover_n) / G). The all-to-all takes max(in, out) on each link.
 * With one node this reduces to the even split L/r.
 */
/* Fills way w's terms of expert e for c replicas in the node (see
 * pl_greedy.terms), under e's current replica count and nodes. */
static void fill_terms(pl_greedy *g, int e, int w, int c_) {
  int N = g->G / g->gpn, K = g->K;
  double G = g->G, gpn = g->gpn;
  double c = c_, r = g->p->nrep[e], kk = g->knodes[e];
  double *t3 = g->terms + (((size_t)e * 2 + w) * (size_t)(g->gpn + 1) + c_) * 3 * K;
  for (int k = 0; k < K; k++) {
    double unit = g->load[(size_t)k * g->E + e] / G;
    double t = unit * gpn * (1.0 / c + (N - kk) / r);
    t3[3 * k] = pl_ffn_us(g->prof, t);
    t3[3 * k + 1] = unit * (gpn - c) / c;
    t3[3 * k + 2] = unit * (N - kk) * gpn / r;
  }
  g->tfill[((size_t)e * 2 + w) * (size_t)(g->gpn + 1) + c_] = 1;
}

/* Makes way w hold the terms of e's current replica count and nodes
 * (tag), none filled yet. */
static void claim_way(pl_greedy *g, int e, int w, int64_t tag) {
  g->ttag[2 * (size_t)e + w] = tag;
  memset(g->tfill + ((size_t)e * 2 + w) * (size_t)(g->gpn + 1), 0, (size_t)g->gpn + 1);
}

/* The terms [K][3] of a replica of e on a node holding c of its replicas,
 * filled if needed: from the committed way when it is e's current (r,
 * kk), else from the other; on trial a miss takes the other way, outside
 * one the committed way (which becomes the other when that one matches:
 * the trial that made it was applied). */
static const double *terms_of(pl_greedy *g, int e, int c) {
  int64_t tag = (int64_t)g->p->nrep[e] << 32 | g->knodes[e];
  int b = g->wbase[e], w = b;
  if (g->ttag[2 * (size_t)e + b] != tag) {
    w = 1 - b;
    if (g->ttag[2 * (size_t)e + w] != tag) {
      if (!g->trial)
        w = b;
      claim_way(g, e, w, tag);
    } else if (!g->trial) {
      g->wbase[e] = (unsigned char)w;
    }
  }
  size_t i = ((size_t)e * 2 + w) * (size_t)(g->gpn + 1) + c;
  if (!g->tfill[i])
    fill_terms(g, e, w, c);
  return g->terms + i * 3 * g->K;
}

/* A divisor d and, when d is a power of two, its reciprocal: x / d is
 * then x times it, the same bits (both are the one correctly rounded value
 * of the same real number) without a division. */
static pl_divisor divisor_of(double d) {
  int ex;
  return (pl_divisor){.d = d, .inv = frexp(d, &ex) == 0.5 ? 1.0 / d : 0.0};
}
static inline double div_by(const pl_divisor *v, double x) {
  return v->inv != 0.0 ? x * v->inv : x / v->d;
}

/* GPU gpu's values from the placement. */
static void refresh_gpu(pl_greedy *g, int gpu) {
  const pl_placement *p = g->p;
  const int *host = p->host + (size_t)gpu * p->slots;
  int nh = p->nhost[gpu], n = gpu / g->gpn, N = g->G / g->gpn;
  double tok = 0, comp = 0, ar = 0;
  const double **tp = g->tp;
  journal_gpu(g, gpu);
  for (int j = 0; j < nh; j++) {
    int e = host[j];
    tok += g->per[e];
    ar += g->ring[e];
    tp[j] = terms_of(g, e, g->cnt[(size_t)e * N + n]);
  }
  double a2a_mean = 0;
  for (int k = 0; k < g->K; k++) {
    const int64_t *Q = g->qload + (size_t)k * g->E;
    double sc = 0, iin = 0, xin = 0;
    int64_t own = 0;
    for (int j = 0; j < nh; j++) {
      const double *t3 = tp[j] + 3 * k;
      own += Q[host[j]];
      iin += t3[1];
      xin += t3[2];
      sc += t3[0];
    }
    int64_t cover = g->cover[(size_t)k * N + n];
    double iout = div_by(&g->qg, (double)(cover > own ? cover - own : 0));
    double xout = div_by(&g->qg, (double)(g->total[k] - cover));
    /* a tree is touched only where its value changed (it is consistent
     * with the unchanged one already), and never on trial (top_of) */
    double a2a = a2a_us(g, pl_fmax(iin, iout), pl_fmax(xin, xout));
    size_t kg = (size_t)k * g->G + gpu;
    a2a_mean += a2a;
    comp += sc;
    if (g->sa2a[kg] != a2a) {
      g->sa2a[kg] = a2a;
      if (!g->trial)
        pl_seg_update(&g->t_sa2a[k], gpu);
    }
    if (g->scomp[kg] != sc) {
      g->scomp[kg] = sc;
      if (!g->trial)
        pl_seg_update(&g->t_scomp[k], gpu);
    }
  }
  comp = div_by(&g->kdiv, comp);
  a2a_mean = div_by(&g->kdiv, a2a_mean);
  double t = comp * (1.0 + g->prof->bwd_ratio) + 4.0 * a2a_mean + ar;
  int64_t tq = pl_llround(t * PL_TSCALE), t0 = g->tq[gpu];
  g->sum_t += tq - t0;
  g->sq += (pl_i128)tq * tq - (pl_i128)t0 * t0;
  g->tq[gpu] = tq;
  g->comp[gpu] = comp;
  double kfree = p->nhost[gpu] < g->S ? tok : INFINITY;
  if (g->ar[gpu] != ar) {
    g->ar[gpu] = ar;
    if (!g->trial)
      pl_seg_update(&g->t_ar, gpu);
  }
  /* the trees that only choose candidates wait while one is on trial */
  if (g->tok[gpu] != tok) {
    g->tok[gpu] = tok;
    if (!g->trial) {
      pl_seg_update(&g->t_tok, gpu);
      pl_seg_update(&g->t_all, gpu);
    }
  }
  if (g->kfree[gpu] != kfree) {
    g->kfree[gpu] = kfree;
    if (!g->trial)
      pl_seg_update(&g->t_free, gpu);
  }
}

/* A node whose covered load changed: all its GPUs' outgoing traffic did.
 * At most two nodes change before a refresh (a swap touches two). */
static void mark_dirty(pl_greedy *g, int n) {
  for (int i = 0; i < g->ndirty; i++)
    if (g->dirty[i] == n)
      return;
  g->dirty[g->ndirty++] = n;
}

static void refresh_node(pl_greedy *g, int n) {
  for (int u = n * g->gpn; u < (n + 1) * g->gpn; u++)
    refresh_gpu(g, u);
}

static void refresh_dirty(pl_greedy *g) {
  for (int i = 0; i < g->ndirty; i++)
    refresh_node(g, g->dirty[i]);
  g->ndirty = 0;
}

/* Placement add/remove that keep the per-node replica counts, the number
 * of nodes holding each expert and each node's covered load in step, and
 * refresh every GPU whose expected routing changed. */
static int place_add(pl_greedy *g, int e, int gpu) {
  int rc = pl_placement_add(g->p, e, gpu);
  if (rc)
    return rc;
  journal_expert(g, e);
  int N = g->G / g->gpn, n = gpu / g->gpn;
  if (g->cnt[(size_t)e * N + n]++ == 0) {
    g->knodes[e]++;
    for (int k = 0; k < g->K; k++)
      g->cover[(size_t)k * N + n] += g->qload[(size_t)k * g->E + e];
    mark_dirty(g, n); /* its GPUs are refreshed with the expert's */
  }
  return PL_OK;
}

static int place_remove(pl_greedy *g, int e, int gpu) {
  int rc = pl_placement_remove(g->p, e, gpu);
  if (rc)
    return rc;
  journal_expert(g, e);
  int N = g->G / g->gpn, n = gpu / g->gpn;
  if (--g->cnt[(size_t)e * N + n] == 0) {
    g->knodes[e]--;
    for (int k = 0; k < g->K; k++)
      g->cover[(size_t)k * N + n] -= g->qload[(size_t)k * g->E + e];
    mark_dirty(g, n);
  }
  return PL_OK;
}

static void refresh_mig(pl_greedy *g, int gpu) {
  const int64_t *io = g->mio + 4 * (size_t)gpu;
  const pl_cluster *c = g->c;
  double t = 0;
  journal_mig(g, gpu);
  if (io[0] || io[1])
    t += (double)(io[0] > io[1] ? io[0] : io[1]) / c->intra_Bps + c->intra_lat_s;
  if (io[2] || io[3])
    t += (double)(io[2] > io[3] ? io[2] : io[3]) / (c->inter_Bps / c->oversub) +
         c->inter_lat_s;
  g->migt[gpu] = t * 1e6;
  if (!g->trial)
    pl_seg_update(&g->t_mig, gpu);
}

static void refresh_expert_keys(pl_greedy *g, int e) {
  int n = g->p->nrep[e];
  journal_expert(g, e);
  g->per[e] = n ? g->mload[e] / n : 0.0;
  g->ring[e] = ring_us(g, e);
  g->khot[e] = n < g->G ? g->per[e] : -INFINITY;
  g->kcold[e] = n > 1 ? g->per[e] : INFINITY;
  if (!g->trial) {
    pl_seg_update(&g->t_hot, e);
    pl_seg_update(&g->t_cold, e);
  }
}

/* Expert e's replica set changed (extra: a GPU that lost it, or -1): its
 * GPUs, and all GPUs of a node whose covered load changed. */
static void refresh_replicas(pl_greedy *g, int e) {
  const int *rep = g->p->rep + (size_t)e * g->G;
  for (int i = 0; i < g->p->nrep[e]; i++)
    refresh_gpu(g, rep[i]);
}

static void refresh_expert(pl_greedy *g, int e, int extra) {
  refresh_expert_keys(g, e);
  refresh_replicas(g, e);
  if (extra >= 0)
    refresh_gpu(g, extra);
  refresh_dirty(g);
}

/*
 * After replicas moved between GPUs of nodes a and b (the experts' replica
 * counts unchanged; kn0 / ring0: their node counts and rings before): a
 * replica's model depends on the expert's load per replica, its replica
 * count in the replica's node, the number of nodes holding it and its
 * ring, and the node's covered load. Only the first two nodes' counts and
 * covers changed, so only their GPUs (the two ends included) change, unless
 * an expert now spans another number of nodes or its ring changed: then
 * all its replicas do. A migration of an expert with r replicas costs
 * O(gpn) refreshes instead of the O(r) twice of a remove and an add.
 */
static void refresh_moved(pl_greedy *g, const int *es, const int *kn0, const double *ring0,
                          int ne, int a, int b) {
  for (int i = 0; i < ne; i++) {
    int e = es[i];
    refresh_expert_keys(g, e);
    if (g->knodes[e] != kn0[i] || g->ring[e] != ring0[i])
      refresh_replicas(g, e);
  }
  refresh_node(g, a);
  if (b != a)
    refresh_node(g, b);
  g->ndirty = 0; /* the dirty nodes are a and b */
}

static void account_bytes(pl_greedy *g, int from, int to, int sign) {
  int inter = node_of(g, from) != node_of(g, to);
  g->mio[4 * (size_t)from + 2 * inter] += sign * g->move_bytes;
  g->mio[4 * (size_t)to + 2 * inter + 1] += sign * g->move_bytes;
}

static void account(pl_greedy *g, int from, int to, int sign) {
  account_bytes(g, from, to, sign);
  refresh_mig(g, from);
  refresh_mig(g, to);
}

/* Where a new replica of e on `to` is copied from: a replica on the same
 * node first, then the one sending the fewest bytes so far (ties: the lowest
 * GPU id), as pl_placement_diff spreads copies over the old replicas. */
static int copy_source(const pl_greedy *g, int e, int to) {
  const int *rep = g->p->rep + (size_t)e * g->G;
  int best = -1, near = 0;
  int64_t best_out = 0;
  for (int i = 0; i < g->p->nrep[e]; i++) {
    int s = rep[i], same = node_of(g, s) == node_of(g, to);
    int64_t out = g->mio[4 * (size_t)s] + g->mio[4 * (size_t)s + 2];
    if (best < 0 || same > near || (same == near && out < best_out)) {
      best = s;
      near = same;
      best_out = out;
    }
  }
  return best;
}

typedef struct op {
  int kind; /* OP_REMOVE, OP_ADD, OP_MOVE or OP_SWAP */
  int e, gpu, src; /* add: e onto gpu, copied from src (-1: no copy); remove: e
                    * from gpu; move: e from src to gpu; swap: e from src to
                    * gpu and e2 from gpu to src */
  int e2;
} op;
enum { OP_REMOVE, OP_ADD, OP_MOVE, OP_SWAP };

/* Moves e from a to b in the placement (and e2 from b to a when e2 >= 0),
 * all or nothing; the model is refreshed by the caller. */
static int place_moves(pl_greedy *g, int e, int a, int b, int e2) {
  int rc = place_remove(g, e, a);
  if (rc)
    return rc;
  if (e2 >= 0 && (rc = place_remove(g, e2, b)) != 0) {
    place_add(g, e, a);
    return rc;
  }
  if ((rc = place_add(g, e, b)) != 0) {
    if (e2 >= 0)
      place_add(g, e2, b);
    place_add(g, e, a);
    return rc;
  }
  if (e2 >= 0 && (rc = place_add(g, e2, a)) != 0) {
    place_remove(g, e, b);
    place_add(g, e2, b);
    place_add(g, e, a);
    return rc;
  }
  return PL_OK;
}

/* A move (e2 < 0) or swap between a and b, with its copies accounted
 * (sign +1) or taken back (-1). */
static int do_moves(pl_greedy *g, int e, int a, int b, int e2, int sign) {
  int es[2] = {e, e2}, ne = e2 >= 0 ? 2 : 1, kn0[2];
  double ring0[2];
  for (int i = 0; i < ne; i++) {
    kn0[i] = g->knodes[es[i]];
    ring0[i] = g->ring[es[i]];
  }
  int rc = place_moves(g, e, a, b, e2);
  if (!rc) {
    /* the copies: a -> b, and b -> a for a swap (taken back: the same) */
    account(g, sign > 0 ? a : b, sign > 0 ? b : a, sign);
    if (e2 >= 0)
      account(g, sign > 0 ? b : a, sign > 0 ? a : b, sign);
  }
  refresh_moved(g, es, kn0, ring0, ne, node_of(g, a), node_of(g, b));
  return rc;
}

static int do_op(pl_greedy *g, const op *o) {
  int rc;
  switch (o->kind) {
  case OP_ADD:
    if ((rc = place_add(g, o->e, o->gpu)) != 0)
      return rc;
    if (o->src >= 0)
      account(g, o->src, o->gpu, +1);
    refresh_expert(g, o->e, -1);
    return PL_OK;
  case OP_REMOVE:
    if ((rc = place_remove(g, o->e, o->gpu)) != 0)
      return rc;
    refresh_expert(g, o->e, o->gpu);
    return PL_OK;
  default:
    return do_moves(g, o->e, o->src, o->gpu, o->kind == OP_SWAP ? o->e2 : -1, +1);
  }
}

static void undo_op(pl_greedy *g, const op *o) {
  switch (o->kind) {
  case OP_ADD:
    place_remove(g, o->e, o->gpu);
    if (o->src >= 0)
      account(g, o->src, o->gpu, -1);
    refresh_expert(g, o->e, o->gpu);
    break;
  case OP_REMOVE:
    place_add(g, o->e, o->gpu);
    refresh_expert(g, o->e, -1);
    break;
  default: /* the same moves backwards */
    do_moves(g, o->e, o->gpu, o->src, o->kind == OP_SWAP ? o->e2 : -1, -1);
  }
}

/* undo_op on trial: the placement and the integer state (replica counts
 * per node, covers, bytes moved) step back; the values come back from the
 * journal (trial_end). */
static void trial_undo_op(pl_greedy *g, const op *o) {
  switch (o->kind) {
  case OP_ADD:
    place_remove(g, o->e, o->gpu);
    if (o->src >= 0)
      account_bytes(g, o->src, o->gpu, -1);
    break;
  case OP_REMOVE:
    place_add(g, o->e, o->gpu);
    break;
  default: {
    int e2 = o->kind == OP_SWAP ? o->e2 : -1;
    place_moves(g, o->e, o->gpu, o->src, e2);
    account_bytes(g, o->src, o->gpu, -1);
    if (e2 >= 0)
      account_bytes(g, o->gpu, o->src, -1);
  }
  }
  g->ndirty = 0;
}

/* Applies ops; on success leaves them applied and returns the objective,
 * else reverts and returns +inf. keep = 0 reverts in any case: a trial
 * (see the file's head), during which the trees that only choose
 * candidates (t_tok, t_free, t_all, t_hot, t_cold) are not updated either:
 * their values change and come back to the same bits. */
static double try_ops(pl_greedy *g, const op *ops, int n, int keep) {
  if (!keep)
    trial_begin(g);
  int done = 0;
  for (; done < n; done++)
    if (do_op(g, &ops[done]) != 0)
      break;
  double j = done == n ? pl_greedy_objective(g) : INFINITY;
  if (!keep) {
    for (int k = done - 1; k >= 0; k--)
      trial_undo_op(g, &ops[k]);
    trial_end(g);
  } else if (done < n) {
    for (int k = done - 1; k >= 0; k--)
      undo_op(g, &ops[k]);
  }
  return j;
}

/* g's arrays for its sizes (G, E, K, gpn, the placement's slots), the
 * blocks carved into their parts; PL_ENOMEM when one cannot be had (the
 * caller finishes g). */
static int greedy_alloc(pl_greedy *g, int slots) {
  size_t G = (size_t)g->G, E = (size_t)g->E, K = (size_t)g->K;
  g->tok = pl_calloc(G * 5, sizeof(double));
  g->mio = pl_calloc(G * 5, sizeof(int64_t));
  g->per = pl_calloc(E * 5, sizeof(double));
  size_t N = G / (size_t)g->gpn;
  g->sa2a = pl_calloc(K * G * 2, sizeof(double));
  g->t_sa2a = pl_calloc(K * 2, sizeof(pl_seg));
  g->cnt = pl_calloc(E * N + E, sizeof(int));
  g->cover = pl_calloc(K * N + K + K * E, sizeof(int64_t));
  size_t C = (size_t)g->gpn + 1;
  /* not zeroed: an entry is read only after fill_terms wrote it (tfill) */
  g->terms = pl_malloc(E * 2 * C * K * 3 * sizeof(double));
  g->ttag = pl_malloc(E * 2 * sizeof(int64_t));
  g->tfill = pl_calloc(E * 2 * C + E, 1);
  g->tp = pl_malloc((size_t)slots * sizeof(double *));
  /* the journal: stamps [2G + E] zero (jid starts at 1), lists and values */
  g->jg = pl_calloc(2 * G + E, sizeof(uint64_t));
  g->jgl = pl_malloc((4 * G + E) * sizeof(int));
  g->jgv = pl_malloc((G * jg_width(g) + G + 4 * E) * sizeof(double));
  g->jgq = pl_malloc(G * sizeof(int64_t));
  if (!g->tok || !g->mio || !g->per || !g->sa2a || !g->t_sa2a || !g->cnt ||
      !g->cover || !g->terms || !g->ttag || !g->tfill || !g->tp || !g->jg ||
      !g->jgl || !g->jgv || !g->jgq)
    return PL_ENOMEM;
  g->comp = g->tok + G;
  g->ar = g->tok + 2 * G;
  g->migt = g->tok + 3 * G;
  g->kfree = g->tok + 4 * G;
  g->tq = g->mio + 4 * G;
  g->ring = g->per + E;
  g->khot = g->per + 2 * E;
  g->kcold = g->per + 3 * E;
  g->mload = g->per + 4 * E;
  g->scomp = g->sa2a + K * G;
  g->t_scomp = g->t_sa2a + K;
  g->knodes = g->cnt + E * N;
  g->total = g->cover + K * N;
  g->qload = g->total + K;
  g->wbase = g->tfill + E * 2 * C;
  for (size_t i = 0; i < 2 * E; i++)
    g->ttag[i] = -1; /* no way holds terms yet */
  g->jm = g->jg + G;
  g->je = g->jm + G;
  g->jml = g->jgl + G;
  g->jel = g->jml + G;
  g->jgp = g->jel + E;
  g->jmp = g->jgp + G;
  g->jmv = g->jgv + G * jg_width(g);
  g->jev = g->jmv + G;
  return PL_OK;
}

/* The loads' sums over p: each scenario's quantised loads, each expert's
 * nodes and the load each node covers, each scenario's total, each
 * expert's mean load over the scenarios. */
static void greedy_sums(pl_greedy *g, const pl_placement *p, const double *load) {
  size_t G = (size_t)g->G, E = (size_t)g->E, K = (size_t)g->K, N = G / (size_t)g->gpn;
  for (size_t i = 0; i < K * E; i++)
    g->qload[i] = llround(load[i] * PL_QSCALE);
  for (size_t e = 0; e < E; e++) {
    const int *rep = p->rep + e * G;
    for (int i = 0; i < p->nrep[e]; i++)
      if (g->cnt[e * N + (size_t)(rep[i] / g->gpn)]++ == 0) {
        g->knodes[e]++;
        for (size_t k = 0; k < K; k++)
          g->cover[k * N + (size_t)(rep[i] / g->gpn)] += g->qload[k * E + e];
      }
    for (size_t k = 0; k < K; k++)
      g->total[k] += g->qload[k * E + e];
  }
  for (size_t e = 0; e < E; e++) {
    double sum = 0;
    for (size_t k = 0; k < K; k++)
      sum += load[k * E + e];
    g->mload[e] = sum / (double)K;
  }
}

/* The keys of every expert and GPU, then the trees over them in O(G + E);
 * nonzero when a tree cannot be made. */
static int greedy_trees(pl_greedy *g) {
  for (int e = 0; e < g->E; e++)
    refresh_expert_keys(g, e);
  for (int u = 0; u < g->G; u++) {
    refresh_gpu(g, u);
    refresh_mig(g, u);
  }
  size_t G = (size_t)g->G;
  int rc = 0;
  for (size_t k = 0; k < (size_t)g->K; k++) {
    rc |= pl_seg_init(&g->t_sa2a[k], g->G, g->sa2a + k * G, 1);
    rc |= pl_seg_init(&g->t_scomp[k], g->G, g->scomp + k * G, 1);
  }
  rc |= pl_seg_init(&g->t_tok, g->G, g->tok, 1);
  rc |= pl_seg_init(&g->t_ar, g->G, g->ar, 1);
  rc |= pl_seg_init(&g->t_mig, g->G, g->migt, 1);
  rc |= pl_seg_init(&g->t_free, g->G, g->kfree, 0);
  rc |= pl_seg_init(&g->t_all, g->G, g->tok, 0);
  rc |= pl_seg_init(&g->t_hot, g->E, g->khot, 1);
  rc |= pl_seg_init(&g->t_cold, g->E, g->kcold, 0);
  return rc;
}

int pl_greedy_init(pl_greedy *g, const pl_cluster *c, const pl_model *m,
                   const pl_profile *prof, pl_placement *p, const double *load,
                   int scenarios, int S, double mig_weight) {
  memset(g, 0, sizeof(*g));
  if (S < 1 || S > p->slots || scenarios < 1)
    return PL_EINVAL;
  g->c = c;
  g->m = m;
  g->prof = prof;
  g->E = p->experts;
  g->G = p->gpus;
  g->K = scenarios;
  g->S = S;
  g->gpn = c->gpus_per_node;
  g->mig_weight = mig_weight;
  g->mig_lin = 1.0;
  g->mig_free_us = INFINITY;
  g->p = p;
  g->load = load;
  g->token_bytes = (double)pl_token_bytes(m);
  g->grad_bytes = (double)pl_expert_params(m) * m->bytes_per_elem;
  g->move_bytes = pl_expert_move_bytes(m);
  g->xbps = c->inter_Bps / c->oversub;
  g->qg = divisor_of(PL_QSCALE * g->G);
  g->kdiv = divisor_of(g->K);
  if (greedy_alloc(g, p->slots)) {
    pl_greedy_fini(g);
    return PL_ENOMEM;
  }
  greedy_sums(g, p, load);
  /* values first, then the trees are built over them */
  if (greedy_trees(g)) {
    pl_greedy_fini(g);
    return PL_ENOMEM;
  }
  return PL_OK;
}

void pl_greedy_fini(pl_greedy *g) {
  if (!g)
    return;
  if (g->t_sa2a)
    for (int k = 0; k < 2 * g->K; k++)
      pl_seg_fini(&g->t_sa2a[k]);
  pl_free(g->t_sa2a);
  pl_free(g->sa2a);
  pl_free(g->cnt);
  pl_free(g->cover);
  pl_free(g->terms);
  pl_free(g->ttag);
  pl_free(g->tfill);
  pl_free(g->tp);
  pl_free(g->jg);
  pl_free(g->jgl);
  pl_free(g->jgv);
  pl_free(g->jgq);
  pl_free(g->tok);
  pl_free(g->mio);
  pl_free(g->per);
  pl_seg_fini(&g->t_tok);
  pl_seg_fini(&g->t_ar);
  pl_seg_fini(&g->t_mig);
  pl_seg_fini(&g->t_free);
  pl_seg_fini(&g->t_all);
  pl_seg_fini(&g->t_hot);
  pl_seg_fini(&g->t_cold);
  memset(g, 0, sizeof(*g));
}

/* The maxima the objective reads (top_of: also on trial). */
static double max_scomp(const pl_greedy *g, int k) {
  jview j = journal_view(g, g->K + k);
  return top_of(g, &g->t_scomp[k], g->scomp + (size_t)k * g->G, &j);
}
static double max_sa2a(const pl_greedy *g, int k) {
  jview j = journal_view(g, k);
  return top_of(g, &g->t_sa2a[k], g->sa2a + (size_t)k * g->G, &j);
}

double pl_greedy_layer_us(const pl_greedy *g) {
  double sum = 0;
  for (int k = 0; k < g->K; k++)
    sum += max_scomp(g, k) * (1.0 + g->prof->bwd_ratio) + 4.0 * max_sa2a(g, k);
  jview j = journal_view(g, 2 * g->K + 1);
  double ar = top_of(g, &g->t_ar, g->ar, &j);
  return sum / g->K + ar + 2.0 * g->prof->nonmoe_us;
}

double pl_greedy_migration_us(const pl_greedy *g) {
  jview j = journal_view(g, -1);
  return top_of(g, &g->t_mig, g->migt, &j);
}

double pl_greedy_alltoall_us(const pl_greedy *g) {
  double sum = 0;
  for (int k = 0; k < g->K; k++)
    sum += 4.0 * max_sa2a(g, k);
  return sum / g->K;
}

void pl_greedy_set_migration(pl_greedy *g, const int64_t *base, double lin, double free_us) {
  g->mig_lin = lin;
  g->mig_free_us = free_us;
  if (!base)
    return;
  for (int gpu = 0; gpu < g->G; gpu++) {
    const int64_t *b = base + 4 * (size_t)gpu;
    if (!(b[0] | b[1] | b[2] | b[3]))
      continue;
    for (int j = 0; j < 4; j++)
      g->mio[4 * (size_t)gpu + j] += b[j];
    refresh_mig(g, gpu);
  }
}

/* The objective's migration term (before mig_weight). */
static double mig_term(const pl_greedy *g) {
  double t = pl_greedy_migration_us(g);
  return g->mig_lin * t + fmax(0.0, t - g->mig_free_us);
}

/* The max-based layer time is flat while several GPUs are near the
 * maximum: no single step lowers it and a pure max objective stops there.
 * The spread term sum(t_g^2) / sum(t_g) over the GPUs' estimated times t_g
 * (compute + all-to-all + all-reduce) is the load-weighted mean GPU time:
 * it falls whenever a busy GPU is relieved, so with weight 0.2 it lets the
 * greedy walk off such plateaus (tuned on the real traces: 0.1 to 0.5 give
 * the same quality, 0 is clearly worse at 64 GPUs). */
double pl_greedy_objective(const pl_greedy *g) {
  double spread = g->sum_t > 0 ? (double)g->sq / ((double)g->sum_t * PL_TSCALE) : 0;
  return pl_greedy_layer_us(g) + g->mig_weight * mig_term(g) + PL_TIE * spread;
}

double pl_greedy_balance(const pl_greedy *g) {
  double sum = 0;
  for (int u = 0; u < g->G; u++)
    sum += g->tok[u];
  if (!(sum > 0))
    return 1.0;
  return g->tok[pl_seg_top(&g->t_tok)] * g->G / sum;
}

/* Least-loaded GPU in tree t (t_free over kfree, or t_all over tok) that
 * does not host e, or -1. Masking e's GPUs in tok leaves t_tok alone: it
 * is not read meanwhile, and the values come back. */
static int least_without(pl_greedy *g, pl_seg *t, double *key, int e) {
  /* the common case, the least-loaded GPU lacks e: it is the answer, as the
   * masked search or the scan below would find (same ties: lowest index) */
  int top = pl_seg_top(t);
  if (!(key[top] < INFINITY))
    return -1;
  if (!pl_placement_has(g->p, e, top))
    return top;
  const int *rep = g->p->rep + (size_t)e * g->G;
  int n = g->p->nrep[e];
  double saved[64];
  int masked = n < 64 ? n : 0;
  int best;
  if (masked || n == 0) {
    for (int i = 0; i < masked; i++) {
      saved[i] = key[rep[i]];
      key[rep[i]] = INFINITY;
      pl_seg_update(t, rep[i]);
    }
    best = pl_seg_top(t);
    for (int i = masked - 1; i >= 0; i--) {
      key[rep[i]] = saved[i];
      pl_seg_update(t, rep[i]);
    }
  } else { /* many replicas: scan */
    best = -1;
    for (int u = 0; u < g->G; u++)
      if (key[u] < INFINITY && !pl_placement_has(g->p, e, u) &&
          (best < 0 || key[u] < key[best]))
        best = u;
  }
  if (best >= 0 && (!(key[best] < INFINITY) || pl_placement_has(g->p, e, best)))
    return -1;
  return best;
}

#define MAX_OPS 4

/* Keeps the best candidate seen so far. */
typedef struct cand {
  op ops[MAX_OPS];
  int n;
  double j;
} cand;

static void consider(pl_greedy *g, cand *best, const op *ops, int n) {
  double j = try_ops(g, ops, n, 0);
  if (j < best->j) {
    best->j = j;
    best->n = n;
    memcpy(best->ops, ops, sizeof(op) * (size_t)n);
  }
}

/* Lightest expert (load per replica) on gpu that is not `a` and not on gpu
 * `b`, or -1. */
static int lightest_on(const pl_greedy *g, int gpu, int a, int b) {
  const int *host = g->p->host + (size_t)gpu * g->p->slots;
  int best = -1;
  for (int j = 0; j < g->p->nhost[gpu]; j++) {
    int x = host[j];
    if (x == a || pl_placement_has(g->p, x, b))
      continue;
    if (best < 0 || g->per[x] < g->per[best])
      best = x;
  }
  return best;
}

static void candidates(pl_greedy *g, cand *best) {
  int hot = pl_seg_top(&g->t_hot);
  int cold = pl_seg_top(&g->t_cold);
  if (!(g->khot[hot] > -INFINITY))
    hot = -1;
  if (!(g->kcold[cold] < INFINITY))
    cold = -1;
  if (hot >= 0) {
    /* expand onto the least-loaded GPU with a free slot */
    int f = least_without(g, &g->t_free, g->kfree, hot);
    if (f >= 0) {
      op o[1] = {{OP_ADD, hot, f, copy_source(g, hot, f), -1}};
      consider(g, best, o, 1);
    }
    /* expand onto the least-loaded GPU overall, making room there */
    int a = least_without(g, &g->t_all, g->tok, hot);
    if (a >= 0 && a != f && g->p->nhost[a] >= g->S && cold >= 0 && cold != hot) {
      if (pl_placement_has(g->p, cold, a)) {
        op o[2] = {{OP_REMOVE, cold, a, -1, -1}, {OP_ADD, hot, a, copy_source(g, hot, a), -1}};
        consider(g, best, o, 2);
      } else {
        const int *rep = g->p->rep + (size_t)cold * g->G;
        int n = g->p->nrep[cold] < 8 ? g->p->nrep[cold] : 8;
        for (int i = 0; i < n; i++) {
          int cgpu = rep[i];
          int x = lightest_on(g, a, hot, cgpu);
          if (x < 0)
            continue;
          op o[3] = {{OP_REMOVE, cold, cgpu, -1, -1},
                     {OP_MOVE, x, cgpu, a, -1},
                     {OP_ADD, hot, a, copy_source(g, hot, a), -1}};
          consider(g, best, o, 3);
        }
      }
    }
  }
  /* migrate an expert off the most loaded GPU */
  int mx = pl_seg_top(&g->t_tok);
  const int *host = g->p->host + (size_t)mx * g->p->slots;
  int nh = g->p->nhost[mx];
  int hosted[64];
  if (nh > 64)
    nh = 64;
  memcpy(hosted, host, sizeof(int) * (size_t)nh);
  for (int j = 0; j < nh; j++) {
    int y = hosted[j];
    int f = least_without(g, &g->t_free, g->kfree, y);
    if (f < 0 || f == mx)
      continue;
    op o[1] = {{OP_MOVE, y, f, mx, -1}};
    consider(g, best, o, 1);
  }
  /* on the most loaded GPU: shrink a replicated expert there, or swap one of
   * its experts with one of the least-loaded GPU's */
  int mn = pl_seg_top(&g->t_all);
  const int *mhost = g->p->host + (size_t)mn * g->p->slots;
  int nl = g->p->nhost[mn] < 64 ? g->p->nhost[mn] : 64;
  int light[64];
  memcpy(light, mhost, sizeof(int) * (size_t)nl);
  for (int j = 0; j < nh; j++) {
    int y = hosted[j];
    if (g->p->nrep[y] > 1) {
      op o[1] = {{OP_REMOVE, y, mx, -1, -1}};
      consider(g, best, o, 1);
    }
    if (mn == mx || pl_placement_has(g->p, y, mn))
      continue;
    for (int k = 0; k < nl; k++) {
      int z = light[k];
      if (pl_placement_has(g->p, z, mx))
        continue;
      op o[1] = {{OP_SWAP, y, mn, mx, z}};
      consider(g, best, o, 1);
    }
  }
  /* shrink the cold expert */
  if (cold >= 0) {
    const int *rep = g->p->rep + (size_t)cold * g->G;
    int n = g->p->nrep[cold] < 8 ? g->p->nrep[cold] : 8;
    int reps[8];
    memcpy(reps, rep, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
      op o[1] = {{OP_REMOVE, cold, reps[i], -1, -1}};
      consider(g, best, o, 1);
    }
  }
}

int pl_greedy_run(pl_greedy *g, int max_steps) {
  g->steps = 0;
  for (int s = 0; s < max_steps; s++) {
    double now = pl_greedy_objective(g);
    cand best = {.n = 0, .j = INFINITY};
    candidates(g, &best);
    if (!(best.j < now - 1e-9 * fabs(now)))
      break;
    if (!(try_ops(g, best.ops, best.n, 1) < INFINITY))
      return PL_EINVARIANT;
    g->steps++;
  }
  return PL_OK;
}
