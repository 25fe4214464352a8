/*
 * sim_fluid.c - per-link fluid network of the analytic engine (see
 * sim_fluid.h).
 *
 * Invariants: a link's clock never runs backwards; its flows' `left` is the
 * bytes still to send at that clock; nfg counts its foreground flows; a link
 * is on the foreground list at most once (listed); nbg counts background
 * flows on all links.
 *
 * Time bound: a completion past SIM_TIME_MAX is SIM_ETIME, never a cast of
 * a double beyond int64. Every flow on a link has a positive rate (capacity
 * >= 1e-6 bytes per ns, weights > 0, caps > 0), so advancing always makes
 * progress; a link that could not would be SIM_EINVARIANT, not an abort.
 */
#include "sim/sim_fluid.h"

#include <math.h>
#include <string.h>

#include "sim/sim_error.h"
#include "sim/sim_evq.h"

/* A flow whose bytes left would be sent in under this many ns has ended
 * (what remains is floating-point residue of rate x time). */
#define DONE_NS 1e-6

int sim_fluid_init(sim_fluid *f, const sim_cluster *c) {
  memset(f, 0, sizeof(*f));
  int rc = sim_net_init(&f->topo, c);
  if (rc)
    return rc;
  int n = f->topo.nlinks, G = f->topo.gpus;
  f->links = sim_calloc((size_t)n, sizeof(sim_fluid_link));
  f->fgl = sim_calloc((size_t)n, sizeof(int));
  f->link_of = sim_calloc(4 * (size_t)G, sizeof(int));
  f->rcap_of = sim_calloc(4 * (size_t)G, sizeof(double));
  f->alone = sim_calloc(4 * (size_t)G, 1);
  if (!f->links || !f->fgl || !f->link_of || !f->rcap_of || !f->alone) {
    sim_fluid_fini(f);
    return SIM_ENOMEM;
  }
  for (int l = 0; l < n; l++)
    f->links[l].cap = f->topo.links[l].cap;
  /* each hose class's link: its own, or the shared tier of its route, with
   * the first (own) link's capacity as the flow's cap */
  for (int cls = 0; cls < 4; cls++)
    for (int g = 0; g < G; g++) {
      int inter = cls >> 1, in = cls & 1, path[2], plen = 1;
      if (!inter)
        path[0] = in ? f->topo.intra_in0 + g : f->topo.intra_out0 + g;
      else
        plen = sim_net_inter_half(&f->topo, g, in, path);
      int own = in ? path[plen - 1] : path[0];  /* the NIC side */
      int tier = in ? path[0] : path[plen - 1]; /* the uplink side */
      size_t c = (size_t)cls * G + g;
      f->link_of[c] = tier;
      f->rcap_of[c] = f->topo.links[own].cap;
      f->links[tier].shared |= own != tier || (inter && f->topo.nic_per_node);
      f->alone[c] = own == tier && !(inter && f->topo.nic_per_node);
    }
  f->bg_last_kind = -1;
  f->watch_kind = -1;
  f->track_kind = -1;
  return SIM_OK;
}

void sim_fluid_fini(sim_fluid *f) {
  if (!f)
    return;
  if (f->links)
    for (int l = 0; l < f->topo.nlinks; l++)
      sim_free(f->links[l].f);
  sim_free(f->links);
  sim_free(f->fgl);
  sim_free(f->link_of);
  sim_free(f->rcap_of);
  sim_free(f->alone);
  sim_net_fini(&f->topo);
  memset(f, 0, sizeof(*f));
}

/* Rates of a link's flows: weighted shares of its capacity, each at most
 * its cap; what a capped flow cannot take goes to the others (water
 * filling, flows visited by cap / weight, ties by index). */
