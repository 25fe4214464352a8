/*
 * pl_cost.c - analytical cost model (see pl_cost.h for the formulas).
 */
#include "placement/pl_cost.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "pl_internal.h"

int64_t pl_expert_params(const pl_model *m) {
  return 2 * (int64_t)m->d_model * (int64_t)m->d_ff;
}

int64_t pl_expert_move_bytes(const pl_model *m) {
  return (int64_t)llround((double)pl_expert_params(m) *
                          (m->bytes_per_elem + m->optimizer_bytes_per_param));
}

int64_t pl_expert_weight_bytes(const pl_model *m) {
  return pl_expert_params(m) * (int64_t)m->bytes_per_elem;
}

int64_t pl_token_bytes(const pl_model *m) {
  return (int64_t)m->d_model * m->bytes_per_elem;
}

int pl_profile_check(const pl_profile *p) {
  if (!p || p->npoints < 1 || !p->tokens || !p->us || !(p->bwd_ratio > 0) ||
      p->nonmoe_us < 0)
    return PL_EINVAL;
  for (int i = 0; i < p->npoints; i++) {
    if (!(p->tokens[i] > 0) || !(p->us[i] >= 0))
      return PL_EINVAL;
    if (i && !(p->tokens[i] > p->tokens[i - 1]))
      return PL_EINVAL;
  }
  return PL_OK;
}

double pl_ffn_us(const pl_profile *p, double tokens) {
  if (tokens <= 0)
    return 0.0;
  int n = p->npoints;
  if (n == 1 || tokens <= p->tokens[0])
    return n == 1 ? p->us[0] * fmax(1.0, tokens / p->tokens[0]) : p->us[0];
  int i = 1;
  while (i < n - 1 && tokens > p->tokens[i])
    i++;
  double t0 = p->tokens[i - 1], t1 = p->tokens[i];
  double u0 = p->us[i - 1], u1 = p->us[i];
  double v = u0 + (u1 - u0) * (tokens - t0) / (t1 - t0);
  return v > 0 ? v : 0.0;
}

/* GPU g's time of one all-to-all, s, from the wire sums h (4 x G: intra
 * out, intra in, inter out, inter in): each link takes the larger of its
 * out and in bytes. */
static double gpu_alltoall_s(const pl_cluster *c, const int64_t *h, int g, int64_t token_bytes) {
  int G = c->gpus;
  int64_t out_in = h[g], in_in = h[G + g], out_x = h[2 * G + g], in_x = h[3 * G + g];
  double t = 0;
  int64_t intra = out_in > in_in ? out_in : in_in;
  int64_t inter = out_x > in_x ? out_x : in_x;
  if (intra)
    t += c->intra_lat_s + (double)(intra * token_bytes) / c->intra_Bps;
  if (inter)
    t += c->inter_lat_s + (double)(inter * token_bytes) / (c->inter_Bps / c->oversub);
  return t;
}

/* One all-to-all (dispatch or combine) as the slowest GPU sees it, from
 * the per-GPU wire sums (pl_routing_wire_sums: real tokens, or the padded
 * buffers of a capacity routing). O(G). */
static int alltoall_us(const pl_cluster *c, const pl_placement *p,
                       const pl_routing *r, int64_t token_bytes, double *out) {
  int G = c->gpus;
  /* a dropless routing's sums are r->hose as they are (what
   * pl_routing_wire_sums would copy) */
  int own = r->padded || !r->hose;
  int64_t *h = own ? pl_malloc(4 * (size_t)G * sizeof(int64_t)) : r->hose;
  if (!h)
    return PL_ENOMEM;
  int rc = own ? pl_routing_wire_sums(r, p, c->gpus_per_node, h) : PL_OK;
  if (rc) {
    pl_free(h);
    return rc;
  }
  double worst = 0;
  for (int g = 0; g < G; g++) {
    double t = gpu_alltoall_s(c, h, g, token_bytes);
    if (t > worst)
      worst = t;
  }
  if (own)
    pl_free(h);
  *out = worst * 1e6;
  return PL_OK;
}

/* Expert e's ring all-reduce of its gradient over its replicas, s, over
 * the slowest link they span (0 with fewer than 2 replicas). */
