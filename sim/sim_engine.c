/*
 * sim_engine.c - the iteration model, analytic and discrete-event
 * (see sim_engine.h for what is modelled).
 *
 * The DES has two models on one loop: the network (event: "next flow
 * finishes sending", rescheduled - the old event cancelled - whenever flows
 * start or end) and the engine (events: a flow completed, a compute phase
 * timer). The engine drives the iteration phase by phase and steps the loop
 * until the phase's foreground flows or timer are done; background flows
 * (all-reduce, background migration) simply keep going across phases.
 */
#include "sim/sim_engine.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "sim/sim_error.h"

enum { EV_DRAIN = 1 };
enum { EV_PHASE_DONE = 1, EV_TIMER = 2 };
enum { FK_FG = 0, FK_AR = 1, FK_MIG = 2 };
#define DRAIN_BATCH 256

static int64_t us_ns(double us) { return (int64_t)llround(us * 1e3); }

/* ---------------------------------------------------------------- DES --- */

static int kick(sim_engine *e) {
  int64_t t = sim_net_next(&e->net);
  if (e->drain_id && t == e->drain_t)
    return SIM_OK;
  if (e->drain_id) {
    int rc = sim_cancel(&e->sim, e->drain_id);
    if (rc)
      return rc;
    e->drain_id = 0;
  }
  if (t == INT64_MAX)
    return SIM_OK;
  if (t < e->sim.now)
    t = e->sim.now;
  e->drain_t = t;
  return sim_at(&e->sim, t, e->m_net, EV_DRAIN, 0, &e->drain_id);
}

static void mark_end(sim_engine *e, int who, int64_t t) {
  if (who >= 0) {
    if (t > e->gpu_comm_end[who])
      e->gpu_comm_end[who] = t;
    return;
  }
  int node = -1 - who, gpn = e->cl.gpus_per_node;
  for (int g = node * gpn; g < (node + 1) * gpn; g++)
    if (t > e->gpu_comm_end[g])
      e->gpu_comm_end[g] = t;
}

/* A flow finished sending; it completes at `done` (now + latency). Only the
 * last completion of a phase matters, so instead of one event per flow the
 * phase gets one event at its latest completion. */
static int flow_done(sim_engine *e, int64_t tag, int64_t done) {
  int r = (int)tag;
  if (r < 0 || r >= e->nrec)
    return SIM_EINVARIANT;
  if (e->rec_kind[r] == FK_FG) {
    mark_end(e, e->rec_a[r], done);
    mark_end(e, e->rec_b[r], done);
    if (done > e->fg_last_done)
      e->fg_last_done = done;
    if (--e->pending_fg == 0)
      return sim_at(&e->sim, e->fg_last_done, e->m_eng, EV_PHASE_DONE, 0, NULL);
  } else {
    e->pending_bg--;
    if (done >= e->bg_last_done) {
      e->bg_last_done = done;
      e->last_bg_kind = e->rec_kind[r];
    }
  }
  return SIM_OK;
}

/* The network's event: flows finish sending now. When the next finish
 * comes strictly before every pending event, it is handled here too, time
 * moved forward to it: the loop would pop its drain event next anyway
 * (an event at the same time scheduled earlier runs first, so equal times
 * go through the queue). Same order of effects, fewer queue operations. */
static int net_handle(sim_t *s, void *state, const sim_event *ev) {
  sim_engine *e = state;
  (void)ev;
  e->drain_id = 0;
  for (;;) {
    int got;
    do {
      got = sim_net_advance(&e->net, s->now, e->tags, e->dones, DRAIN_BATCH);
      if (got < 0)
        return got;
      for (int k = 0; k < got; k++) {
        int rc = flow_done(e, e->tags[k], e->dones[k]);
        if (rc)
          return rc;
      }
    } while (got == DRAIN_BATCH);
    int64_t t = sim_net_next(&e->net);
    if (t == INT64_MAX || t >= sim_evq_peek_time(&s->q))
      break;
    s->now = t > s->now ? t : s->now;
  }
  return kick(e);
}

