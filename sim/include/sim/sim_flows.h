/*
 * sim_flows.h - a traffic matrix as a list of flows (the `flexmoe net` CSV,
 * header src_gpu,dst_gpu,bytes) and its finish times on a cluster's link
 * graph: every flow starts at time 0 and shares links by max-min fairness
 * (sim_net.h), one flow per line, no aggregation.
 *
 * Limits (docs/simulator.md): a flow carries at most SIM_FLOWS_MAX_BYTES
 * (2^50, 1 PiB), a file holds at most SIM_FLOWS_MAX (2^20) flows, the
 * makespan stays below 2^62 ns (SIM_ETIME), and the max-min refilling may
 * re-rate at most SIM_FLOWS_MAX_WORK flows in all (SIM_ELIMIT: the worst
 * case, every flow on one link with its own finish time, costs flows^2 / 2
 * and runs at about 1.2e7 re-ratings a second, so the limit stops it within
 * about 20 s).
 */
#ifndef FLEXMOE_SIM_FLOWS_H
#define FLEXMOE_SIM_FLOWS_H

#include <stdint.h>

#include "sim/sim_cluster.h"
#include "sim/sim_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_FLOWS_MAX_BYTES ((int64_t)1 << 50)
#define SIM_FLOWS_MAX (1 << 20)
#define SIM_FLOWS_MAX_WORK ((uint64_t)1 << 28)

typedef struct sim_flow_line {
  int src, dst;
  int64_t bytes;
  int64_t finish_ns; /* set by sim_flows_run */
} sim_flow_line;

/* Reads a flows CSV for a cluster of `gpus` GPUs into *out (sim_malloc'd,
 * the caller frees it with sim_free) and *n. SIM_ENOENT (cannot open),
 * SIM_EFORMAT (header, a field, a line too long, an empty file), SIM_ERANGE
 * (bytes, a GPU outside the cluster, too many flows), SIM_ENOMEM; err names
 * the file and line. */
int sim_flows_read(const char *path, int gpus, sim_flow_line **out, int *n, sim_errbuf *err);

/* Runs the flows on cluster cl: fl[i].finish_ns for each and *makespan_ns.
 * A flow from a GPU to itself or of 0 bytes finishes at its path's latency.
 * SIM_ETIME, SIM_ELIMIT (the limits above), SIM_ENOMEM; err says which. */
int sim_flows_run(const sim_cluster *cl, sim_flow_line *fl, int n, int64_t *makespan_ns,
                  sim_errbuf *err);

#ifdef __cplusplus
}
#endif
#endif