static double expert_allreduce_s(const pl_cluster *c, const pl_model *m, const pl_placement *p,
                                 int e) {
  int n = p->nrep[e];
  if (n < 2)
    return 0;
  const int *rep = p->rep + (size_t)e * p->gpus;
  double grad_bytes = (double)pl_expert_params(m) * m->bytes_per_elem;
  int spans = pl_cluster_node(c, rep[0]) != pl_cluster_node(c, rep[n - 1]);
  double bw = spans ? c->inter_Bps / c->oversub : c->intra_Bps;
  double lat = spans ? c->inter_lat_s : c->intra_lat_s;
  return 2.0 * (n - 1) / n * grad_bytes / bw + 2.0 * (n - 1) * lat;
}

/* Ring all-reduce of each replicated expert's gradient; a GPU in several
 * groups does them one after another. */
static int allreduce_us(const pl_cluster *c, const pl_model *m,
                        const pl_placement *p, double *out) {
  double *per_gpu = pl_calloc((size_t)c->gpus, sizeof(double));
  if (!per_gpu)
    return PL_ENOMEM;
  for (int e = 0; e < p->experts; e++) {
    int n = p->nrep[e];
    if (n < 2)
      continue;
    const int *rep = p->rep + (size_t)e * p->gpus;
    double t = expert_allreduce_s(c, m, p, e);
    for (int i = 0; i < n; i++)
      per_gpu[rep[i]] += t;
  }
  double worst = 0;
  for (int g = 0; g < c->gpus; g++)
    worst = fmax(worst, per_gpu[g]);
  pl_free(per_gpu);
  *out = worst * 1e6;
  return PL_OK;
}

/* Expert compute of GPU g, us: the sum over experts e in ascending order of
 * ffn_us(pl_routing_compute_tokens(r, p, g, e)) for the non-zero ones. Only
 * hosted experts can be non-zero (padded: by definition; dropless: pl_route
 * delivers to replicas), so the GPU's ascending host list is walked; a
 * dropless routing whose row has load outside that list (made by hand)
 * falls back to the scan over all experts. Same terms, same order. */
static double gpu_compute_us(const pl_profile *prof, const pl_placement *p,
                             const pl_routing *r, int g) {
  const int *host = p->host + (size_t)g * p->slots;
  int nh = p->nhost[g];
  double us = 0;
  if (r->padded) {
    for (int j = 0; j < nh; j++) {
      int64_t tok = pl_routing_compute_tokens(r, p, g, host[j]);
      if (tok)
        us += pl_ffn_us(prof, (double)tok);
    }
    return us;
  }
  const int64_t *load = r->load + (size_t)g * r->experts;
  int64_t sum = 0;
  for (int j = 0; j < nh; j++) {
    int64_t tok = load[host[j]];
    if (tok) {
      us += pl_ffn_us(prof, (double)tok);
      sum += tok;
    }
  }
  if (sum == r->gpu_load[g])
    return us;
  us = 0;
  for (int e = 0; e < p->experts; e++)
    if (load[e])
      us += pl_ffn_us(prof, (double)load[e]);
  return us;
}

/* t's terms and total from the slowest GPU's expert compute (us), one
 * all-to-all (us) and all-reduce (us). */
static void layer_terms(const pl_profile *prof, double compute_us, double a2a_us,
                        double allreduce_us, pl_cost *t) {
  t->compute_us = compute_us * (1.0 + prof->bwd_ratio);
  t->alltoall_us = 4.0 * a2a_us;
  t->allreduce_us = allreduce_us;
  t->other_us = 2.0 * prof->nonmoe_us;
  t->total_us = t->compute_us + t->alltoall_us + t->allreduce_us + t->other_us;
}

int pl_cost_layer(const pl_cluster *c, const pl_model *m, const pl_profile *prof,
                  const pl_placement *p, const pl_routing *r, pl_cost *out) {
  if (!c || !m || !prof || !p || !r || !out || (!r->hose && !r->traffic && !r->padded) ||
      r->gpus != c->gpus || p->gpus != c->gpus || r->experts != p->experts)
    return PL_EINVAL;
  pl_cost t = {0};
  double worst = 0;
  for (int g = 0; g < c->gpus; g++)
    worst = fmax(worst, gpu_compute_us(prof, p, r, g));
  double a2a, ar;
  int rc = alltoall_us(c, p, r, pl_token_bytes(m), &a2a);
  if (!rc)
    rc = allreduce_us(c, m, p, &ar);
  if (rc)
    return rc;
  layer_terms(prof, worst, a2a, ar, &t);
  *out = t;
  return PL_OK;
}

