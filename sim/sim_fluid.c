/*
 * sim_fluid.c - per-link fluid network of the analytic engine (see
 * sim_fluid.h).
 *
 * Invariants: a link's clock never runs backwards; its flows' `left` is the
 * bytes still to send at that clock; nfg counts its foreground flows; a link
 * is on the foreground list at most once (listed); nbg counts background
 * flows on all links.
 */
#include "sim/sim_fluid.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "sim/sim_error.h"

/* A flow whose bytes left would be sent in under this many ns has ended
 * (what remains is floating-point residue of rate x time). */
#define DONE_NS 1e-6

int sim_fluid_init(sim_fluid *f, const sim_cluster *c) {
  memset(f, 0, sizeof(*f));
  int rc = sim_net_init(&f->topo, c);
  if (rc)
    return rc;
  int n = f->topo.nlinks;
  f->links = sim_calloc((size_t)n, sizeof(sim_fluid_link));
  f->fgl = sim_calloc((size_t)n, sizeof(int));
  if (!f->links || !f->fgl) {
    sim_fluid_fini(f);
    return SIM_ENOMEM;
  }
  for (int l = 0; l < n; l++)
    f->links[l].cap = f->topo.links[l].cap;
  f->bg_last_kind = -1;
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
  sim_free(f->lone);
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
  for (int i = 0; i < k->n; i++) {
    W += k->f[i].w;
    k->f[i].rate = -1; /* unassigned */
  }
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

/* A flow's completion time: its end of sending rounded up to whole ns (as
 * sim_net_next does), plus its latency. */
static int64_t completion(double t_end, int64_t lat_ns) {
  return (int64_t)ceil(t_end - 1e-6) + lat_ns;
}

/* Advances link k until time `until` (ns; INFINITY: no limit) or, with
 * fg_only, until it holds no foreground flow, whichever comes first. Flows
 * that finish are removed in index order; foreground ones are reported to
 * done, background ones update bg_last. */
static void advance(sim_fluid *f, sim_fluid_link *k, double until, int fg_only, done_fn done,
                    void *arg) {
  if (until <= k->t)
    return; /* already there (a link's clock never runs backwards) */
  while (k->n > 0 && (!fg_only || k->nfg > 0)) {
    if (!k->rated)
      set_rates(k);
    double dt = INFINITY;
    for (int i = 0; i < k->n; i++)
      if (k->f[i].rate > 0 && k->f[i].left / k->f[i].rate < dt)
        dt = k->f[i].left / k->f[i].rate;
    assert(dt < INFINITY); /* a link with flows has capacity */
    if (k->t + dt > until) {
      double step = until - k->t;
      for (int i = 0; i < k->n; i++)
        k->f[i].left -= k->f[i].rate * step;
      k->t = until;
      return;
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
      int64_t t = completion(k->t, x->lat_ns);
      if (x->tag >= 0) {
        k->nfg--;
        if (done)
          done(arg, x->tag, t);
      } else {
        f->nbg--;
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
}

/* Records a lone foreground completion for the next sim_fluid_run_fg. */
static int lone_push(sim_fluid *f, int64_t tag, int64_t t) {
  if (f->nlone == f->caplone) {
    int nc = f->caplone ? 2 * f->caplone : 64;
    int64_t *nt = sim_realloc(f->lone, 2 * (size_t)nc * sizeof(int64_t));
    if (!nt)
      return SIM_ENOMEM;
    f->lone = nt;
    f->caplone = nc;
  }
  f->lone[2 * f->nlone] = tag;
  f->lone[2 * f->nlone + 1] = t;
  f->nlone++;
  return SIM_OK;
}

int sim_fluid_start(sim_fluid *f, int64_t now, int g, int inter, int in, double bytes,
                    double w, int64_t lat_ns, int64_t tag, int kind) {
  if (!(bytes > 0))
    return SIM_OK;
  if (!(w > 0) || g < 0 || g >= f->topo.gpus)
    return SIM_EINVAL;
  /* the flow's link: its own, or the shared tier of its route, with the
   * first (own) link's capacity as its cap */
  int path[2], plen;
  if (!inter) {
    path[0] = in ? f->topo.intra_in0 + g : f->topo.intra_out0 + g;
    plen = 1;
  } else {
    plen = sim_net_inter_half(&f->topo, g, in, path);
  }
  int own = in ? path[plen - 1] : path[0];   /* the NIC side */
  int shared = in ? path[0] : path[plen - 1]; /* the uplink side */
  sim_fluid_link *k = &f->links[shared];
  advance(f, k, (double)now, 0, NULL, NULL);
  if (tag >= 0 && k->n == 0 && own == shared && !(inter && f->topo.nic_per_node)) {
    /* alone on a link of its own: nothing can join it before it ends
     * (flows start between phases, and the phase's other flows have links
     * of their own), so it sends at the link's rate and its completion is
     * known now; done for it is called by the next sim_fluid_run_fg */
    double end = fmax((double)now, k->t) + bytes / k->cap;
    k->t = end;
    return lone_push(f, tag, completion(end, lat_ns));
  }
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
      .rcap = f->links[own].cap,
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
      f->fgl[f->nfgl++] = shared;
    }
  } else {
    f->nbg++;
  }
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
  for (int i = 0; i < f->nlone; i++)
    fg_done(&c, f->lone[2 * i], f->lone[2 * i + 1]);
  f->nlone = 0;
  for (int i = 0; i < f->nfgl; i++) {
    sim_fluid_link *k = &f->links[f->fgl[i]];
    advance(f, k, INFINITY, 1, fg_done, &c);
    k->listed = 0;
  }
  f->nfgl = 0;
  *end = c.end;
  return SIM_OK;
}

int sim_fluid_drain(sim_fluid *f, int64_t now, int64_t *end, int *kind) {
  if (f->nfgl || f->nlone)
    return SIM_EINVARIANT; /* foreground flows must be run first */
  for (int l = 0; l < f->topo.nlinks && f->nbg > 0; l++)
    if (f->links[l].n)
      advance(f, &f->links[l], INFINITY, 0, NULL, NULL);
  if (f->nbg != 0)
    return SIM_EINVARIANT;
  *end = f->bg_last > (double)now ? (int64_t)f->bg_last : now;
  *kind = f->bg_last_kind;
  f->bg_last = 0;
  f->bg_last_kind = -1;
  return SIM_OK;
}
