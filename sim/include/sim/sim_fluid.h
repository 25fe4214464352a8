/*
 * sim_fluid.h - the analytic engine's network: every link a fluid server
 * shared by weighted processor sharing, in closed form between the instants
 * the iteration schedule asks about.
 *
 * It carries the same hose flows as the discrete-event engine's aggregated
 * network (sim_engine.h: per GPU and class - intra-node out / in, inter-node
 * out / in - one flow of a phase's bytes, weighted by the pair flows it
 * stands for), with the same link capacities and latencies (the link graph
 * of sim_net), but without an event queue: each link is advanced on its own
 * clock, lazily, only when a flow is added to it, when the schedule waits
 * for the foreground flows on it, or when the iteration drains.
 *
 * Sharing on a link: its flows get rates in proportion to their weights
 * (weighted max-min on one link), each at most its rate cap; a flow's
 * route is one link of its own (intra-node links; a GPU's NIC when the
 * switch tier cannot bind) or a shared tier (one NIC per node, or an
 * oversubscribed node uplink), in which case the flow lives on the shared
 * tier with its own NIC as its rate cap. That is where this model and the
 * event-driven max-min of sim_net can differ: there a GPU's NIC also
 * couples that GPU's flows to one another. With per-GPU NICs and a switch
 * that does not bind (every preset) every hose flow's route is one link and
 * the two models are the same up to rounding.
 *
 * Timing as in sim_net: a flow sends from its start until its bytes are out
 * and completes `latency` later; completions are rounded up to whole
 * nanoseconds like the event engine's.
 *
 * Cost: O(k log k) per change of a link's flow set for k flows on the link
 * (a handful: one foreground flow, a few background ones), O(links) per
 * drain. Deterministic: links and flows are visited in index order.
 */
#ifndef FLEXMOE_SIM_FLUID_H
#define FLEXMOE_SIM_FLUID_H

#include <stdint.h>

#include "sim/sim_cluster.h"
#include "sim/sim_net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sim_fluid_flow {
  double left;    /* bytes still to send at the link's clock */
  double w;       /* weight (> 0) */
  double rcap;    /* most bytes per ns it can get (its own NIC) */
  double rate;    /* current rate, bytes per ns (scratch) */
  int64_t lat_ns; /* completion = end of sending + lat_ns */
  int64_t tag;    /* >= 0: foreground (reported by sim_fluid_run_fg); -1: background */
  int kind;       /* caller's kind, reported for the last background completion */
} sim_fluid_flow;

typedef struct sim_fluid_link {
  double cap;          /* bytes per ns */
  double t;            /* its flows' state is current at this time, ns */
  sim_fluid_flow *f;   /* [n] active flows */
  int n, capf;
  int nfg;             /* foreground flows among them */
  int listed;          /* on the foreground list of the current phase */
  int rated;           /* rates are current for this flow set */
  int shared;          /* carries flows of several GPUs (their NICs are caps) */
} sim_fluid_link;

typedef struct sim_fluid {
  sim_net topo;         /* link graph (capacities, routes); no flows */
  sim_fluid_link *links; /* [topo.nlinks] */
  int *fgl;             /* links holding foreground flows of this phase */
  int nfgl;
  /* per hose class c = (2 x inter + in) x G + g: */
  int *link_of;         /* [4G] the link the flow lives on */
  double *rcap_of;      /* [4G] its rate cap (its own first link) */
  unsigned char *alone; /* [4G] 1: a link no other GPU's flows use */
  double bg_last;       /* latest background completion seen, ns */
  int bg_last_kind;
  int nbg;              /* background flows not yet completed */
  int watch_kind;       /* sim_fluid_settle_kind: the kind waited for (-1: none) */
  double watch_last;    /* its latest completion seen, ns */
  /* sim_fluid_track: background flows of kind >= track_kind (-1: none) */
  int track_kind;
  int64_t track_left;   /* started and not yet completed */
  double track_last;    /* their latest completion, ns (-1: none yet) */
  void (*track_done)(void *arg, int kind, int64_t t); /* each one's completion */
  void *track_arg;
} sim_fluid;