int pl_cost_inc_init(pl_cost_inc *ci, int gpus, int experts) {
  if (!ci || gpus < 1 || experts < 1)
    return PL_EINVAL;
  pl_cost_inc t = {.gpus = gpus, .experts = experts};
  t.cu = pl_calloc((size_t)gpus, sizeof(double));
  t.at = pl_calloc((size_t)gpus, sizeof(double));
  t.ar = pl_calloc((size_t)gpus, sizeof(double));
  t.te = pl_calloc((size_t)experts, sizeof(double));
  if (!t.cu || !t.at || !t.ar || !t.te) {
    pl_cost_inc_fini(&t);
    return PL_ENOMEM;
  }
  *ci = t;
  return PL_OK;
}

void pl_cost_inc_fini(pl_cost_inc *ci) {
  if (!ci)
    return;
  pl_free(ci->cu);
  pl_free(ci->at);
  pl_free(ci->ar);
  pl_free(ci->te);
  memset(ci, 0, sizeof(*ci));
}

/* GPU g's three kept terms for p and r: pl_cost_layer's compute
 * (gpu_compute_us), all-to-all (gpu_alltoall_s of the hose sums, as
 * alltoall_us takes them for a dropless routing) and all-reduce (the
 * expert times in ascending expert order from 0, as allreduce_us adds
 * them into its per-GPU sum: g's host list ascends). */
static void inc_gpu(pl_cost_inc *ci, const pl_cluster *c, int64_t token_bytes,
                    const pl_profile *prof, const pl_placement *p, const pl_routing *r, int g) {
  const int *host = p->host + (size_t)g * p->slots;
  double ar = 0;
  for (int j = 0; j < p->nhost[g]; j++)
    if (p->nrep[host[j]] >= 2)
      ar += ci->te[host[j]];
  ci->cu[g] = gpu_compute_us(prof, p, r, g);
  ci->at[g] = gpu_alltoall_s(c, r->hose, g, token_bytes);
  ci->ar[g] = ar;
}

/* pl_cost_layer's total from the kept terms: their maxima (pl_fmax as
 * fmax for compute and all-reduce, > for the all-to-all, as pl_cost_layer
 * takes them) into layer_terms. */
static double inc_total(const pl_cost_inc *ci, const pl_profile *prof) {
  double cw = 0, aw = 0, rw = 0;
  for (int g = 0; g < ci->gpus; g++) {
    cw = pl_fmax(cw, ci->cu[g]);
    if (ci->at[g] > aw)
      aw = ci->at[g];
    rw = pl_fmax(rw, ci->ar[g]);
  }
  pl_cost t;
  layer_terms(prof, cw, aw * 1e6, rw * 1e6, &t);
  return t.total_us;
}

/* The checks of pl_cost_layer, and the routing the kept terms need. */
static int inc_args_ok(const pl_cost_inc *ci, const pl_cluster *c, const pl_model *m,
                       const pl_profile *prof, const pl_placement *p, const pl_routing *r) {
  return ci && c && m && prof && p && r && r->hose && !r->padded && r->gpus == c->gpus &&
         p->gpus == c->gpus && r->experts == p->experts && ci->gpus == c->gpus &&
         ci->experts == p->experts;
}

int pl_cost_inc_full(pl_cost_inc *ci, const pl_cluster *c, const pl_model *m,
                     const pl_profile *prof, const pl_placement *p, const pl_routing *r,
                     double *total_us) {
  if (!inc_args_ok(ci, c, m, prof, p, r) || !total_us)
    return PL_EINVAL;
  int64_t tb = pl_token_bytes(m);
  for (int e = 0; e < p->experts; e++)
    ci->te[e] = expert_allreduce_s(c, m, p, e);
  for (int g = 0; g < c->gpus; g++)
    inc_gpu(ci, c, tb, prof, p, r, g);
  *total_us = inc_total(ci, prof);
  return PL_OK;
}

