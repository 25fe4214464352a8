/*
 * pl_cluster.h - the placement library's view of a cluster.
 *
 * G GPUs in nodes of gpus_per_node (GPU g lives on node g / gpus_per_node),
 * each with `slots` expert slots per MoE layer (expert copies that fit in
 * memory), and the link numbers the cost model needs. The simulator has a
 * richer topology (sim/); this is the summary a planner reasons with.
 * Bandwidths are bytes per second per direction, latencies seconds.
 */
#ifndef FLEXMOE_PL_CLUSTER_H
#define FLEXMOE_PL_CLUSTER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pl_cluster {
  int gpus;            /* G >= 1 */
  int gpus_per_node;   /* >= 1, divides gpus */
  int slots;           /* expert slots per GPU per layer, >= 1 */
  double intra_Bps;    /* per-GPU intra-node link, bytes/s per direction */
  double intra_lat_s;  /* per-hop latency inside a node */
  double inter_Bps;    /* per-GPU share of the NIC, bytes/s per direction */
  double inter_lat_s;  /* per-hop latency across nodes */
  double oversub;      /* switch oversubscription, >= 1 (1 = non-blocking) */
} pl_cluster;

/* Physical ranges of the link numbers (inclusive), the simulator's cluster
 * ranges (sim_cluster.h) in these units, with room below for a per-node NIC
 * shared by up to 65,536 GPUs: bandwidths 1 B/s .. 1e14 B/s, latencies
 * 0 .. 1 s, oversubscription 1 .. 1000. Inside them every time the cost
 * model forms (bytes / bandwidth + latency) is finite and positive. */
#define PL_BW_MIN_BPS 1.0
#define PL_BW_MAX_BPS 1e14
#define PL_LAT_MAX_S 1.0
#define PL_OVERSUB_MAX 1000.0

/* 0 if the numbers are consistent and inside the ranges above (NaN and
 * infinities are not), PL_EINVAL otherwise. */
int pl_cluster_check(const pl_cluster *c);

static inline int pl_cluster_node(const pl_cluster *c, int gpu) {
  return gpu / c->gpus_per_node;
}
static inline int pl_cluster_nodes(const pl_cluster *c) {
  return c->gpus / c->gpus_per_node;
}

#ifdef __cplusplus
}
#endif
#endif
