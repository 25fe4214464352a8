/*
 * sim_net.h - the network model: a link graph built from a cluster, flows
 * sharing links by max-min fair sharing (progressive filling).
 *
 * Links (each one direction, capacity in bytes per ns):
 *   intra_out[g], intra_in[g]   GPU g's NVLink / PCIe / partition copy link
 *   nic_out[i], nic_in[i]       i = GPU (one NIC per GPU) or node (nic_per_node)
 *   up_out[n], up_in[n]         node n's switch uplink: NICs of the node
 *                               x bandwidth / oversubscription
 * A flow inside a node crosses intra_out[src], intra_in[dst] and takes the
 * intra latency; a flow across nodes crosses nic_out, up_out, up_in, nic_in
 * (inter-node traffic does not touch the intra links: DGX NICs hang off PCIe
 * switches) and takes the inter latency. A flow from a GPU to itself is free.
 *
 * Timing: a flow transmits from its start at its max-min rate until its
 * bytes are sent (the rate changes whenever any flow starts or ends: all
 * rates are recomputed by progressive filling); it completes `latency` after
 * its last byte left. So one flow alone takes latency + bytes / bandwidth,
 * and n equal flows on one link each get bandwidth / n.
 *
 * Max-min fair sharing by progressive filling: all unfrozen flows grow at
 * the same rate; when a link saturates, its flows freeze at their current
 * rate; repeat until every flow is frozen. Each round picks the link with
 * the smallest (remaining capacity / unfrozen flows).
 *
 * Cost: when a flow starts, the connected component of links and flows
 * around it is refilled (flows elsewhere keep their rates); when a flow ends,
 * only if some remaining flow had one of its links as bottleneck (otherwise
 * the allocation stays max-min fair untouched). Filling uses a heap of link
 * shares: O((links + flows) log links) per component. Each
 * flow's remaining bytes are brought up to date only when its rate changes,
 * and the next finishing flow comes from a heap of projected finish times.
 *
 * Bounds. Every link has a capacity of at least 1e-6 bytes per ns (the
 * cluster ranges; sim_net_init refuses less), and the filling never gives
 * a flow a zero rate: the bottleneck shares it visits never decrease (true
 * of exact max-min; rounding is clamped to the previous share), so every
 * active flow has a finite projected finish and each step of the caller's
 * loop finishes one. A finish beyond SIM_TIME_MAX is SIM_ETIME from
 * sim_net_next, never a wrapped time. The filling work (flows re-rated,
 * summed over all fills) can be capped (work_limit): past it, SIM_ELIMIT
 * instead of a run that would take hours (all flows on one link, each
 * finishing at its own time, cost O(flows^2)).
 *
 * Aggregated flows: a flow may stand for several (src, dst) GPU pairs with
 * an explicit link list (sim_net_start_path); see sim_engine.h for how the
 * iteration model uses it.
 */
#ifndef FLEXMOE_SIM_NET_H
#define FLEXMOE_SIM_NET_H

#include <stdint.h>

#include "sim/sim_cluster.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_NET_MAXPATH 4
/* Flows alive at once (ids are ints; about 130 bytes each): SIM_ELIMIT
 * beyond. */
#define SIM_NET_MAX_FLOWS (1 << 26)

typedef struct sim_link {
  double cap;      /* bytes per ns */
  int *flows;      /* active flows crossing it */
  int nflows, capflows;
  /* progressive-filling scratch */
  double rem;
  int unfrozen;
  double wsum;     /* weight of its unfrozen flows (filling scratch) */
  double wtot;     /* weight of all its flows; weights are whole numbers, so
                      adding and removing them is exact */
  uint32_t stamp;  /* component search mark */
  uint32_t hver;   /* share-heap version */
  int dirty;       /* a flow started or ended on it since the last recompute */
  int nbott;       /* active flows it froze in their last fill (their bott) */
} sim_link;

typedef struct sim_flow {
  int path[SIM_NET_MAXPATH];
  int pos[SIM_NET_MAXPATH]; /* index of this flow in each link's list */
  int plen;
  double left;     /* bytes still to send at time t_ref */
  double t_ref;    /* ns */
  double rate;     /* bytes per ns */
  double old_rate; /* rate of the previous fill */
  double fin;      /* projected end of sending, ns */
  double w;        /* weight in the max-min sharing (1: a plain flow) */
  uint32_t stamp;
  int64_t lat_ns;
  int64_t tag;     /* caller's */
  int frozen;
  int bott;        /* the link that froze it in the last fill */
  int active;      /* transmitting */
  int apos;        /* index in the active list */
} sim_flow;