static void set_rates(sim_fluid_link *k) {
  if (k->n == 1) {
    k->f[0].rate = fmin(k->cap, k->f[0].rcap);
    k->rated = 1;
    return;
  }
  double C = k->cap, W = 0;
  for (int i = 0; i < k->n; i++)
    W += k->f[i].w;
  int capped = 0;
  for (int i = 0; k->shared && i < k->n; i++)
    capped |= k->f[i].rcap < k->f[i].w * C / W;
  if (!capped) { /* plain weighted shares (every flow on a link of its own) */
    for (int i = 0; i < k->n; i++)
      k->f[i].rate = k->f[i].w * C / W;
    k->rated = 1;
    return;
  }
  for (int i = 0; i < k->n; i++)
    k->f[i].rate = -1; /* unassigned */
  for (;;) {
    int best = -1;
    for (int i = 0; i < k->n; i++)
      if (k->f[i].rate < 0 &&
          (best < 0 || k->f[i].rcap / k->f[i].w < k->f[best].rcap / k->f[best].w))
        best = i;
    if (best < 0)
      break;
    sim_fluid_flow *b = &k->f[best];
    if (W > 0 && b->rcap < b->w * C / W) {
      b->rate = b->rcap;
      C -= b->rcap;
      W -= b->w;
      continue;
    }
    for (int i = 0; i < k->n; i++)
      if (k->f[i].rate < 0)
        k->f[i].rate = W > 0 ? k->f[i].w * C / W : 0;
    break;
  }
  k->rated = 1;
}

typedef void (*done_fn)(void *arg, int64_t tag, int64_t t);

/* A flow's completion time into *out: its end of sending rounded up to
 * whole ns (as sim_net_next does), plus its latency. SIM_ETIME past
 * SIM_TIME_MAX (the cast below needs x in int64's range). */
static int completion(double t_end, int64_t lat_ns, int64_t *out) {
  double x = t_end - 1e-6;
  if (!(x <= (double)SIM_TIME_MAX))
    return SIM_ETIME;
  int64_t i = (int64_t)x; /* x >= 0: truncation is the floor */
  *out = i + ((double)i < x) + lat_ns;
  return SIM_OK;
}

/* Time (ns) until the first of link k's flows, at their current rates,
 * has sent all its bytes; INFINITY when none is sending. */
static double next_finish(const sim_fluid_link *k) {
  double dt = INFINITY;
  for (int i = 0; i < k->n; i++)
    if (k->f[i].rate > 0 && k->f[i].left / k->f[i].rate < dt)
      dt = k->f[i].left / k->f[i].rate;
  return dt;
}

/* Advances link k until time `until` (ns; INFINITY: no limit) or, with
 * fg_only, until it holds no foreground flow, whichever comes first. Flows
 * that finish are removed in index order; foreground ones are reported to
 * done, background ones update bg_last. */
static int advance(sim_fluid *f, sim_fluid_link *k, double until, int fg_only, done_fn done,
                   void *arg) {
  if (until <= k->t)
    return SIM_OK; /* already there (a link's clock never runs backwards) */
  while (k->n > 0 && (!fg_only || k->nfg > 0)) {
    if (!k->rated)
      set_rates(k);
    double dt = next_finish(k);
    if (!(dt < INFINITY))
      return SIM_EINVARIANT; /* a link with flows has capacity */
    if (k->t + dt > until) {
      double step = until - k->t;
      for (int i = 0; i < k->n; i++)
        k->f[i].left -= k->f[i].rate * step;
      k->t = until;
      return SIM_OK;
    }
    k->t += dt;
    int keep = 0;
    for (int i = 0; i < k->n; i++) {
      sim_fluid_flow *x = &k->f[i];
      x->left -= x->rate * dt;
      if (x->left > x->rate * DONE_NS) {
        k->f[keep++] = *x;
        continue;
      }
      int64_t t;
      int rc = completion(k->t, x->lat_ns, &t);
      if (rc)
        return rc;
      if (x->tag >= 0) {
        k->nfg--;
        if (done)
          done(arg, x->tag, t);
      } else {
        f->nbg--;
        if (x->kind == f->watch_kind && (double)t > f->watch_last)
          f->watch_last = (double)t;
        if (f->track_kind >= 0 && x->kind >= f->track_kind) {
          f->track_left--;
          if ((double)t > f->track_last)
            f->track_last = (double)t;
          if (f->track_done)
            f->track_done(f->track_arg, x->kind, t);
        }
        if ((double)t >= f->bg_last) {
          f->bg_last = (double)t;
          f->bg_last_kind = x->kind;
        }
      }
    }
    k->n = keep;
    k->rated = 0;
  }
  if (k->n == 0 && until < INFINITY && k->t < until)
    k->t = until; /* idle: the clock just moves */
  return SIM_OK;
}

