/*
 * sim_engine.c - the iteration model: one schedule (see sim_engine.h), two
 * networks behind a few primitives (wait_ns, alltoall, the transfer batch
 * xfer_*, fg_wait, drain).
 *
 * The DES has two models on one loop: the network (event: "next flow
 * finishes sending", rescheduled - the old event cancelled - whenever flows
 * start or end) and the engine (events: a flow completed, a compute phase
 * timer). The schedule drives the iteration phase by phase and steps the
 * loop until the phase's foreground flows or timer are done; background
 * flows (gradient synchronisation, background migration) simply keep going
 * across phases. The analytic engine's network (sim_fluid) needs no loop:
 * a phase's foreground flows are run to completion link by link, time
 * passes by adding to `now`, and background flows are advanced lazily.
 */
#include "sim/sim_engine.h"

#include <math.h>
#include <string.h>

#include "placement/pl_error.h"
#include "sim/sim_error.h"

enum { EV_DRAIN = 1 };
enum { EV_PHASE_DONE = 1, EV_TIMER = 2, EV_WF_REST = 3 };
/* flow kinds; a weights-first layer l's weight copies are FK_W0 + l */
enum { FK_FG = 0, FK_AR = 1, FK_MIG = 2, FK_W0 = 3 };
#define DRAIN_BATCH 256

static int wf_rest_start(sim_engine *e);
static int wf_poll(sim_engine *e, int64_t limit);

/* us -> ns into *ns. SIM_ETIME for a time past the clock (or NaN): the
 * conversion would be undefined, and a sum with it would overflow. */
static int us_ns(double us, int64_t *ns) {
  if (!(us >= 0 && us * 1e3 <= (double)SIM_TIME_MAX))
    return SIM_ETIME;
  *ns = (int64_t)llround(us * 1e3);
  return SIM_OK;
}

/* a + b into *out for times 0..SIM_TIME_MAX; SIM_ETIME past the clock. */
static int add_ns(int64_t a, int64_t b, int64_t *out) {
  if (b > SIM_TIME_MAX - a)
    return SIM_ETIME;
  *out = a + b;
  return SIM_OK;
}

/* ---------------------------------------------------------------- DES --- */

static int kick(sim_engine *e) {
  int64_t t = sim_net_next(&e->net);
  if (t < 0)
    return (int)t; /* SIM_ETIME, SIM_ELIMIT, ... */
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
    if (e->rec_kind[r] >= FK_W0) {
      int l = e->rec_kind[r] - FK_W0;
      e->wf_pending[l]--;
      if (done > e->wf_done[l])
        e->wf_done[l] = done;
      if (done > e->wf_all_done)
        e->wf_all_done = done;
      /* the last weight part: the rest starts when it lands (rule 6) */
      if (--e->wf_left == 0 && e->wf_rest) {
        int rc = sim_at(&e->sim, e->wf_all_done, e->m_eng, EV_WF_REST, 0, NULL);
        if (rc)
          return rc;
      }
    }
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
    if (t < 0)
      return (int)t;
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
  else if (ev->kind == EV_WF_REST) /* during a foreground phase: at its end */
    return e->in_fg ? (e->wf_rest = 2, SIM_OK) : wf_rest_start(e);
  else
    return SIM_EINVARIANT;
  return SIM_OK;
}

static const sim_model_ops net_ops = {"network", net_handle};
static const sim_model_ops eng_ops = {"iteration", eng_handle};

static int add_rec(sim_engine *e, int a, int b, int kind) {
  if (e->nrec >= e->max_flows)
    return SIM_ELIMIT;
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
  if (kind >= FK_W0) {
    e->wf_pending[kind - FK_W0]++;
    e->wf_left++;
  }
  return e->nrec++;
}