static int eng_handle(sim_t *s, void *state, const sim_event *ev) {
  sim_engine *e = state;
  (void)s;
  if (ev->kind == EV_TIMER)
    e->timer_fired = 1;
  else if (ev->kind == EV_PHASE_DONE)
    e->phase_done = 1;
  else
    return SIM_EINVARIANT;
  return SIM_OK;
}

static const sim_model_ops net_ops = {"network", net_handle};
static const sim_model_ops eng_ops = {"iteration", eng_handle};

static int add_rec(sim_engine *e, int a, int b, int kind) {
  if (e->nrec == e->caprec) {
    int nc = e->caprec ? e->caprec * 2 : 1024;
    int *na = sim_realloc(e->rec_a, (size_t)nc * sizeof(int));
    if (na)
      e->rec_a = na;
    int *nb = sim_realloc(e->rec_b, (size_t)nc * sizeof(int));
    if (nb)
      e->rec_b = nb;
    int *nk = sim_realloc(e->rec_kind, (size_t)nc * sizeof(int));
    if (nk)
      e->rec_kind = nk;
    if (!na || !nb || !nk)
      return SIM_ENOMEM;
    e->caprec = nc;
  }
  e->rec_a[e->nrec] = a;
  e->rec_b[e->nrec] = b;
  e->rec_kind[e->nrec] = kind;
  return e->nrec++;
}

/* A GPU-to-GPU flow; lat_mult scales the path latency (ring steps). */
static int gpu_flow(sim_engine *e, int src, int dst, double bytes, int kind, int lat_mult) {
  if (src == dst || !(bytes > 0))
    return SIM_OK;
  int path[SIM_NET_MAXPATH], plen;
  int64_t lat;
  sim_net_path(&e->net, src, dst, path, &plen, &lat);
  int rec = add_rec(e, src, dst, kind);
  if (rec < 0)
    return rec;
  int rc = sim_net_start_path(&e->net, e->sim.now, path, plen, lat * lat_mult, bytes, rec);
  if (rc < 0)
    return rc;
  if (kind == FK_FG)
    e->pending_fg++;
  else
    e->pending_bg++;
  return SIM_OK;
}

/* The links of GPU g's hose flow of one class (inter = cross-node, in =
 * ingress) into path; returns how many, with the class latency in *lat. */
static int hose_path(const sim_net *n, int g, int inter, int in, int *path, int64_t *lat) {
  if (!inter) {
    path[0] = in ? n->intra_in0 + g : n->intra_out0 + g;
    *lat = n->intra_lat_ns;
    return 1;
  }
  *lat = n->inter_lat_ns;
  return sim_net_inter_half(n, g, in, path);
}

/* A hose flow: one GPU's whole egress or ingress of one class over its own
 * links. inter = cross-node, in = ingress; lat_mult scales the class
 * latency (ring steps). */
static int hose_flow(sim_engine *e, int g, int inter, int in, double bytes, int kind,
                     int lat_mult, double w) {
  if (!(bytes > 0))
    return SIM_OK;
  int path[2];
  int64_t lat;
  int plen = hose_path(&e->net, g, inter, in, path, &lat);
  int rec = add_rec(e, g, g, kind);
  if (rec < 0)
    return rec;
  int rc = sim_net_start_weighted(&e->net, e->sim.now, path, plen, lat * lat_mult, bytes, w, rec);
  if (rc < 0)
    return rc;
  if (kind == FK_FG)
    e->pending_fg++;
  else
    e->pending_bg++;
  return SIM_OK;
}

/* Per-GPU sums of background-class transfers (replica rings, migrations):
 * agg_bytes[c * G + g] for class c = 2 x inter + in (intra out, intra in,
 * inter out, inter in), agg_lat[c * G + g] the largest latency multiple of
 * the transfers summed there. */
static void agg_clear(sim_engine *e) {
  size_t n = 4 * (size_t)e->gpus;
  memset(e->agg_bytes, 0, n * sizeof(double));
  memset(e->agg_lat, 0, n * sizeof(int));
  memset(e->agg_cnt, 0, n * sizeof(int));
}