/* Adds a flow to link k (already advanced to now) for hose class c. */
static int push(sim_fluid *f, sim_fluid_link *k, size_t c, double bytes, double w,
                int64_t lat_ns, int64_t tag, int kind) {
  if (k->n == k->capf) {
    int nc = k->capf ? 2 * k->capf : 4;
    sim_fluid_flow *nf = sim_realloc(k->f, (size_t)nc * sizeof(*nf));
    if (!nf)
      return SIM_ENOMEM;
    k->f = nf;
    k->capf = nc;
  }
  k->f[k->n++] = (sim_fluid_flow){
      .left = bytes,
      .w = w,
      .rcap = f->rcap_of[c],
      .rate = 0,
      .lat_ns = lat_ns,
      .tag = tag,
      .kind = kind,
  };
  k->rated = 0;
  if (tag >= 0) {
    k->nfg++;
    if (!k->listed) {
      k->listed = 1;
      f->fgl[f->nfgl++] = f->link_of[c];
    }
  } else {
    f->nbg++;
    f->track_left += f->track_kind >= 0 && kind >= f->track_kind;
  }
  return SIM_OK;
}

/* Brings link k to time now; *empty = 1 when it is then empty. */
static int settle(sim_fluid *f, sim_fluid_link *k, int64_t now, int *empty) {
  *empty = 0;
  if (k->n > 0) {
    int rc = advance(f, k, (double)now, 0, NULL, NULL); /* may empty it */
    if (rc)
      return rc;
  }
  if (k->n > 0)
    return SIM_OK;
  if (k->t < (double)now)
    k->t = (double)now; /* idle: the clock just moves */
  *empty = 1;
  return SIM_OK;
}

int sim_fluid_start(sim_fluid *f, int64_t now, int g, int inter, int in, double bytes,
                    double w, int64_t lat_ns, int64_t tag, int kind, int64_t *done) {
  if (done)
    *done = -1;
  if (bytes <= 0) /* NaN goes on to be refused */
    return SIM_OK;
  if (!isfinite(bytes) || !(w > 0) || g < 0 || g >= f->topo.gpus)
    return SIM_EINVAL;
  size_t c = (size_t)(2 * !!inter + !!in) * (size_t)f->topo.gpus + (size_t)g;
  sim_fluid_link *k = &f->links[f->link_of[c]];
  int empty, rc = settle(f, k, now, &empty);
  if (rc)
    return rc;
  if (empty && tag >= 0 && done && f->alone[c]) {
    /* alone on a link of its own: nothing can join it before it ends
     * (flows start between phases, and the phase's other flows have links
     * of their own), so it sends at the link's rate and its completion is
     * known now; it is not carried */
    k->t += bytes / k->cap;
    return completion(k->t, lat_ns, done);
  }
  return push(f, k, c, bytes, w, lat_ns, tag, kind);
}

int sim_fluid_hose_phase(sim_fluid *f, int64_t now, const int64_t *h, int reverse,
                         double token_bytes, const double w[2], int64_t *comm_end,
                         int64_t *lone_end) {
  int G = f->topo.gpus;
  int64_t lat[2] = {f->topo.intra_lat_ns, f->topo.inter_lat_ns};
  int64_t end = now;
  for (int c = 0; c < 4; c++) {
    int x = c >> 1;
    const int64_t *src = h + (size_t)(c ^ reverse) * G; /* reverse: in and out swap */
    for (int g = 0; g < G; g++) {
      if (src[g] <= 0)
        continue;
      double bytes = (double)src[g] * token_bytes;
      size_t cg = (size_t)c * G + g;
      sim_fluid_link *k = &f->links[f->link_of[cg]];
      int empty, rc = settle(f, k, now, &empty);
      if (rc)
        return rc;
      if (empty && f->alone[cg]) { /* as in sim_fluid_start */
        k->t += bytes / k->cap;
        int64_t t;
        if ((rc = completion(k->t, lat[x], &t)))
          return rc;
        if (t > comm_end[g])
          comm_end[g] = t;
        if (t > end)
          end = t;
        continue;
      }
      if ((rc = push(f, k, cg, bytes, w[x], lat[x], g, 0)))
        return rc;
    }
  }
  *lone_end = end;
  return SIM_OK;
}

typedef struct fg_ctx {
  done_fn done;
  void *arg;
  int64_t end;
} fg_ctx;

static void fg_done(void *arg, int64_t tag, int64_t t) {
  fg_ctx *c = arg;
  if (t > c->end)
    c->end = t;
  if (c->done)
    c->done(c->arg, tag, t);
}