typedef struct sim_finq {  /* indexed min-heap of projected finish times */
  double fin;
  int flow;
  uint32_t pad;
} sim_finq;

typedef struct sim_net {
  int gpus, gpn, nodes, nic_per_node;
  int64_t intra_lat_ns, inter_lat_ns;
  sim_link *links;
  int nlinks;
  int intra_out0, intra_in0, nic_out0, nic_in0, up_out0, up_in0;
  /* Which tiers an inter-node route crosses: a tier whose constraint is
   * implied by the other is left off (sim_net_init), rates are unchanged. */
  int use_nic, use_up;
  sim_flow *flows;
  int nflows, capflows;
  int *freelist;
  int nfree;
  int *hpos;       /* [capflows] index of each flow in the finish heap, -1 if none */
  int *active;     /* active flow ids */
  int nactive, capactive;
  int *dirty;      /* dirty link ids */
  int ndirty, capdirty;
  int *comp_links, *comp_flows; /* component scratch */
  int ncl, ncf, capcl, capcf;
  uint32_t stamp;
  sim_finq *heap;
  int nheap, capheap;
  struct share_ent *sh; /* progressive-filling heap */
  int nsh, capsh;
  int64_t last;    /* latest time seen */
  uint64_t recomputes; /* progressive-filling runs (one per component) */
  uint64_t work;       /* flows re-rated, summed over all fills */
  uint64_t work_limit; /* 0: none; else SIM_ELIMIT once work passes it */
  uint64_t started;    /* flows started (each ends once: benchmarks count both) */
} sim_net;

/* SIM_ERANGE when a count, bandwidth or latency of c is outside the cluster
 * ranges of sim_cluster.h (oversubscription may be anywhere in
 * [0.001, 1000] here: below 1 is an over-provisioned switch), SIM_ENOMEM. */
int sim_net_init(sim_net *n, const sim_cluster *c);
void sim_net_fini(sim_net *n);

/* The links GPU g's inter-node traffic crosses on its side of the switch,
 * egress (in = 0: NIC out, uplink out) or ingress (in = 1: uplink in, NIC
 * in), without the tiers sim_net_init found redundant; returns how many
 * (1 or 2) were written to path. */
int sim_net_inter_half(const sim_net *n, int g, int in, int *path);

/* Path and latency of a GPU-to-GPU flow; plen 0 for src == dst. */
void sim_net_path(const sim_net *n, int src, int dst, int *path, int *plen,
                  int64_t *lat_ns);

/* Starts a flow at time now (>= the last time given, <= SIM_TIME_MAX).
 * bytes > 0 and finite. Returns the flow id (>= 0) or a negative code
 * (SIM_EINVAL for bad arguments; SIM_ELIMIT past SIM_NET_MAX_FLOWS; a
 * pending recompute's SIM_ENOMEM or SIM_ELIMIT). Rates are recomputed
 * lazily. */
int sim_net_start(sim_net *n, int64_t now, int src, int dst, double bytes, int64_t tag);
int sim_net_start_path(sim_net *n, int64_t now, const int *path, int plen,
                       int64_t lat_ns, double bytes, int64_t tag);
/* The same with weight w > 0, a whole number (< 2^31): weighted max-min
 * sharing, where a flow of weight w gets w shares of a link (an aggregate of
 * w pair flows gets what those w flows would together); weight 1 everywhere
 * is plain max-min. */
int sim_net_start_weighted(sim_net *n, int64_t now, const int *path, int plen,
                           int64_t lat_ns, double bytes, double w, int64_t tag);

/* Recomputes rates if needed and returns the time the next flow finishes
 * sending (INT64_MAX if none is active), or a negative code: SIM_ETIME when
 * that time is past SIM_TIME_MAX, SIM_ELIMIT past the work limit,
 * SIM_ENOMEM, SIM_EINVARIANT if active flows could never finish. */
int64_t sim_net_next(sim_net *n);

/* Advances to time t (<= sim_net_next), removing flows that finished
 * sending; for each, out_tag[k] = its tag and out_done[k] = t + latency.
 * Returns the number removed (at most max; call again if it equals max) or
 * a negative code (as sim_net_next; SIM_EINVAL for t before the last time
 * or past SIM_TIME_MAX). */
int sim_net_advance(sim_net *n, int64_t t, int64_t *out_tag, int64_t *out_done, int max);

static inline int sim_net_active(const sim_net *n) { return n->nactive; }

#ifdef __cplusplus
}
#endif
#endif