static void agg_add(sim_engine *e, int src, int dst, double bytes, int lat_mult) {
  if (src == dst || !(bytes > 0))
    return;
  int G = e->gpus, inter = src / e->cl.gpus_per_node != dst / e->cl.gpus_per_node;
  size_t o = (size_t)(2 * inter) * G + src, i = (size_t)(2 * inter + 1) * G + dst;
  e->agg_bytes[o] += bytes;
  e->agg_bytes[i] += bytes;
  e->agg_cnt[o]++;
  e->agg_cnt[i]++;
  if (lat_mult > e->agg_lat[o])
    e->agg_lat[o] = lat_mult;
  if (lat_mult > e->agg_lat[i])
    e->agg_lat[i] = lat_mult;
}

/* Starts the hose flows of the sums (GPU by GPU, class by class: a fixed
 * order, so runs are deterministic). */
static int agg_start(sim_engine *e, int kind) {
  int G = e->gpus, rc = SIM_OK;
  for (int g = 0; g < G && !rc; g++)
    for (int c = 0; c < 4 && !rc; c++) {
      size_t k = (size_t)c * G + g;
      if (e->agg_bytes[k] > 0)
        rc = hose_flow(e, g, c >> 1, c & 1, e->agg_bytes[k], kind, e->agg_lat[k],
                       (double)e->agg_cnt[k]);
    }
  return rc;
}

/*
 * A foreground hose flow of an all-to-all. When its path is one link of
 * its own (intra-node links always; the per-GPU NIC when sim_net_init left
 * the uplink off) and no background flow is on that link, nothing can
 * share it before it ends: background flows start only between phases and
 * the phase's other flows have links of their own. It then sends at the
 * link's capacity and completes at the network's projected finish,
 * ceil(now + bytes / cap) + latency, which is computed here instead of
 * carrying the flow through the network (the all-to-alls of a large
 * cluster are thousands of such flows). The network may drain a flow up to
 * 1 ns before that projection when another flow finishes in the same
 * nanosecond, so the two ways agree to within 1 ns per flow.
 */
static int fg_hose_flow(sim_engine *e, int g, int inter, int in, double bytes, double w,
                        int64_t *lone_done) {
  if (!(bytes > 0))
    return SIM_OK;
  const sim_net *n = &e->net;
  int path[2];
  int64_t lat;
  /* a link of its own: intra-node links, or the only link left of a per-GPU
   * NIC route (a per-node NIC or uplink is shared by the node's GPUs) */
  int own = hose_path(n, g, inter, in, path, &lat) == 1 && (!inter || !n->nic_per_node);
  int link = path[0];
  if (!own || n->links[link].nflows != 0 || (e->aggregate & SIM_AGG_NO_SHORTCUT))
    return hose_flow(e, g, inter, in, bytes, FK_FG, 1, w);
  int64_t now = e->sim.now;
  int64_t t = (int64_t)ceil((double)now + bytes / n->links[link].cap - 1e-6);
  int64_t done = (t < now ? now : t) + lat;
  mark_end(e, g, done);
  if (done > *lone_done)
    *lone_done = done;
  return SIM_OK;
}

/* Expert compute of GPU g in one direction (forward), us: the sum over its
 * experts of ffn_time(token slots it computes) - the padded buffers for a
 * capacity routing (pl_routing_compute_tokens), pl_cost_layer's rule. */
static double gpu_compute_us(const sim_engine *e, const pl_routing *r, const pl_placement *p,
                             int g) {
  double us = 0;
  int E = r->experts;
  const int *host = p->host + (size_t)g * p->slots;
  if (r->padded) { /* non-zero exactly for the hosted experts */
    for (int j = 0; j < p->nhost[g]; j++) {
      int64_t t = pl_routing_compute_tokens(r, p, g, host[j]);
      if (t)
        us += pl_ffn_us(&e->prof, (double)t);
    }
    return us;
  }
  const int64_t *load = r->load + (size_t)g * E;
  /* A GPU computes only experts it hosts: walk its (ascending) host list,
   * the same terms in the same order as the scan over all experts below,
   * which runs only if some of the GPU's load lies outside the list (not a
   * routing made by pl_route). */
  int64_t sum = 0;
  for (int j = 0; j < p->nhost[g]; j++) {
    int64_t t = load[host[j]];
    if (t) {
      us += pl_ffn_us(&e->prof, (double)t);
      sum += t;
    }
  }
  if (sum == r->gpu_load[g])
    return us;
  us = 0;
  for (int x = 0; x < E; x++)
    if (load[x])
      us += pl_ffn_us(&e->prof, (double)load[x]);
  return us;
}