int pl_cost_inc_update(pl_cost_inc *ci, const pl_cluster *c, const pl_model *m,
                       const pl_profile *prof, const pl_placement *p, const pl_routing *r,
                       const pl_route_delta *d, double *total_us) {
  if (!d || d->all)
    return d ? pl_cost_inc_full(ci, c, m, prof, p, r, total_us) : PL_EINVAL;
  if (!inc_args_ok(ci, c, m, prof, p, r) || !total_us)
    return PL_EINVAL;
  int64_t tb = pl_token_bytes(m);
  /* the changed experts' all-reduce first: every GPU that holds one of
   * them now, or held it before, is in d's GPUs */
  for (int i = 0; i < d->ne; i++)
    ci->te[d->es[i]] = expert_allreduce_s(c, m, p, d->es[i]);
  for (int i = 0; i < d->ng; i++)
    inc_gpu(ci, c, tb, prof, p, r, d->gs[i]);
  *total_us = inc_total(ci, prof);
  return PL_OK;
}

/* One GPU's time for the bytes of io (intra out, intra in, inter out,
 * inter in). */
static double moves_gpu_us(const pl_cluster *c, const double *io) {
  double t = fmax(io[0], io[1]) / c->intra_Bps + fmax(io[2], io[3]) / (c->inter_Bps / c->oversub);
  t += (io[0] + io[1] > 0 ? c->intra_lat_s : 0) + (io[2] + io[3] > 0 ? c->inter_lat_s : 0);
  return t;
}

double pl_cost_moves_us(const pl_cluster *c, const pl_move *moves, int nmoves) {
  int G = c->gpus;
  double worst = 0;
  /* Per GPU: intra out/in, inter out/in (bytes), summed in move order. One
   * pass over the moves into per-GPU sums (the same additions in the same
   * order as scanning the moves once per GPU, which remains the fallback
   * when the sums cannot be allocated). */
  double *acc = nmoves > 0 ? pl_calloc(4 * (size_t)G, sizeof(double)) : NULL;
  unsigned char *touched = acc ? pl_calloc((size_t)G, 1) : NULL;
  if (acc && touched) {
    for (int k = 0; k < nmoves; k++) {
      const pl_move *mv = &moves[k];
      if (mv->to < 0 || mv->bytes <= 0)
        continue;
      int inter = pl_cluster_node(c, mv->from) != pl_cluster_node(c, mv->to);
      /* a GPU that is both ends counts the move once, as its destination;
       * an end outside 0..G-1 is no GPU of the scan */
      if (mv->from >= 0 && mv->from < G && mv->from != mv->to) {
        acc[4 * (size_t)mv->from + 2 * inter] += (double)mv->bytes;
        touched[mv->from] = 1;
      }
      if (mv->to < G) {
        acc[4 * (size_t)mv->to + 2 * inter + 1] += (double)mv->bytes;
        touched[mv->to] = 1;
      }
    }
    for (int g = 0; g < G; g++)
      if (touched[g])
        worst = fmax(worst, moves_gpu_us(c, acc + 4 * (size_t)g));
    pl_free(acc);
    pl_free(touched);
    return worst * 1e6;
  }
  pl_free(acc);
  pl_free(touched);
  for (int g = 0; g < G; g++) {
    double io[4] = {0, 0, 0, 0};
    int touched1 = 0;
    for (int k = 0; k < nmoves; k++) {
      const pl_move *mv = &moves[k];
      if (mv->to < 0 || mv->bytes <= 0 || (mv->from != g && mv->to != g))
        continue;
      int inter = pl_cluster_node(c, mv->from) != pl_cluster_node(c, mv->to);
      io[2 * inter + (mv->to == g)] += (double)mv->bytes;
      touched1 = 1;
    }
    if (!touched1)
      continue;
    worst = fmax(worst, moves_gpu_us(c, io));
  }
  return worst * 1e6;
}

double pl_cost_exposed_us(double moves_us, int background, int uncharged,
                          double overlap_us) {
  if (uncharged || !(moves_us > 0))
    return 0.0;
  if (!background)
    return moves_us;
  return moves_us > overlap_us ? moves_us - overlap_us : 0.0;
}