int sim_fluid_run_fg(sim_fluid *f, int64_t now, done_fn done, void *arg, int64_t *end) {
  fg_ctx c = {.done = done, .arg = arg, .end = now};
  int rc = SIM_OK;
  for (int i = 0; i < f->nfgl && !rc; i++) {
    sim_fluid_link *k = &f->links[f->fgl[i]];
    rc = advance(f, k, INFINITY, 1, fg_done, &c);
    k->listed = 0;
  }
  if (rc)
    return rc;
  f->nfgl = 0;
  *end = c.end;
  return SIM_OK;
}

int sim_fluid_drain(sim_fluid *f, int64_t now, int64_t *end, int *kind) {
  if (f->nfgl)
    return SIM_EINVARIANT; /* foreground flows must be run first */
  for (int l = 0; l < f->topo.nlinks && f->nbg > 0; l++)
    if (f->links[l].n) {
      int rc = advance(f, &f->links[l], INFINITY, 0, NULL, NULL);
      if (rc)
        return rc;
    }
  if (f->nbg != 0)
    return SIM_EINVARIANT;
  *end = f->bg_last > (double)now ? (int64_t)f->bg_last : now;
  *kind = f->bg_last_kind;
  f->bg_last = 0;
  f->bg_last_kind = -1;
  return SIM_OK;
}

/* 1 when link k carries a flow of `kind`. */
static int has_kind(const sim_fluid_link *k, int kind) {
  for (int i = 0; i < k->n; i++)
    if (k->f[i].kind == kind && k->f[i].tag < 0)
      return 1;
  return 0;
}

int sim_fluid_settle_kind(sim_fluid *f, int64_t now, int kind, int64_t *end) {
  if (f->nfgl)
    return SIM_EINVAL;
  f->watch_kind = kind;
  f->watch_last = -1;
  int rc = SIM_OK;
  for (int l = 0; l < f->topo.nlinks && !rc; l++) {
    sim_fluid_link *k = &f->links[l];
    while (!rc && has_kind(k, kind)) {
      if (!k->rated)
        set_rates(k);
      double dt = next_finish(k);
      if (!(dt < INFINITY))
        rc = SIM_EINVARIANT;
      else /* to the next completion on the link, which advance handles */
        rc = advance(f, k, k->t + dt, 0, NULL, NULL);
    }
  }
  f->watch_kind = -1;
  *end = f->watch_last > (double)now ? (int64_t)f->watch_last : now;
  return rc;
}

void sim_fluid_track_kinds(sim_fluid *f, int kind, void (*done)(void *arg, int kind, int64_t t),
                           void *arg) {
  f->track_kind = kind < 0 ? -1 : kind;
  f->track_left = 0;
  f->track_last = -1;
  f->track_done = kind < 0 ? NULL : done;
  f->track_arg = arg;
  for (int l = 0; l < f->topo.nlinks && kind >= 0; l++)
    for (int i = 0; i < f->links[l].n; i++)
      f->track_left += f->links[l].f[i].tag < 0 && f->links[l].f[i].kind >= kind;
}

/* 1 when link k carries a tracked flow. */
static int has_tracked(const sim_fluid *f, const sim_fluid_link *k) {
  for (int i = 0; i < k->n; i++)
    if (k->f[i].tag < 0 && k->f[i].kind >= f->track_kind)
      return 1;
  return 0;
}

int sim_fluid_track(sim_fluid *f, int64_t now, int64_t *left, int64_t *last) {
  if (f->nfgl)
    return SIM_EINVAL;
  int rc = SIM_OK;
  for (int l = 0; l < f->topo.nlinks && !rc && f->track_kind >= 0 && f->track_left > 0; l++) {
    sim_fluid_link *k = &f->links[l];
    while (!rc && has_tracked(f, k)) {
      if (!k->rated)
        set_rates(k);
      double dt = next_finish(k);
      if (!(dt < INFINITY))
        rc = SIM_EINVARIANT;
      else if (k->t + dt > (double)now)
        break; /* its next completion is past now: flows may still join */
      else /* to the next completion on the link, which advance handles */
        rc = advance(f, k, k->t + dt, 0, NULL, NULL);
    }
  }
  *left = f->track_left;
  *last = f->track_last < 0 ? -1 : (int64_t)f->track_last;
  return rc;
}