static int wait_ns(sim_engine *e, int64_t dur);

/* Runs the loop until the foreground flows started since the last call have
 * all completed (at the latest completion time). */
static int run_until_fg_done(sim_engine *e, int64_t lone_done) {
  if (e->pending_fg == 0) /* nothing in the network: wait for the lone flows */
    return lone_done > e->sim.now ? wait_ns(e, lone_done - e->sim.now) : SIM_OK;
  e->fg_last_done = lone_done > e->sim.now ? lone_done : e->sim.now;
  e->phase_done = 0;
  int rc = kick(e);
  while (!rc && !e->phase_done) {
    rc = sim_step(&e->sim);
    if (rc == 0)
      return SIM_EINVARIANT; /* flows pending but no event */
    rc = rc < 0 ? rc : 0;
  }
  return rc;
}

static int wait_ns(sim_engine *e, int64_t dur) {
  if (dur <= 0)
    return SIM_OK;
  if (sim_evq_pending(&e->sim.q) == 0) {
    e->sim.now += dur; /* nothing in flight: time just passes */
    return SIM_OK;
  }
  e->timer_fired = 0;
  int rc = sim_at(&e->sim, e->sim.now + dur, e->m_eng, EV_TIMER, 0, NULL);
  while (!rc && !e->timer_fired) {
    rc = sim_step(&e->sim);
    if (rc == 0)
      return SIM_EINVARIANT;
    rc = rc < 0 ? rc : 0;
  }
  return rc;
}

/* One all-to-all, forward (src -> dst as the routing says) or reverse, of
 * the tokens on the wire (pl_routing_wire_tokens: padded buffers for a
 * capacity routing). Hose mode needs e->hose (pl_routing_wire_sums). */
static int alltoall(sim_engine *e, const pl_routing *r, const pl_placement *p, int reverse,
                    double *busy_phase) {
  int G = e->gpus;
  double tb = (double)pl_token_bytes(&e->model);
  int64_t t0 = e->sim.now, lone_done = 0;
  for (int g = 0; g < G; g++)
    e->gpu_comm_end[g] = t0;
  int rc = SIM_OK;
  if (e->aggregate & SIM_AGG_ALLTOALL) {
    const int64_t *h = e->hose;
    /* a hose flow weighs the pair flows it can stand for: the other GPUs
     * of the node, or those of the other nodes */
    int gpn = e->cl.gpus_per_node;
    double w[2] = {gpn > 1 ? gpn - 1 : 1, G > gpn ? G - gpn : 1};
    for (int g = 0; g < G && !rc; g++)
      for (int x = 0; x < 2 && !rc; x++) {
        int64_t out = h[(2 * x) * G + g], in = h[(2 * x + 1) * G + g];
        if (reverse) {
          int64_t t = out;
          out = in;
          in = t;
        }
        rc = fg_hose_flow(e, g, x, 0, (double)out * tb, w[x], &lone_done);
        if (!rc)
          rc = fg_hose_flow(e, g, x, 1, (double)in * tb, w[x], &lone_done);
      }
  } else {
    for (int s = 0; s < G && !rc; s++) {
      for (int d = 0; d < G && !rc; d++) {
        int64_t tok = d == s ? 0 : pl_routing_wire_tokens(r, p, s, d);
        if (!tok)
          continue;
        double bytes = (double)tok * tb;
        rc = reverse ? gpu_flow(e, d, s, bytes, FK_FG, 1) : gpu_flow(e, s, d, bytes, FK_FG, 1);
      }
    }
  }
  if (!rc)
    rc = run_until_fg_done(e, lone_done);
  if (!rc)
    for (int g = 0; g < G; g++)
      busy_phase[g] += (double)(e->gpu_comm_end[g] - t0) * 1e-3;
  return rc;
}

