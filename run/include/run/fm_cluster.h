/*
 * fm_cluster.h - clusters as `flexmoe clusters` and `flexmoe net` see them:
 * a preset or cluster file resolved and sized, its description as JSON, and
 * the finish times of a traffic matrix on it (sim/sim_flows.h: every flow
 * starts at time 0 and shares the links by max-min fairness); and the other
 * list the CLI prints, the policy registry (`flexmoe policies`) as JSON.
 * Nothing here prints; errors are one sentence in the caller's buffer.
 * Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_CLUSTER_H
#define FLEXMOE_RUN_FM_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "sim/sim_cluster.h"
#include "sim/sim_flows.h"

/* The preset or cluster file `name` into *cl, resized: to `gpus` GPUs in
 * all when non-zero (fm_cluster_size's rule, with nodes and gpus_per_node
 * as given), else to nodes x gpus_per_node (0: the preset's). FM_OK,
 * FM_EUSAGE for a size that does not fit, FM_EFAIL for an unknown or
 * malformed cluster. */
int fm_cluster_open(const char *name, long gpus, long nodes, long gpus_per_node,
                    sim_cluster *cl, char *errmsg, size_t errlen);

/* The clusters cl[0..n) (named names[i] in messages) as the document
 * {"clusters": [cluster file keys..., "gpus", "description"]} into *out.
 * FM_OK, or FM_EFAIL when a description does not fit or does not parse. */
struct json_t;
int fm_clusters_doc(const sim_cluster *cl, const char *const *names, int n, struct json_t **out,
                    char *errmsg, size_t errlen);

/* A traffic matrix run on a cluster: the flows with their finish times. */
typedef struct fm_net_result {
  sim_cluster cluster;
  sim_flow_line *flows; /* [nflows], released by fm_net_result_fini */
  int nflows;
  int64_t makespan_ns;
} fm_net_result;

/* The cluster opened as fm_cluster_open does, the flows of the CSV at path
 * (header src_gpu,dst_gpu,bytes) read and run on it, into *out (release
 * with fm_net_result_fini, also after a failure). FM_OK, FM_EUSAGE for a
 * size, FM_EFAIL for a cluster, file or flow error. */
int fm_net_run(const char *cluster, const char *path, long gpus, long nodes, long gpus_per_node,
               fm_net_result *out, char *errmsg, size_t errlen);
void fm_net_result_fini(fm_net_result *r);

/* The registry's policies as the document {"policies": [{"name",
 * "summary", "clairvoyant", "spec", "parameters": [{"key", "default",
 * "help"}]}]}, spec being NAME:key=default,...; NULL when out of memory. */
struct json_t *fm_policies_doc(void);

#endif