int sim_fluid_init(sim_fluid *f, const sim_cluster *c);
void sim_fluid_fini(sim_fluid *f);

/* Starts GPU g's hose flow of one class (inter: across nodes; in: ingress)
 * at time now: bytes > 0, weight w > 0, completing lat_ns after its last
 * byte. tag >= 0 makes it foreground (sim_fluid_run_fg waits for it), -1
 * background of `kind`. With done non-NULL, a foreground flow alone on a
 * link of its own is not carried: its completion is known at once and
 * written to *done (-1 otherwise; the caller accounts for it, run_fg does
 * not report it). bytes <= 0 sends nothing (SIM_OK). SIM_ENOMEM, SIM_EINVAL
 * (bytes infinite or NaN, w not > 0, g outside 0..G-1; nothing is started),
 * SIM_ETIME (a completion past SIM_TIME_MAX, here or while advancing the
 * link). */
int sim_fluid_start(sim_fluid *f, int64_t now, int g, int inter, int in, double bytes,
                    double w, int64_t lat_ns, int64_t tag, int kind, int64_t *done);

/* One all-to-all's hose flows at once (sim_fluid_start's flows, tagged
 * with their GPU): h[4G] the per-GPU token sums in pl_routing's hose layout
 * (intra out, intra in, inter out, inter in), swapped in and out when
 * reverse, times token_bytes; weights w[intra, inter], the class latency.
 * Lone flows complete at once: comm_end[g] (initialised by the caller) is
 * raised to GPU g's, *lone_end = the latest (at least now). The others
 * wait for sim_fluid_run_fg. SIM_ENOMEM, SIM_ETIME. */
int sim_fluid_hose_phase(sim_fluid *f, int64_t now, const int64_t *h, int reverse,
                         double token_bytes, const double w[2], int64_t *comm_end,
                         int64_t *lone_end);

/* Runs every foreground flow started since the last call to completion,
 * calling done(arg, tag, t) for each (t its completion, whole ns); *end =
 * the latest completion, at least now. Background flows on those links
 * progress alongside. SIM_ETIME when a completion would pass
 * SIM_TIME_MAX. */
int sim_fluid_run_fg(sim_fluid *f, int64_t now,
                     void (*done)(void *arg, int64_t tag, int64_t t), void *arg,
                     int64_t *end);

/* Runs every remaining (background) flow to completion: *end = the latest
 * background completion since the last drain (at least now), *kind its
 * kind (-1 when there was none). Leaves the network empty. SIM_ETIME as
 * sim_fluid_run_fg; after any error the network is only fit for
 * sim_fluid_fini. */
int sim_fluid_drain(sim_fluid *f, int64_t now, int64_t *end, int *kind);
/* Runs every link that carries a background flow of `kind` until none is
 * left on it (the other flows progressing alongside): *end = their latest
 * completion, at least now. The links' clocks may pass now, never *end:
 * the caller lets time pass to *end (a dependency on those flows, e.g. a
 * layer waiting for its weight copies). SIM_EINVAL when foreground flows
 * are pending; SIM_ETIME as sim_fluid_run_fg. */
int sim_fluid_settle_kind(sim_fluid *f, int64_t now, int kind, int64_t *end);
/* Tracks the background flows of kind >= kind in flight or started from
 * now on (kind < 0: none): resets the count and the latest completion;
 * done (may be NULL) is called with each one's kind and completion (ns),
 * whichever call of this interface advances its link. */
void sim_fluid_track_kinds(sim_fluid *f, int kind, void (*done)(void *arg, int kind, int64_t t),
                           void *arg);
/* Advances every link that carries a tracked flow to its completions up
 * to now, stopping on each link when its last tracked flow has finished
 * sending (so no clock passes the tracked flows' latest completion while
 * some are left, nor now): *left = tracked flows not yet completed, *last
 * = their latest completion so far (ns; -1 when none completed). Lets the
 * caller start flows that depend on all of them at *last once *left is 0.
 * SIM_EINVAL when foreground flows are pending; SIM_ETIME as
 * sim_fluid_run_fg. */
int sim_fluid_track(sim_fluid *f, int64_t now, int64_t *left, int64_t *last);

#ifdef __cplusplus
}
#endif
#endif