double pl_cost_weights_first_us(double weights_us, double window_us, double rest_us,
                                double overlap_us) {
  double late = weights_us > window_us ? weights_us - window_us : 0.0;
  return late + pl_cost_exposed_us(rest_us, 1, 0, overlap_us);
}

/*
 * A floor under pl_cost_layer's total for p and the dropless routing of
 * counts, without routing (pl_internal.h). Every term is at most its
 * counterpart, each from the same formula:
 *  - compute: expert e's replicas receive all its T_e slots, so one of
 *    them computes at least ceil(T_e / r_e) of them, and a GPU's compute
 *    is at least that term (sums of non-negative terms only grow); needs
 *    ffn non-decreasing in tokens (the profile's times non-decreasing,
 *    else the term is 0);
 *  - all-to-all: a GPU sends exactly its slots of experts its node does
 *    not hold over the NIC and those its node holds elsewhere over the
 *    intra link (the locality rule), and a link's time takes the larger of
 *    out and in: out alone is a floor;
 *  - all-reduce and the rest: the same functions.
 * Floating point rounds monotonically, so the same operations on smaller
 * operands give a smaller or equal result; the total is lowered by a
 * relative 1e-9 against an interpolation that rounds up by an ulp at a
 * point of the profile. O(G E + G gpn S + replicas).
 */
int pl_cost_layer_floor(const pl_cluster *c, const pl_model *m, const pl_profile *prof,
                        const pl_placement *p, const int64_t *counts, double *out) {
  if (!c || !m || !prof || !p || !counts || !out || p->gpus != c->gpus ||
      c->gpus_per_node < 1 || c->gpus % c->gpus_per_node)
    return PL_EINVAL;
  int G = p->gpus, E = p->experts, gpn = c->gpus_per_node;
  int64_t *T = pl_calloc((size_t)E, sizeof(int64_t));
  int *mark = pl_calloc((size_t)E, sizeof(int));
  int *U = pl_malloc((size_t)gpn * (size_t)p->slots * sizeof(int));
  int rc = PL_ENOMEM;
  if (!T || !mark || !U)
    goto done;
  int64_t tb = pl_token_bytes(m);
  double inter_Bps = c->inter_Bps / c->oversub, a2a = 0;
  for (int node = 0; node < G / gpn; node++) {
    int nu = 0; /* the experts the node holds, once each */
    for (int g = node * gpn; g < (node + 1) * gpn; g++)
      for (int j = 0; j < p->nhost[g]; j++) {
        int e = p->host[(size_t)g * p->slots + j];
        if (mark[e] != node + 1) {
          mark[e] = node + 1;
          U[nu++] = e;
        }
      }
    for (int g = node * gpn; g < (node + 1) * gpn; g++) {
      const int64_t *row = counts + (size_t)g * E;
      int64_t all = 0, held = 0, own = 0;
      for (int e = 0; e < E; e++) {
        all += row[e];
        T[e] += row[e];
      }
      for (int i = 0; i < nu; i++)
        held += row[U[i]];
      for (int j = 0; j < p->nhost[g]; j++)
        own += row[p->host[(size_t)g * p->slots + j]];
      int64_t intra = held - own, inter = all - held;
      double t = 0;
      if (intra)
        t += c->intra_lat_s + (double)(intra * tb) / c->intra_Bps;
      if (inter)
        t += c->inter_lat_s + (double)(inter * tb) / inter_Bps;
      if (t > a2a)
        a2a = t;
    }
  }
  int mono = 1;
  for (int i = 1; i < prof->npoints; i++)
    mono &= prof->us[i] >= prof->us[i - 1];
  double worst = 0;
  for (int e = 0; mono && e < E; e++) {
    int r = p->nrep[e];
    if (r > 0 && T[e] > 0)
      worst = fmax(worst, pl_ffn_us(prof, (double)((T[e] + r - 1) / r)));
  }
  double ar;
  if ((rc = allreduce_us(c, m, p, &ar)) != 0)
    goto done;
  double total = worst * (1.0 + prof->bwd_ratio) + 4.0 * (a2a * 1e6) + ar +
                 2.0 * prof->nonmoe_us;
  *out = total * (1.0 - 1e-9);
done:
  pl_free(T);
  pl_free(mark);
  pl_free(U);
  return rc;
}
