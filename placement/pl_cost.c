/*
 * pl_cost.c - analytical cost model (see pl_cost.h for the formulas).
 */
#include "placement/pl_cost.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"

int64_t pl_expert_params(const pl_model *m) {
  return 2 * (int64_t)m->d_model * (int64_t)m->d_ff;
}

int64_t pl_expert_move_bytes(const pl_model *m) {
  return (int64_t)llround((double)pl_expert_params(m) *
                          (m->bytes_per_elem + m->optimizer_bytes_per_param));
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

/* One all-to-all (dispatch or combine) as the slowest GPU sees it, from
 * the per-GPU wire sums (pl_routing_wire_sums: real tokens, or the padded
 * buffers of a capacity routing). O(G). */
static int alltoall_us(const pl_cluster *c, const pl_placement *p,
                       const pl_routing *r, int64_t token_bytes, double *out) {
  int G = c->gpus;
  int64_t *h = pl_malloc(4 * (size_t)G * sizeof(int64_t));
  if (!h)
    return PL_ENOMEM;
  int rc = pl_routing_wire_sums(r, p, c->gpus_per_node, h);
  if (rc) {
    pl_free(h);
    return rc;
  }
  double worst = 0;
  double inter_Bps = c->inter_Bps / c->oversub;
  for (int g = 0; g < G; g++) {
    int64_t out_in = h[g], in_in = h[G + g], out_x = h[2 * G + g], in_x = h[3 * G + g];
    double t = 0;
    int64_t intra = out_in > in_in ? out_in : in_in;
    int64_t inter = out_x > in_x ? out_x : in_x;
    if (intra)
      t += c->intra_lat_s + (double)(intra * token_bytes) / c->intra_Bps;
    if (inter)
      t += c->inter_lat_s + (double)(inter * token_bytes) / inter_Bps;
    if (t > worst)
      worst = t;
  }
  pl_free(h);
  *out = worst * 1e6;
  return PL_OK;
}

/* Ring all-reduce of each replicated expert's gradient; a GPU in several
 * groups does them one after another. */
static int allreduce_us(const pl_cluster *c, const pl_model *m,
                        const pl_placement *p, double *out) {
  double *per_gpu = pl_calloc((size_t)c->gpus, sizeof(double));
  if (!per_gpu)
    return PL_ENOMEM;
  double grad_bytes = (double)pl_expert_params(m) * m->bytes_per_elem;
  for (int e = 0; e < p->experts; e++) {
    int n = p->nrep[e];
    if (n < 2)
      continue;
    const int *rep = p->rep + (size_t)e * p->gpus;
    int spans = pl_cluster_node(c, rep[0]) != pl_cluster_node(c, rep[n - 1]);
    double bw = spans ? c->inter_Bps / c->oversub : c->intra_Bps;
    double lat = spans ? c->inter_lat_s : c->intra_lat_s;
    double t = 2.0 * (n - 1) / n * grad_bytes / bw + 2.0 * (n - 1) * lat;
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

int pl_cost_layer(const pl_cluster *c, const pl_model *m, const pl_profile *prof,
                  const pl_placement *p, const pl_routing *r, pl_cost *out) {
  if (!c || !m || !prof || !p || !r || !out || (!r->hose && !r->traffic && !r->padded) ||
      r->gpus != c->gpus || p->gpus != c->gpus || r->experts != p->experts)
    return PL_EINVAL;
  pl_cost t = {0};
  double worst = 0;
  for (int g = 0; g < c->gpus; g++) {
    double us = 0;
    for (int e = 0; e < p->experts; e++) {
      int64_t tok = pl_routing_compute_tokens(r, p, g, e);
      if (tok)
        us += pl_ffn_us(prof, (double)tok);
    }
    worst = fmax(worst, us);
  }
  t.compute_us = worst * (1.0 + prof->bwd_ratio);
  double a2a;
  int rc = alltoall_us(c, p, r, pl_token_bytes(m), &a2a);
  if (!rc)
    rc = allreduce_us(c, m, p, &t.allreduce_us);
  if (rc)
    return rc;
  t.alltoall_us = 4.0 * a2a;
  t.other_us = 2.0 * prof->nonmoe_us;
  t.total_us = t.compute_us + t.alltoall_us + t.allreduce_us + t.other_us;
  *out = t;
  return PL_OK;
}

double pl_cost_moves_us(const pl_cluster *c, const pl_move *moves, int nmoves) {
  int G = c->gpus;
  double worst = 0;
  /* Per GPU: intra out/in, inter out/in (bytes). Small move lists: scan. */
  for (int g = 0; g < G; g++) {
    double io[4] = {0, 0, 0, 0};
    int touched = 0;
    for (int k = 0; k < nmoves; k++) {
      const pl_move *mv = &moves[k];
      if (mv->to < 0 || mv->bytes <= 0 || (mv->from != g && mv->to != g))
        continue;
      int inter = pl_cluster_node(c, mv->from) != pl_cluster_node(c, mv->to);
      io[2 * inter + (mv->to == g)] += (double)mv->bytes;
      touched = 1;
    }
    if (!touched)
      continue;
    double t = fmax(io[0], io[1]) / c->intra_Bps +
               fmax(io[2], io[3]) / (c->inter_Bps / c->oversub);
    t += (io[0] + io[1] > 0 ? c->intra_lat_s : 0) + (io[2] + io[3] > 0 ? c->inter_lat_s : 0);
    worst = fmax(worst, t);
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