/* Starts the charged moves of the iteration that are (background = 1) or
 * are not (0) in the background, as flows of `kind`: one per move, or with
 * SIM_AGG_BACKGROUND per-GPU hose flows of the moves' bytes. */
static int start_moves(sim_engine *e, const sim_layer_in *L, int nl, int background, int kind) {
  int agg = e->aggregate & SIM_AGG_BACKGROUND, rc = SIM_OK, any = 0;
  for (int l = 0; l < nl && !rc; l++) {
    if (!L[l].background != !background || L[l].uncharged || !L[l].nmoves)
      continue;
    if (agg && !any) {
      agg_clear(e);
      any = 1;
    }
    for (int k = 0; k < L[l].nmoves && !rc; k++) {
      const pl_move *mv = &L[l].moves[k];
      if (mv->to < 0)
        continue;
      if (agg)
        agg_add(e, mv->from, mv->to, (double)mv->bytes, 1);
      else
        rc = gpu_flow(e, mv->from, mv->to, (double)mv->bytes, kind, 1);
    }
  }
  if (!rc && any)
    rc = agg_start(e, kind);
  return rc;
}

static int des_iteration(sim_engine *e, const sim_layer_in *L, int nl, sim_iter_out *o) {
  int G = e->gpus, rc = SIM_OK;
  int64_t t0 = e->sim.now;
  double *busy = e->busy_us;
  double nonmoe = e->prof.nonmoe_us;
  int64_t other_ns = us_ns(nonmoe);
  e->pending_bg = 0;
  e->nrec = 0; /* every flow of the previous iteration has completed */
  e->last_bg_kind = FK_AR;
  e->bg_last_done = 0;
  /* migration: blocking phase first, or background from the start */
  int any_blocking = 0;
  for (int l = 0; l < nl; l++)
    if (L[l].nmoves && !L[l].background && !L[l].uncharged)
      any_blocking = 1;
  if (any_blocking) {
    int64_t tm = e->sim.now;
    for (int g = 0; g < G; g++)
      e->gpu_comm_end[g] = tm;
    rc = start_moves(e, L, nl, 0, FK_FG);
    if (!rc)
      rc = run_until_fg_done(e, 0);
    if (rc)
      return rc;
    for (int g = 0; g < G; g++)
      busy[g] += (double)(e->gpu_comm_end[g] - tm) * 1e-3;
    o->migration_us += (double)(e->sim.now - tm) * 1e-3;
  }
  if (!rc)
    rc = start_moves(e, L, nl, 1, FK_MIG);
  if (!rc)
    rc = kick(e);
  double grad = (double)pl_expert_params(&e->model) * e->model.bytes_per_elem;
  for (int pass = 0; pass < 2 && !rc; pass++) {
    double mult = pass == 0 ? 1.0 : e->prof.bwd_ratio;
    for (int i = 0; i < nl && !rc; i++) {
      int l = pass == 0 ? i : nl - 1 - i;
      const pl_routing *r = L[l].routing;
      e->hose = e->hose_all + (size_t)l * 4 * G;
      /* other work of the layer */
      int64_t ts = e->sim.now;
      int64_t layer_t0 = ts;
      if ((rc = wait_ns(e, other_ns)))
        break;
      o->other_us += (double)(e->sim.now - ts) * 1e-3;
      for (int g = 0; g < G; g++)
        busy[g] += nonmoe;
      /* dispatch */
      ts = e->sim.now;
      if ((rc = alltoall(e, r, L[l].placement, 0, busy)))
        break;
      o->alltoall_us += (double)(e->sim.now - ts) * 1e-3;
      /* expert compute: the slowest GPU */
      double worst = 0, *fwd = e->comp_us + (size_t)l * G;
      for (int g = 0; g < G; g++) {
        /* forward computes it, backward reuses it */
        if (pass == 0)
          fwd[g] = gpu_compute_us(e, r, L[l].placement, g);
        double us = fwd[g] * mult;
        busy[g] += us;
        if (us > worst)
          worst = us;
      }
      ts = e->sim.now;
      if ((rc = wait_ns(e, us_ns(worst))))
        break;
      o->compute_us += (double)(e->sim.now - ts) * 1e-3;
      /* combine */
      ts = e->sim.now;
      if ((rc = alltoall(e, r, L[l].placement, 1, busy)))
        break;
      o->alltoall_us += (double)(e->sim.now - ts) * 1e-3;
      if (o->layer_us)
        o->layer_us[l] += (double)(e->sim.now - layer_t0) * 1e-3;
      if (pass == 1) {
        /* replica gradient all-reduce of layer l, in the background */
        const pl_placement *p = L[l].placement;
        int agg = e->aggregate & SIM_AGG_BACKGROUND;
        if (agg)
          agg_clear(e);
        for (int x = 0; x < p->experts && !rc; x++) {
          int n = p->nrep[x];
          if (n < 2)
            continue;
          const int *rep = p->rep + (size_t)x * p->gpus;
          double bytes = 2.0 * (n - 1) / n * grad;
          for (int k = 0; k < n && !rc; k++) {
            int src = rep[k], dst = rep[(k + 1) % n];
            if (agg)
              agg_add(e, src, dst, bytes, 2 * (n - 1));
            else
              rc = gpu_flow(e, src, dst, bytes, FK_AR, 2 * (n - 1));
          }
        }
        if (!rc && agg)
          rc = agg_start(e, FK_AR);
        if (!rc)
          rc = kick(e);
      }
    }
  }
  if (rc)
    return rc;
  int64_t fg_end = e->sim.now;
  while (e->pending_bg > 0) {
    int s = sim_step(&e->sim);
    if (s < 0)
      return s;
    if (s == 0)
      return SIM_EINVARIANT;
  }
  if (e->bg_last_done > e->sim.now && (rc = wait_ns(e, e->bg_last_done - e->sim.now)))
    return rc;
  double tail = (double)(e->sim.now - fg_end) * 1e-3;
  if (e->last_bg_kind == FK_MIG)
    o->migration_us += tail;
  else
    o->allreduce_us += tail;
  o->time_us = (double)(e->sim.now - t0) * 1e-3;
  return SIM_OK;
}

