/*
 * sim_cluster.h - cluster descriptions: built-in presets and JSON files.
 *
 * A cluster is `nodes` nodes of `gpus_per_node` GPUs. Inside a node every GPU
 * has its own link (NVLink, PCIe or an SM partition's copy engine) with
 * `intra_GBps` per direction; across nodes every GPU has its own NIC of
 * `inter_GBps` per direction (or, with nic_per_node, the node shares one NIC
 * of `inter_GBps`), behind a switch tier with `oversub`scription (1.0 =
 * non-blocking: each node's uplink carries gpus_per_node x NIC bandwidth;
 * 2.0 = half of it). Bandwidths are GB/s = 1e9 bytes/s per direction,
 * latencies microseconds.
 *
 * Presets (sim_cluster_presets): dgx-a100, dgx-h100, pcie-a100 and
 * h200-green-N (N = 1..16: one H200 split into N SM partitions, each a
 * "GPU" of a one-node cluster; see sim_cluster_preset for the numbers).
 *
 * JSON keys (DESIGN.md; required unless marked):
 *   name (string, optional: default file name), nodes (int >= 1),
 *   gpus_per_node (int >= 1),
 *   gpu: {profile (string: h200, h100, a100), hbm_gib (> 0),
 *         compute_scale (optional, > 0, default 1: time multiplier)},
 *   intra: {bandwidth_GBps (> 0), latency_us (>= 0)},
 *   inter: {bandwidth_GBps (> 0), latency_us (>= 0), oversubscription (>= 1),
 *           nic_per_node (optional bool, default false)}.
 * Unknown keys are refused (a typo must not silently become a default).
 */
#ifndef FLEXMOE_SIM_CLUSTER_H
#define FLEXMOE_SIM_CLUSTER_H

#include "placement/pl_cluster.h"
#include "sim/sim_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_MAX_GPUS 65536

typedef struct sim_cluster {
  char name[64];
  int nodes;
  int gpus_per_node;
  char profile[32];     /* compute profile name of the GPU */
  double hbm_gib;       /* HBM per GPU, GiB */
  double compute_scale; /* multiplies profile times (SM partitions), 1 = whole GPU */
  double intra_GBps;    /* per-GPU intra-node link, per direction */
  double intra_lat_us;
  double inter_GBps;    /* NIC per GPU (or per node with nic_per_node) */
  double inter_lat_us;
  double oversub;       /* >= 1 */
  int nic_per_node;     /* 1: one NIC per node shared by its GPUs */
  char description[160];
} sim_cluster;

/* NULL-terminated list of preset names (h200-green-N listed as h200-green-4). */
const char *const *sim_cluster_presets(void);

/* Fills *c with preset `name`. SIM_ENOENT for an unknown name (err says which
 * and lists the presets). */
int sim_cluster_preset(const char *name, sim_cluster *c, sim_errbuf *err);

/* Reads a cluster JSON file. SIM_ENOENT (cannot open), SIM_EFORMAT (not JSON:
 * err has line and column), SIM_EKEY (missing/unknown key or wrong type),
 * SIM_ERANGE (bad value); err names the file and the key. */
int sim_cluster_load(const char *path, sim_cluster *c, sim_errbuf *err);

/* Preset name or, when `spec` ends in .json or names an existing file, a
 * file. */
int sim_cluster_resolve(const char *spec, sim_cluster *c, sim_errbuf *err);

/* Applies --nodes / --gpus-per-node (0 = keep). SIM_ERANGE when the result
 * has more than SIM_MAX_GPUS GPUs or a green-context preset gets more than
 * one node. */
int sim_cluster_resize(sim_cluster *c, int nodes, int gpus_per_node, sim_errbuf *err);

static inline int sim_cluster_gpus(const sim_cluster *c) {
  return c->nodes * c->gpus_per_node;
}

/* 0 when consistent; SIM_ERANGE with err naming the field otherwise. */
int sim_cluster_check(const sim_cluster *c, sim_errbuf *err);

/* The placement library's view (bytes/s, seconds; NIC share per GPU). */
void sim_cluster_to_pl(const sim_cluster *c, int slots, pl_cluster *out);

/* The description as a compact JSON object (the file format above), written
 * into buf; returns the length or SIM_ERANGE if it does not fit. */
int sim_cluster_json(const sim_cluster *c, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
