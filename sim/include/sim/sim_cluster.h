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
 *   name (string, optional: default file name),
 *   description (string, optional: shown by `flexmoe clusters`), nodes (int),
 *   gpus_per_node (int),
 *   gpu: {profile (string: h200, h100, a100), hbm_gib,
 *         compute_scale (optional, default 1: time multiplier)},
 *   intra: {bandwidth_GBps, latency_us},
 *   inter: {bandwidth_GBps, latency_us, oversubscription,
 *           nic_per_node (optional bool, default false)}.
 * Unknown keys are refused (a typo must not silently become a default).
 *
 * Physical ranges (sim_cluster_check; every preset, file and resize is
 * checked, and an error names the key and its range). They are wide enough
 * for any machine built or planned (a 1 MB/s link to a 100 TB/s one, up to
 * a second of latency, 1 MiB to 1 PiB of memory per GPU) and narrow enough
 * that no product of them overflows or underflows a double or the
 * simulator's int64 nanosecond clock (a link never has a denormal or zero
 * capacity, so max-min filling always makes progress):
 *   nodes, gpus_per_node  1..65,536, nodes x gpus_per_node <= SIM_MAX_GPUS
 *   bandwidth_GBps        0.001..100,000 (intra and inter)
 *   latency_us            0..1,000,000 (intra and inter)
 *   oversubscription      1..1,000
 *   hbm_gib               0.001..1,000,000
 *   compute_scale         0.001..1,000
 */
#ifndef FLEXMOE_SIM_CLUSTER_H
#define FLEXMOE_SIM_CLUSTER_H

#include "placement/pl_cluster.h"
#include "sim/sim_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_MAX_GPUS 65536

/* The physical ranges above (inclusive). */
#define SIM_BW_MIN_GBPS 0.001
#define SIM_BW_MAX_GBPS 100000.0
#define SIM_LAT_MAX_US 1e6
#define SIM_OVERSUB_MAX 1000.0
#define SIM_HBM_MIN_GIB 0.001
#define SIM_HBM_MAX_GIB 1e6
#define SIM_SCALE_MIN 0.001
#define SIM_SCALE_MAX 1000.0

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

/* Applies --nodes / --gpus-per-node (0 = keep). SIM_ERANGE when either is
 * negative or above SIM_MAX_GPUS (checked first: the error names that
 * argument and its range), the result has more than SIM_MAX_GPUS GPUs, or a
 * green-context preset gets more than one node. */
int sim_cluster_resize(sim_cluster *c, int nodes, int gpus_per_node, sim_errbuf *err);

static inline int sim_cluster_gpus(const sim_cluster *c) {
  return c->nodes * c->gpus_per_node;
}

/* 0 when every number is inside its physical range (above) and the
 * profile is known; SIM_ERANGE with err naming the field and its range
 * ("inter.oversubscription must be between 1 and 1000 (got 1e+300)")
 * otherwise. */
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