/* ----------------------------------------------------------- analytic --- */

static int analytic_iteration(sim_engine *e, const sim_layer_in *L, int nl,
                              sim_iter_out *o) {
  int G = e->gpus;
  double tb = (double)pl_token_bytes(&e->model);
  double inter = e->pc.inter_Bps / e->pc.oversub;
  int nmoves = 0;
  for (int l = 0; l < nl; l++) {
    pl_cost c;
    int rc = pl_cost_layer(&e->pc, &e->model, &e->prof, L[l].placement, L[l].routing, &c);
    if (rc)
      return SIM_EPLACEMENT;
    o->compute_us += c.compute_us;
    o->alltoall_us += c.alltoall_us;
    o->allreduce_us += c.allreduce_us;
    o->other_us += c.other_us;
    if (o->layer_us)
      o->layer_us[l] = c.total_us;
    nmoves += L[l].nmoves;
    /* per-GPU busy: its own compute and all-to-all time */
    const pl_routing *r = L[l].routing;
    for (int g = 0; g < G; g++) {
      double us = gpu_compute_us(e, r, L[l].placement, g);
      const int64_t *hs = e->hose_all + (size_t)l * 4 * G;
      int64_t oi = hs[g], ii = hs[G + g], ox = hs[2 * (size_t)G + g], ix = hs[3 * (size_t)G + g];
      double a2a = 0;
      int64_t intra = oi > ii ? oi : ii, x2 = ox > ix ? ox : ix;
      if (intra)
        a2a += e->pc.intra_lat_s + (double)intra * tb / e->pc.intra_Bps;
      if (x2)
        a2a += e->pc.inter_lat_s + (double)x2 * tb / inter;
      e->busy_us[g] += us * (1.0 + e->prof.bwd_ratio) + 4.0 * a2a * 1e6 + c.other_us;
    }
  }
  double layers_us = o->compute_us + o->alltoall_us + o->allreduce_us + o->other_us;
  if (nmoves) {
    pl_move *all = sim_calloc((size_t)nmoves, sizeof(pl_move));
    if (!all)
      return SIM_ENOMEM;
    int k = 0, bg = 1;
    for (int l = 0; l < nl; l++) {
      if (L[l].uncharged)
        continue;
      if (L[l].nmoves && !L[l].background)
        bg = 0;
      for (int j = 0; j < L[l].nmoves; j++)
        all[k++] = L[l].moves[j];
    }
    double mig = k ? pl_cost_moves_us(&e->pc, all, k) : 0.0;
    sim_free(all);
    o->migration_us = pl_cost_exposed_us(mig, bg, 0, layers_us);
  }
  o->time_us = layers_us + o->migration_us;
  return SIM_OK;
}