/* A GPU-to-GPU flow of the DES; lat_ns < 0: the path's latency. */
static int gpu_flow(sim_engine *e, int src, int dst, double bytes, int kind, int64_t lat_ns) {
  if (src == dst || !(bytes > 0))
    return SIM_OK;
  int path[SIM_NET_MAXPATH], plen;
  int64_t lat;
  sim_net_path(&e->net, src, dst, path, &plen, &lat);
  int rec = add_rec(e, src, dst, kind);
  if (rec < 0)
    return rec;
  int rc = sim_net_start_path(&e->net, e->sim.now, path, plen, lat_ns < 0 ? lat : lat_ns,
                              bytes, rec);
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

/* A hose flow of the DES: one GPU's whole egress or ingress of one class
 * over its own links. inter = cross-node, in = ingress; lat_ns < 0: the
 * class latency. */
static int hose_flow(sim_engine *e, int g, int inter, int in, double bytes, int kind,
                     int64_t lat_ns, double w) {
  if (!(bytes > 0))
    return SIM_OK;
  int path[2];
  int64_t lat;
  int plen = hose_path(&e->net, g, inter, in, path, &lat);
  int rec = add_rec(e, g, g, kind);
  if (rec < 0)
    return rec;
  int rc = sim_net_start_weighted(&e->net, e->sim.now, path, plen, lat_ns < 0 ? lat : lat_ns,
                                  bytes, w, rec);
  if (rc < 0)
    return rc;
  if (kind == FK_FG)
    e->pending_fg++;
  else
    e->pending_bg++;
  return SIM_OK;
}

/* Per-GPU sums of transfers (moves, rings, chains): agg_bytes[c * G + g]
 * for class c = 2 x inter + in (intra out, intra in, inter out, inter in),
 * agg_lat[c * G + g] the largest latency of the transfers summed there. */
static void agg_clear(sim_engine *e) {
  size_t n = 4 * (size_t)e->gpus;
  memset(e->agg_bytes, 0, n * sizeof(double));
  memset(e->agg_lat, 0, n * sizeof(int64_t));
  memset(e->agg_cnt, 0, n * sizeof(int));
}

static void agg_add(sim_engine *e, int src, int dst, double bytes, int64_t lat_ns) {
  if (src == dst || !(bytes > 0))
    return;
  int G = e->gpus, inter = src / e->cl.gpus_per_node != dst / e->cl.gpus_per_node;
  size_t o = (size_t)(2 * inter) * G + src, i = (size_t)(2 * inter + 1) * G + dst;
  e->agg_bytes[o] += bytes;
  e->agg_bytes[i] += bytes;
  e->agg_cnt[o]++;
  e->agg_cnt[i]++;
  if (lat_ns > e->agg_lat[o])
    e->agg_lat[o] = lat_ns;
  if (lat_ns > e->agg_lat[i])
    e->agg_lat[i] = lat_ns;
}

/* Starts the hose flows of the sums (GPU by GPU, class by class: a fixed
 * order, so runs are deterministic) on the engine's network. A foreground
 * flow of the analytic network is tagged with its GPU. */
static int agg_start(sim_engine *e, int kind) {
  int G = e->gpus, rc = SIM_OK;
  for (int g = 0; g < G && !rc; g++)
    for (int c = 0; c < 4 && !rc; c++) {
      size_t k = (size_t)c * G + g;
      if (!(e->agg_bytes[k] > 0))
        continue;
      if (e->kind == SIM_ENGINE_DES)
        rc = hose_flow(e, g, c >> 1, c & 1, e->agg_bytes[k], kind, e->agg_lat[k],
                       (double)e->agg_cnt[k]);
      else
        rc = sim_fluid_start(&e->fluid, e->sim.now, g, c >> 1, c & 1, e->agg_bytes[k],
                             (double)e->agg_cnt[k], e->agg_lat[k], kind == FK_FG ? g : -1,
                             kind, NULL);
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
    return hose_flow(e, g, inter, in, bytes, FK_FG, -1, w);
  int64_t now = e->sim.now;
  double x = ceil((double)now + bytes / n->links[link].cap - 1e-6);
  if (!(x <= (double)SIM_TIME_MAX))
    return SIM_ETIME;
  int64_t t = (int64_t)x;
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

/* Expert compute of GPU g in the forward pass, split into its own experts
 * (own) and the shadows it holds of other owners (sh), us: the same terms
 * as gpu_compute_us, an expert's tokens going to `sh` when owner[e] is
 * another GPU. */
static void gpu_compute_split(const sim_engine *e, const pl_routing *r, const pl_placement *p,
                              const int *owner, int g, double *own, double *sh) {
  *own = *sh = 0;
  const int *host = p->host + (size_t)g * p->slots;
  for (int j = 0; j < p->nhost[g]; j++) {
    int x = host[j];
    int64_t t = r->padded ? pl_routing_compute_tokens(r, p, g, x)
                          : r->load[(size_t)g * r->experts + x];
    if (!t)
      continue;
    double us = pl_ffn_us(&e->prof, (double)t);
    if (owner[x] >= 0 && owner[x] != g)
      *sh += us;
    else
      *own += us;
  }
}

/* Forward compute of every GPU with temporaries (pl_policy.h's contract):
 * ns_us its planned experts, sh_us its temporaries, the same terms as
 * gpu_compute_us. */
static void temps_compute_split(sim_engine *e, const sim_layer_in *L) {
  const pl_routing *r = L->routing;
  const pl_placement *p = L->placement;
  for (int g = 0; g < e->gpus; g++) {
    e->ns_us[g] = L->shadow_owner ? 0 : gpu_compute_us(e, r, p, g);
    e->sh_us[g] = 0;
    if (L->shadow_owner)
      gpu_compute_split(e, r, p, L->shadow_owner, g, &e->ns_us[g], &e->sh_us[g]);
  }
  for (int k = 0; k < L->ntemps; k++) {
    int x = L->temps[k].expert, g = L->temps[k].to;
    int64_t t = r->padded ? pl_routing_compute_tokens(r, p, g, x)
                          : r->load[(size_t)g * r->experts + x];
    double us = t ? pl_ffn_us(&e->prof, (double)t) : 0;
    e->ns_us[g] -= us;
    e->sh_us[g] += us;
  }
  for (int g = 0; g < e->gpus; g++)
    if (e->ns_us[g] < 0)
      e->ns_us[g] = 0; /* rounding of the difference */
}

static int wait_ns(sim_engine *e, int64_t dur);

/* Runs the loop until the foreground flows started since the last call have
 * all completed (at the latest completion time). */
static int fg_phase_run(sim_engine *e, int64_t lone_done) {
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

/* fg_phase_run, and the rest of the background moves when their start
 * (rule 6) came during the phase: background flows join the network
 * between foreground phases (fg_hose_flow's closed form relies on it). */
static int run_until_fg_done(sim_engine *e, int64_t lone_done) {
  e->in_fg = 1;
  int rc = fg_phase_run(e, lone_done);
  e->in_fg = 0;
  return !rc && e->wf_rest == 2 ? wf_rest_start(e) : rc;
}

/* ------------------------------------------- the networks, one interface --- */

/* Lets time pass by dur ns while the network carries what it carries. */
static int wait_ns(sim_engine *e, int64_t dur) {
  if (dur <= 0)
    return SIM_OK;
  if (dur > SIM_TIME_MAX - e->sim.now)
    return SIM_ETIME;
  if (e->kind != SIM_ENGINE_DES || sim_evq_pending(&e->sim.q) == 0) {
    e->sim.now += dur; /* the fluid network is advanced lazily; an empty DES has nothing to run */
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

static void fluid_done(void *arg, int64_t tag, int64_t t) {
  mark_end(arg, (int)tag, t);
}

/* Waits until every foreground flow started since the phase began has
 * completed; gpu_comm_end[g] = the last completion among GPU g's flows
 * (the phase start for a GPU without any). lone_done: the DES's closed-form
 * completions (fg_hose_flow). */
static int fg_wait(sim_engine *e, int64_t lone_done) {
  if (e->kind == SIM_ENGINE_DES)
    return run_until_fg_done(e, lone_done);
  int64_t end;
  int rc = sim_fluid_run_fg(&e->fluid, e->sim.now, fluid_done, e, &end);
  if (lone_done > end)
    end = lone_done;
  if (!rc && end > e->sim.now)
    e->sim.now = end;
  e->fg_floor = e->sim.now;
  return rc;
}

static void phase_begin(sim_engine *e) {
  for (int g = 0; g < e->gpus; g++)
    e->gpu_comm_end[g] = e->sim.now;
}

/* One all-to-all, forward (src -> dst as the routing says) or reverse, of
 * the tokens on the wire (pl_routing_wire_tokens: padded buffers for a
 * capacity routing), until its last flow completes. Hose flows need
 * e->hose (pl_routing_wire_sums); the exact DES network sends every pair. */
static int alltoall(sim_engine *e, const pl_routing *r, const pl_placement *p, int reverse) {
  int G = e->gpus;
  double tb = (double)pl_token_bytes(&e->model);
  int64_t lone_done = 0;
  int rc = wf_poll(e, e->sim.now);
  if (rc)
    return rc;
  phase_begin(e);
  /* The analytic network without background flows: the layer's four
   * all-to-alls take the same time GPU by GPU (dispatch and combine swap
   * each GPU's in and out bytes over links of equal capacity), so the
   * first one's result is replayed. The links it used are empty again. */
  int replay = e->kind != SIM_ENGINE_DES && e->fluid.nbg == 0;
  if (replay && e->a2a_layer == e->cur_layer) {
    for (int g = 0; g < G; g++)
      e->gpu_comm_end[g] = e->sim.now + e->a2a_off[g];
    e->sim.now += e->a2a_dur;
    return SIM_OK;
  }
  if (e->kind != SIM_ENGINE_DES) {
    int gpn = e->cl.gpus_per_node;
    double w[2] = {gpn > 1 ? gpn - 1 : 1, G > gpn ? G - gpn : 1};
    rc = sim_fluid_hose_phase(&e->fluid, e->sim.now, e->hose, reverse, tb, w, e->gpu_comm_end,
                              &lone_done);
  } else if (e->aggregate & SIM_AGG_ALLTOALL) {
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
        for (int dir = 0; dir < 2 && !rc; dir++) {
          double bytes = (double)(dir ? in : out) * tb;
          rc = fg_hose_flow(e, g, x, dir, bytes, w[x], &lone_done);
        }
      }
  } else {
    for (int s = 0; s < G && !rc; s++) {
      for (int d = 0; d < G && !rc; d++) {
        int64_t tok = d == s ? 0 : pl_routing_wire_tokens(r, p, s, d);
        if (!tok)
          continue;
        double bytes = (double)tok * tb;
        rc = reverse ? gpu_flow(e, d, s, bytes, FK_FG, -1) : gpu_flow(e, s, d, bytes, FK_FG, -1);
      }
    }
  }
  int64_t t0 = e->sim.now;
  if (!rc)
    rc = fg_wait(e, lone_done);
  if (!rc && replay) {
    e->a2a_layer = e->cur_layer;
    e->a2a_dur = e->sim.now - t0;
    for (int g = 0; g < G; g++)
      e->a2a_off[g] = e->gpu_comm_end[g] - t0;
  }
  return rc;
}

/* A batch of GPU-to-GPU transfers of one kind (FK_FG: the schedule waits
 * for them with fg_wait; FK_AR, FK_MIG: background): moves, ring steps,
 * chain steps. Summed into per-GPU hose flows (agg_*), or with the exact
 * DES network one flow each. */
static int batch_agg(const sim_engine *e) {
  return e->kind != SIM_ENGINE_DES || (e->aggregate & SIM_AGG_BACKGROUND);
}

static void xfer_begin(sim_engine *e, int kind) {
  e->xkind = kind;
  e->xany = 0;
  if (batch_agg(e))
    agg_clear(e);
}

static int xfer_add(void *arg, int src, int dst, double bytes, int64_t lat_ns) {
  sim_engine *e = arg;
  if (src == dst || !(bytes > 0))
    return SIM_OK;
  e->xany = 1;
  if (!batch_agg(e))
    return gpu_flow(e, src, dst, bytes, e->xkind, lat_ns);
  agg_add(e, src, dst, bytes, lat_ns);
  return SIM_OK;
}

static int xfer_start(sim_engine *e) {
  if (!e->xany)
    return SIM_OK;
  int rc = batch_agg(e) ? agg_start(e, e->xkind) : SIM_OK;
  if (!rc && e->kind == SIM_ENGINE_DES)
    rc = kick(e);
  return rc;
}

/* Waits for every background transfer; *tail_us = how long past now, and
 * the kind of the last one to complete (FK_AR when none). */
static int drain(sim_engine *e, double *tail_us, int *kind) {
  int64_t fg_end = e->sim.now;
  int rc = SIM_OK;
  if (e->kind == SIM_ENGINE_DES) {
    while (e->pending_bg > 0 || e->wf_rest) { /* wf_rest: its EV_WF_REST is queued */
      int s = sim_step(&e->sim);
      if (s < 0)
        return s;
      if (s == 0)
        return SIM_EINVARIANT;
    }
    if (e->bg_last_done > e->sim.now && (rc = wait_ns(e, e->bg_last_done - e->sim.now)))
      return rc;
    *kind = e->last_bg_kind;
  } else {
    int64_t end;
    int k;
    if ((rc = wf_poll(e, SIM_TIME_MAX)))
      return rc;
    if (e->wf_rest)
      return SIM_EINVARIANT; /* every weight flow has completed by now */
    if ((rc = sim_fluid_drain(&e->fluid, e->sim.now, &end, &k)))
      return rc;
    e->sim.now = end;
    *kind = k < 0 ? FK_AR : k;
  }
  *tail_us = (double)(e->sim.now - fg_end) * 1e-3;
  return SIM_OK;
}

/* ------------------------------------------------ synchronisation plan --- */

static int64_t hop_ns(const sim_cluster *cl, int a, int b) {
  int inter = a / cl->gpus_per_node != b / cl->gpus_per_node;
  return (int64_t)llround((inter ? cl->inter_lat_us : cl->intra_lat_us) * 1e3);
}

/* The chain of shadowed expert x: its replicas in ascending GPU order,
 * rotated to start at the owner; calls fn per step (forward: towards the
 * end; backward: towards the owner). */
static int chain(const sim_cluster *cl, const pl_placement *p, int x, int owner, double bytes,
                 int backward, sim_xfer_fn fn, void *arg) {
  int n = p->nrep[x];
  const int *rep = p->rep + (size_t)x * p->gpus;
  int at = 0;
  while (at < n && rep[at] != owner)
    at++;
  if (at == n || n < 2)
    return SIM_OK; /* the owner holds no copy, or nobody else does: nothing to send */
  int64_t lat = 0;
  for (int k = 0; k + 1 < n; k++)
    lat += hop_ns(cl, rep[(at + k) % n], rep[(at + k + 1) % n]);
  for (int k = 0; k + 1 < n; k++) {
    int a = rep[(at + k) % n], b = rep[(at + k + 1) % n];
    int rc = backward ? fn(arg, b, a, bytes, lat) : fn(arg, a, b, bytes, lat);
    if (rc)
      return rc;
  }
  return SIM_OK;
}

int sim_sync_transfers(const sim_cluster *cl, const pl_model *m, const pl_placement *p,
                       const int *shadow_owner, int backward, sim_xfer_fn fn, void *arg) {
  if (!cl || !m || !p || !fn)
    return SIM_EINVAL;
  double grad = (double)pl_expert_params(m) * m->bytes_per_elem;
  int rc = SIM_OK;
  for (int x = 0; x < p->experts && !rc; x++) {
    int n = p->nrep[x];
    if (n < 2)
      continue;
    if (shadow_owner && shadow_owner[x] >= 0) {
      rc = chain(cl, p, x, shadow_owner[x], grad, backward, fn, arg);
      continue;
    }
    if (!backward)
      continue;
    const int *rep = p->rep + (size_t)x * p->gpus;
    /* replicas ascend, so the ring spans nodes iff its ends are on two */
    int64_t lat = 2 * (int64_t)(n - 1) * hop_ns(cl, rep[0], rep[n - 1]);
    double bytes = 2.0 * (n - 1) / n * grad;
    for (int k = 0; k < n && !rc; k++)
      rc = fn(arg, rep[k], rep[(k + 1) % n], bytes, lat);
  }
  return rc;
}

typedef struct sync_ctx {
  sim_engine *e;
  int64_t bytes;
} sync_ctx;

static int sync_add(void *arg, int src, int dst, double bytes, int64_t lat_ns) {
  sync_ctx *c = arg;
  c->bytes += src != dst ? (int64_t)bytes : 0;
  return xfer_add(c->e, src, dst, bytes, lat_ns);
}

/* The temporaries' transfers of one pass (pl_policy.h's contract):
 * forward their weights from -> to, backward their gradients to -> from,
 * parameter bytes each. */
static int temp_transfers(sim_engine *e, const sim_layer_in *L, int backward, sync_ctx *c) {
  double bytes = (double)pl_expert_params(&e->model) * e->model.bytes_per_elem;
  int rc = SIM_OK;
  for (int k = 0; k < L->ntemps && !rc; k++) {
    int a = L->temps[k].from, b = L->temps[k].to;
    rc = backward ? sync_add(c, b, a, bytes, hop_ns(&e->cl, a, b))
                  : sync_add(c, a, b, bytes, hop_ns(&e->cl, a, b));
  }
  return rc;
}

/* Starts layer l's synchronisation transfers of one pass as a batch of
 * `kind`; their bytes are added to o->bytes_sync. With temporaries the
 * replica all-reduce runs over the planned placement. */
static int start_sync(sim_engine *e, const sim_layer_in *L, int backward, int kind,
                      sim_iter_out *o) {
  sync_ctx c = {.e = e, .bytes = 0};
  int rc0 = wf_poll(e, e->sim.now);
  if (rc0)
    return rc0;
  xfer_begin(e, kind);
  const pl_placement *p = L->ntemps ? L->planned : L->placement;
  int rc = sim_sync_transfers(&e->cl, &e->model, p, L->shadow_owner, backward, sync_add, &c);
  if (!rc && L->ntemps)
    rc = temp_transfers(e, L, backward, &c);
  o->bytes_sync += c.bytes;
  return rc ? rc : xfer_start(e);
}

/* Starts the charged moves of the iteration that are (background = 1) or
 * are not (0) in the background, as a batch of `kind`. */
static int start_moves(sim_engine *e, const sim_layer_in *L, int nl, int background, int kind) {
  xfer_begin(e, kind);
  int rc = SIM_OK;
  for (int l = 0; l < nl && !rc; l++) {
    if (!L[l].background != !background || L[l].uncharged || !L[l].nmoves)
      continue;
    for (int k = 0; k < L[l].nmoves && !rc; k++) {
      const pl_move *mv = &L[l].moves[k];
      if (mv->to < 0 || mv->from < 0)
        continue;
      rc = xfer_add(e, mv->from, mv->to, (double)mv->bytes, hop_ns(&e->cl, mv->from, mv->to));
    }
  }
  return rc ? rc : xfer_start(e);
}

/* Weights-first moves (pl_policy.h rule 6; sim_layer_in.weights_first). */
static int is_wf(const sim_layer_in *L) {
  return L->weights_first && L->background && !L->uncharged && L->nmoves > 0;
}

/* The analytic network's report of a weight flow's completion (whichever
 * advance of the network it came in): layer l's latest. */
static void wf_landed(void *arg, int kind, int64_t t) {
  sim_engine *e = arg;
  int l = kind - FK_W0;
  if (l >= 0 && l < e->wf_cap && t > e->wf_done[l])
    e->wf_done[l] = t;
}

/* Starts the iteration's background moves. Without a weights-first layer:
 * all of them, at once (start_moves). With one: the weight parts of each
 * weights-first layer l as its own batch (kind FK_W0 + l, so its completion
 * is known); the rest (state parts, plain background moves) start when the
 * last weight part lands (rule 6: wf_rest_start; the DES's EV_WF_REST,
 * the analytic network's wf_poll), at once when no weight part needs the
 * network. */
static int wf_start(sim_engine *e, const sim_layer_in *L, int nl) {
  e->wf_last = -1;
  e->wf_rest = 0;
  e->wf_left = 0;
  e->wf_all_done = 0;
  e->in_fg = 0;
  e->fg_floor = e->sim.now;
  e->wf_L = L;
  e->wf_nl = nl;
  for (int l = 0; l < nl; l++)
    if (is_wf(&L[l]))
      e->wf_last = l;
  if (e->kind != SIM_ENGINE_DES)
    sim_fluid_track_kinds(&e->fluid, -1, NULL, NULL);
  if (e->wf_last < 0)
    return start_moves(e, L, nl, 1, FK_MIG);
  if (nl > e->wf_cap) {
    int64_t *np = sim_realloc(e->wf_pending, sizeof(int64_t) * 2 * (size_t)nl);
    if (!np)
      return SIM_ENOMEM;
    e->wf_pending = np;
    e->wf_done = np + nl;
    e->wf_cap = nl;
  }
  memset(e->wf_pending, 0, sizeof(int64_t) * 2 * (size_t)e->wf_cap);
  if (e->kind != SIM_ENGINE_DES)
    sim_fluid_track_kinds(&e->fluid, FK_W0, wf_landed, e);
  int rc = SIM_OK;
  for (int l = 0; l < nl && !rc; l++) {
    if (!is_wf(&L[l]))
      continue;
    xfer_begin(e, FK_W0 + l);
    for (int k = 0; k < L[l].nmoves && !rc; k++) {
      const pl_move *mv = &L[l].moves[k];
      if (mv->to >= 0 && mv->from >= 0)
        rc = xfer_add(e, mv->from, mv->to, (double)mv->weight_bytes,
                      hop_ns(&e->cl, mv->from, mv->to));
    }
    if (!rc)
      rc = xfer_start(e);
  }
  if (rc)
    return rc;
  e->wf_rest = 1;
  int64_t left = e->wf_left;
  if (e->kind != SIM_ENGINE_DES)
    left = e->fluid.track_left;
  return left == 0 ? wf_rest_start(e) : SIM_OK;
}

/* The rest of the iteration's background moves once every weight part has
 * landed: the state parts of weights-first layers and the plain moves. */
static int wf_rest(sim_engine *e, const sim_layer_in *L, int nl) {
  xfer_begin(e, FK_MIG);
  int rc = SIM_OK;
  for (int l = 0; l < nl && !rc; l++) {
    if (!L[l].background || L[l].uncharged || !L[l].nmoves)
      continue;
    int wf = is_wf(&L[l]);
    for (int k = 0; k < L[l].nmoves && !rc; k++) {
      const pl_move *mv = &L[l].moves[k];
      if (mv->to >= 0 && mv->from >= 0)
        rc = xfer_add(e, mv->from, mv->to, (double)(mv->bytes - (wf ? mv->weight_bytes : 0)),
                      hop_ns(&e->cl, mv->from, mv->to));
    }
  }
  return rc ? rc : xfer_start(e);
}

/* Starts the rest now (e->sim.now), once. */
static int wf_rest_start(sim_engine *e) {
  if (!e->wf_rest)
    return SIM_EINVARIANT;
  e->wf_rest = 0;
  return wf_rest(e, e->wf_L, e->wf_nl);
}

/* The analytic network's start of the rest, called before the schedule
 * touches the network (a phase's flows, a background batch, a weights
 * fence, the drain; limit = now, or past every completion for the drain).
 * Once every weight flow has completed by limit, the rest starts at the
 * latest completion, or at the end of the foreground phase running then:
 * what the DES's EV_WF_REST does. The network's clocks are then at most
 * that time (sim_fluid_track stops at the weights' completions, phases
 * end at fg_floor), so the rest's flows start there exactly. */
static int wf_poll(sim_engine *e, int64_t limit) {
  if (e->kind == SIM_ENGINE_DES || !e->wf_rest)
    return SIM_OK;
  int64_t left, last;
  int rc = sim_fluid_track(&e->fluid, limit, &left, &last);
  if (rc || left > 0 || last > limit)
    return rc;
  int64_t now = e->sim.now;
  e->sim.now = last > e->fg_floor ? last : e->fg_floor; /* the batch starts at sim.now */
  rc = wf_rest_start(e);
  e->sim.now = now;
  return rc;
}

/* Before layer l's forward dispatch: waits for its weight copies (the wait
 * is migration: the forward cannot start without them). The rest starts
 * on its own when the last weight part lands (wf_start), not here. */
static int wf_fence(sim_engine *e, int l, sim_iter_out *o) {
  if (e->wf_last < 0 || !is_wf(&e->wf_L[l]))
    return SIM_OK;
  int64_t t0 = e->sim.now, end = t0;
  int rc = SIM_OK;
  if (e->kind == SIM_ENGINE_DES) {
    while (!rc && e->wf_pending[l] > 0) {
      int st = sim_step(&e->sim);
      rc = st < 0 ? st : st == 0 ? SIM_EINVARIANT : SIM_OK;
    }
    end = e->wf_done[l];
  } else if (!(rc = wf_poll(e, t0)) &&
             !(rc = sim_fluid_settle_kind(&e->fluid, t0, FK_W0 + l, &end))) {
    /* the layer's weights may have completed in an earlier advance */
    if (e->wf_done[l] > end)
      end = e->wf_done[l];
  }
  if (!rc && end > e->sim.now)
    rc = wait_ns(e, end - e->sim.now);
  if (rc)
    return rc;
  o->migration_us += (double)(e->sim.now - t0) * 1e-3;
  return SIM_OK;
}

/* ----------------------------------------------------------- schedule --- */

/* Layer l's forward compute when it holds shadows: the shadow broadcasts
 * run beside the own experts' compute, a GPU computes its shadows once
 * their weights have arrived. Adds the compute to o->compute_us and the
 * wait beyond it to o->allreduce_us. */
static int shadowed_compute(sim_engine *e, const sim_layer_in *L, sim_iter_out *o,
                            double *fwd, double *worst_out) {
  int G = e->gpus;
  int64_t ts = e->sim.now;
  phase_begin(e);
  int rc = start_sync(e, L, 0, FK_FG, o);
  if (!rc)
    rc = fg_wait(e, 0);
  if (rc)
    return rc;
  double worst = 0;
  int64_t end = ts;
  for (int g = 0; g < G; g++) {
    double own = e->ns_us[g], sh = e->sh_us[g];
    fwd[g] = own + sh;
    worst = fmax(worst, own + sh);
    int64_t own_ns, sh_ns, ready, done;
    if ((rc = us_ns(own, &own_ns)) || (rc = us_ns(sh, &sh_ns)) ||
        (rc = add_ns(ts, own_ns, &ready)))
      return rc;
    if (e->gpu_comm_end[g] > ready)
      ready = e->gpu_comm_end[g];
    if ((rc = add_ns(ready, sh_ns, &done)))
      return rc;
    if (done > end)
      end = done;
  }
  if (end > e->sim.now && (rc = wait_ns(e, end - e->sim.now)))
    return rc;
  double phase = (double)(e->sim.now - ts) * 1e-3;
  o->compute_us += fmin(worst, phase);
  o->allreduce_us += fmax(0.0, phase - worst);
  *worst_out = worst;
  return SIM_OK;
}

/* A communication phase begun at t0 has ended: each GPU busy until its
 * own transfers ended; returns the phase's length (us). */
static double comm_phase_us(sim_engine *e, int64_t t0) {
  for (int g = 0; g < e->gpus; g++)
    e->busy_us[g] += (double)(e->gpu_comm_end[g] - t0) * 1e-3;
  return (double)(e->sim.now - t0) * 1e-3;
}

/* The iteration's blocking moves, when it has any, as one phase before
 * the layers: each GPU's busy time and o->migration_us. */
static int blocking_moves(sim_engine *e, const sim_layer_in *L, int nl, sim_iter_out *o) {
  int any = 0;
  for (int l = 0; l < nl; l++)
    if (L[l].nmoves && !L[l].background && !L[l].uncharged)
      any = 1;
  if (!any)
    return SIM_OK;
  int64_t tm = e->sim.now;
  phase_begin(e);
  int rc = start_moves(e, L, nl, 0, FK_FG);
  if (!rc)
    rc = fg_wait(e, 0);
  if (rc)
    return rc;
  o->migration_us += comm_phase_us(e, tm);
  return SIM_OK;
}

/* One all-to-all of the current layer (reverse = 1: the combine) as a
 * phase: each GPU's busy time and o->alltoall_us. */
static int a2a_phase(sim_engine *e, const sim_layer_in *Ll, int reverse, sim_iter_out *o) {
  int64_t ts = e->sim.now;
  int rc = alltoall(e, Ll->routing, Ll->placement, reverse);
  if (rc)
    return rc;
  o->alltoall_us += comm_phase_us(e, ts);
  return SIM_OK;
}

/* Layer l's expert compute in pass `pass`: the slowest GPU's (the forward
 * computes each GPU's, the backward reuses them times bwd_ratio); with
 * shadows or temporaries the forward waits for their weights
 * (shadowed_compute). */
static int expert_compute(sim_engine *e, const sim_layer_in *Ll, int l, int pass,
                          sim_iter_out *o) {
  int G = e->gpus, rc;
  const pl_routing *r = Ll->routing;
  const pl_placement *p = Ll->placement;
  double worst = 0, *fwd = e->comp_us + (size_t)l * G, *busy = e->busy_us;
  if (pass == 0 && (Ll->shadow_owner != NULL || Ll->ntemps > 0)) {
    if (Ll->ntemps)
      temps_compute_split(e, Ll);
    else
      for (int g = 0; g < G; g++)
        gpu_compute_split(e, r, p, Ll->shadow_owner, g, &e->ns_us[g], &e->sh_us[g]);
    if ((rc = shadowed_compute(e, Ll, o, fwd, &worst)))
      return rc;
    for (int g = 0; g < G; g++)
      busy[g] += fwd[g];
    return SIM_OK;
  }
  double mult = pass == 0 ? 1.0 : e->prof.bwd_ratio;
  for (int g = 0; g < G; g++) {
    if (pass == 0)
      fwd[g] = gpu_compute_us(e, r, p, g);
    double us = fwd[g] * mult;
    busy[g] += us;
    if (us > worst)
      worst = us;
  }
  int64_t ts = e->sim.now, worst_ns;
  if ((rc = us_ns(worst, &worst_ns)) || (rc = wait_ns(e, worst_ns)))
    return rc;
  o->compute_us += (double)(e->sim.now - ts) * 1e-3;
  return SIM_OK;
}

/* Layer l in pass `pass` (0 forward, 1 backward): its other work
 * (other_ns), in the forward the policy's decision (decide_us, as other
 * work), the weights-first fence, the dispatch, the
 * expert compute and the combine; in the backward its gradient
 * synchronisation then starts in the background. */
static int layer_pass(sim_engine *e, const sim_layer_in *L, int l, int pass, int64_t other_ns,
                      sim_iter_out *o) {
  int G = e->gpus, rc;
  e->hose = e->hose_all + (size_t)l * 4 * G;
  e->cur_layer = l;
  int64_t layer_t0 = e->sim.now, decide_ns = 0;
  /* the forward's dispatch also waits for the policy's decision on the
   * host, which starts once the gate (the other work) has run */
  if (pass == 0 && L[l].decide_us > 0 && (rc = us_ns(L[l].decide_us, &decide_ns)))
    return rc;
  if ((rc = wait_ns(e, other_ns)) || (rc = wait_ns(e, decide_ns)))
    return rc;
  o->other_us += (double)(e->sim.now - layer_t0) * 1e-3;
  for (int g = 0; g < G; g++)
    e->busy_us[g] += e->prof.nonmoe_us;
  if ((pass == 0 && (rc = wf_fence(e, l, o))) || (rc = a2a_phase(e, &L[l], 0, o)) ||
      (rc = expert_compute(e, &L[l], l, pass, o)) || (rc = a2a_phase(e, &L[l], 1, o)))
    return rc;
  if (o->layer_us)
    o->layer_us[l] += (double)(e->sim.now - layer_t0) * 1e-3;
  return pass == 1 ? start_sync(e, &L[l], 1, FK_AR, o) : SIM_OK;
}

/* One iteration of the nl layers L: the blocking moves, the forward and
 * the backward layer by layer (background flows running beside them), then
 * what is still in flight drained into migration or all-reduce time. */
static int schedule(sim_engine *e, const sim_layer_in *L, int nl, sim_iter_out *o) {
  int rc;
  int64_t t0 = e->sim.now, other_ns;
  if ((rc = us_ns(e->prof.nonmoe_us, &other_ns)))
    return rc;
  e->pending_bg = 0;
  e->a2a_layer = -1; /* this iteration's routings are new */
  e->nrec = 0; /* every flow of the previous iteration has completed */
  e->net.work_limit = e->net.work + e->max_work;
  e->last_bg_kind = FK_AR;
  e->bg_last_done = 0;
  /* migration: blocking phase first, or background from the start */
  if ((rc = blocking_moves(e, L, nl, o)) || (rc = wf_start(e, L, nl)))
    return rc;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < nl; i++)
      if ((rc = layer_pass(e, L, pass == 0 ? i : nl - 1 - i, pass, other_ns, o)))
        return rc;
  double tail;
  int kind;
  if ((rc = drain(e, &tail, &kind)))
    return rc;
  if (kind == FK_MIG)
    o->migration_us += tail;
  else
    o->allreduce_us += tail;
  o->time_us = (double)(e->sim.now - t0) * 1e-3;
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
  e->max_flows = SIM_ENGINE_MAX_FLOWS;
  e->max_work = SIM_ENGINE_MAX_WORK;
  int rc = SIM_ENOMEM;
  e->busy_us = sim_calloc((size_t)e->gpus, sizeof(double));
  e->gpu_comm_end = sim_calloc((size_t)e->gpus, sizeof(int64_t));
  e->agg_bytes = sim_calloc(4 * (size_t)e->gpus, sizeof(double));
  e->agg_lat = sim_calloc(4 * (size_t)e->gpus, sizeof(int64_t));
  e->agg_cnt = sim_calloc(4 * (size_t)e->gpus, sizeof(int));
  e->ns_us = sim_calloc((size_t)e->gpus, sizeof(double));
  e->a2a_off = sim_calloc((size_t)e->gpus, sizeof(int64_t));
  e->sh_us = sim_calloc((size_t)e->gpus, sizeof(double));
  if (!e->busy_us || !e->gpu_comm_end || !e->agg_bytes || !e->agg_lat ||
      !e->agg_cnt || !e->ns_us || !e->sh_us || !e->a2a_off)
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
  } else if ((rc = sim_fluid_init(&e->fluid, cl))) {
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
  sim_free(e->gpu_comm_end);
  sim_free(e->agg_bytes);
  sim_free(e->agg_lat);
  sim_free(e->agg_cnt);
  sim_free(e->ns_us);
  sim_free(e->a2a_off);
  sim_free(e->sh_us);
  sim_free(e->hose_all);
  sim_free(e->comp_us);
  sim_free(e->tags);
  sim_free(e->dones);
  sim_free(e->rec_a);
  sim_free(e->rec_b);
  sim_free(e->rec_kind);
  sim_free(e->wf_pending);
  if (e->kind == SIM_ENGINE_DES) {
    sim_net_fini(&e->net);
    sim_fini(&e->sim);
  } else {
    sim_fluid_fini(&e->fluid);
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
    if (layers[l].ntemps < 0 ||
        (layers[l].ntemps && (!layers[l].temps || !layers[l].planned ||
                              layers[l].planned->gpus != e->gpus)))
      return SIM_EINVAL;
    for (int k = 0; k < layers[l].ntemps; k++) {
      const pl_temp *t = &layers[l].temps[k];
      if (t->from < 0 || t->from >= e->gpus || t->to < 0 || t->to >= e->gpus ||
          t->expert < 0 || t->expert >= layers[l].placement->experts)
        return SIM_EINVAL;
    }
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
    /* the clamp keeps the cast defined; the CLI's model ranges keep every
     * layer far below it (docs/simulator.md, Limits) */
    double bytes = (double)tok * tb;
    if (!(bytes <= 0x1p60) || 4 * (int64_t)bytes > INT64_MAX - o.bytes_alltoall)
      return SIM_ERANGE;
    o.bytes_alltoall += 4 * (int64_t)bytes;
    for (int k = 0; k < layers[l].nmoves; k++)
      o.bytes_migrated += layers[l].moves[k].bytes;
  }
  int rc = schedule(e, layers, nlayers, &o);
  if (rc)
    return rc;
  e->total_us += o.time_us;
  *out = o;
  return SIM_OK;
}

uint64_t sim_engine_flows(const sim_engine *e) {
  return e->kind == SIM_ENGINE_DES ? e->net.started : 0;
}

void sim_engine_events(const sim_engine *e, uint64_t *scheduled, uint64_t *executed,
                       uint64_t *cancelled) {
  int des = e->kind == SIM_ENGINE_DES;
  *scheduled = des ? e->sim.q.scheduled : 0;
  *executed = des ? e->sim.q.executed : 0;
  *cancelled = des ? e->sim.q.cancelled + (uint64_t)e->sim.q.ccount : 0;
}