/* -------------------------------------------------------------- common --- */

int sim_engine_init(sim_engine *e, sim_engine_kind kind, const sim_cluster *cl,
                    const pl_cluster *pc, const pl_model *m, const pl_profile *prof,
                    int aggregate) {
  memset(e, 0, sizeof(*e));
  if (!cl || !pc || !m || !prof || (kind != SIM_ENGINE_ANALYTIC && kind != SIM_ENGINE_DES) ||
      pl_profile_check(prof) || pl_cluster_check(pc) || pc->gpus != sim_cluster_gpus(cl))
    return SIM_EINVAL;
  e->kind = kind;
  e->cl = *cl;
  e->pc = *pc;
  e->model = *m;
  e->prof = *prof;
  e->gpus = pc->gpus;
  e->aggregate = aggregate < 0 ? SIM_AGG_ALL : aggregate & (SIM_AGG_ALL | SIM_AGG_NO_SHORTCUT);
  int rc = SIM_ENOMEM;
  e->busy_us = sim_calloc((size_t)e->gpus, sizeof(double));
  e->gpu_us = sim_calloc((size_t)e->gpus, sizeof(double));
  e->gpu_comm_end = sim_calloc((size_t)e->gpus, sizeof(int64_t));
  e->agg_bytes = sim_calloc(4 * (size_t)e->gpus, sizeof(double));
  e->agg_lat = sim_calloc(4 * (size_t)e->gpus, sizeof(int));
  e->agg_cnt = sim_calloc(4 * (size_t)e->gpus, sizeof(int));
  if (!e->busy_us || !e->gpu_us || !e->gpu_comm_end || !e->agg_bytes || !e->agg_lat ||
      !e->agg_cnt)
    goto fail;
  if (kind == SIM_ENGINE_DES) {
    e->tags = sim_calloc(DRAIN_BATCH, sizeof(int64_t));
    e->dones = sim_calloc(DRAIN_BATCH, sizeof(int64_t));
    if (!e->tags || !e->dones)
      goto fail;
    if ((rc = sim_init(&e->sim)) || (rc = sim_net_init(&e->net, cl)) ||
        (rc = sim_add_model(&e->sim, &net_ops, e, &e->m_net)) ||
        (rc = sim_add_model(&e->sim, &eng_ops, e, &e->m_eng)))
      goto fail;
  }
  return SIM_OK;
fail:
  sim_engine_fini(e);
  return rc;
}

void sim_engine_fini(sim_engine *e) {
  if (!e)
    return;
  sim_free(e->busy_us);
  sim_free(e->gpu_us);
  sim_free(e->gpu_comm_end);
  sim_free(e->agg_bytes);
  sim_free(e->agg_lat);
  sim_free(e->agg_cnt);
  sim_free(e->hose_all);
  sim_free(e->comp_us);
  sim_free(e->tags);
  sim_free(e->dones);
  sim_free(e->rec_a);
  sim_free(e->rec_b);
  sim_free(e->rec_kind);
  if (e->kind == SIM_ENGINE_DES) {
    sim_net_fini(&e->net);
    sim_fini(&e->sim);
  }
  memset(e, 0, sizeof(*e));
}

int sim_engine_iteration(sim_engine *e, const sim_layer_in *layers, int nlayers,
                         sim_iter_out *out) {
  return sim_engine_iteration_layers(e, layers, nlayers, out, NULL);
}

int sim_engine_iteration_layers(sim_engine *e, const sim_layer_in *layers, int nlayers,
                                sim_iter_out *out, double *layer_us) {
  if (!e || !layers || nlayers < 1 || !out)
    return SIM_EINVAL;
  int hose = e->kind == SIM_ENGINE_ANALYTIC || (e->aggregate & SIM_AGG_ALLTOALL); /* per-GPU sums */
  for (int l = 0; l < nlayers; l++) {
    const pl_routing *r = layers[l].routing;
    /* the G x G matrix is needed only by the exact network (unless padded:
     * then every pair's buffer is known) and by a hand-made routing
     * without per-GPU sums */
    if (!layers[l].placement || !r || r->gpus != e->gpus ||
        layers[l].placement->gpus != e->gpus || (!r->hose && !r->traffic) ||
        (!hose && !r->traffic && !r->padded))
      return SIM_EINVAL;
  }
  sim_iter_out o;
  memset(&o, 0, sizeof(o));
  o.layer_us = layer_us;
  if (o.layer_us)
    memset(o.layer_us, 0, sizeof(double) * (size_t)nlayers);
  double tb = (double)pl_token_bytes(&e->model);
  if (nlayers > e->hose_layers) {
    int64_t *nh = sim_realloc(e->hose_all, sizeof(int64_t) * 4 * (size_t)e->gpus * nlayers);
    if (nh)
      e->hose_all = nh;
    double *nc = sim_realloc(e->comp_us, sizeof(double) * (size_t)e->gpus * nlayers);
    if (nc)
      e->comp_us = nc;
    if (!nh || !nc)
      return SIM_ENOMEM;
    e->hose_layers = nlayers;
  }
  for (int l = 0; l < nlayers; l++) {
    const pl_routing *r = layers[l].routing;
    int64_t tok = 0;
    size_t G = (size_t)e->gpus;
    if (hose && pl_routing_wire_sums(r, layers[l].placement, e->cl.gpus_per_node,
                                     e->hose_all + (size_t)l * 4 * G))
      return SIM_EINVAL;
    /* bytes_alltoall: the tokens on the wire, which the time is charged for
     * (a capacity routing's padded buffers; the real tokens otherwise), off
     * the diagonal: each GPU's egress inside and across nodes */
    if (hose) {
      const int64_t *h = e->hose_all + (size_t)l * 4 * G;
      for (size_t g = 0; g < G; g++)
        tok += h[g] + h[2 * G + g];
    } else
      for (int s = 0; s < e->gpus; s++)
        for (int d = 0; d < e->gpus; d++)
          tok += d == s ? 0 : pl_routing_wire_tokens(r, layers[l].placement, s, d);
    o.bytes_alltoall += 4 * (int64_t)((double)tok * tb);
    for (int k = 0; k < layers[l].nmoves; k++)
      o.bytes_migrated += layers[l].moves[k].bytes;
  }
  int rc = e->kind == SIM_ENGINE_DES ? des_iteration(e, layers, nlayers, &o)
                                     : analytic_iteration(e, layers, nlayers, &o);
  if (rc)
    return rc;
  e->total_us += o.time_us;
  *out = o;
  return SIM_OK;
}

void sim_engine_events(const sim_engine *e, uint64_t *scheduled, uint64_t *executed,
                       uint64_t *cancelled) {
  int des = e->kind == SIM_ENGINE_DES;
  *scheduled = des ? e->sim.q.scheduled : 0;
  *executed = des ? e->sim.q.executed : 0;
  *cancelled = des ? e->sim.q.cancelled + (uint64_t)e->sim.q.ccount : 0;
}
