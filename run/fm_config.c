/*
 * fm_config.c - the default seed, the percentile and the iteration range
 * every command shares (fm_config.h).
 */
#include "run/fm_config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "run/fm_error.h"
#include "sim/sim_cluster.h"

double fm_percentile(const double *sorted, int64_t n, double q) {
  if (n < 1)
    return NAN;
  int64_t k = (int64_t)ceil(q * (double)n) - 1;
  if (k < 0)
    k = 0;
  if (k >= n)
    k = n - 1;
  return sorted[k];
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double fm_percentile_of(double *v, int64_t n, double q) {
  if (n > 1)
    qsort(v, (size_t)n, sizeof *v, cmp_double);
  return fm_percentile(v, n, q);
}

int fm_iteration_range(int64_t begin, int64_t end, int64_t iterations, int64_t *a,
                       int64_t *b, char *errmsg, size_t errlen) {
  return fm_iteration_range_as("--iterations", begin, end, iterations, a, b, errmsg, errlen);
}

int fm_iteration_range_as(const char *name, int64_t begin, int64_t end, int64_t iterations,
                          int64_t *a, int64_t *b, char *errmsg, size_t errlen) {
  int64_t e = end < 0 ? iterations : end;
  if (begin < 0 || begin >= iterations || e > iterations || e <= begin) {
    if (errmsg && errlen)
      snprintf(errmsg, errlen,
               "%s: %" PRId64 ":%" PRId64 " is not inside the trace's 0:%" PRId64, name,
               begin, e, iterations);
    return FM_EUSAGE;
  }
  *a = begin;
  *b = e;
  return FM_OK;
}

int fm_cluster_size(const char *cluster, int64_t gpus, int nodes, int gpus_per_node,
                    int *nodes_out, int *gpn_out, char *em, size_t el) {
  sim_cluster c;
  sim_errbuf err = {{0}};
  if (sim_cluster_resolve(cluster, &c, &err) != SIM_OK)
    return fm_fail(em, el, FM_EUSAGE, "--cluster: %s", err.msg);
  int k = gpus_per_node ? gpus_per_node : c.gpus_per_node;
  int n = nodes ? nodes : c.nodes;
  if (gpus && nodes) {
    if (gpus % nodes)
      return fm_fail(em, el, FM_EUSAGE,
                     "--gpus %" PRId64 " cannot be split evenly over --nodes %d: give one "
                     "of them, or a multiple of %d GPUs",
                     gpus, nodes, nodes);
    if (gpus_per_node && gpus != (int64_t)nodes * gpus_per_node)
      return fm_fail(em, el, FM_EUSAGE,
                     "--gpus %" PRId64 " is not --nodes %d x --gpus-per-node %d = %" PRId64
                     ": give two of the three",
                     gpus, nodes, gpus_per_node, (int64_t)nodes * gpus_per_node);
    k = (int)(gpus / nodes);
  } else if (gpus && gpus <= k && !gpus_per_node) {
    n = 1;
    k = (int)gpus;
  } else if (gpus) {
    if (gpus % k)
      return fm_fail(em, el, FM_EUSAGE,
                     "--gpus %" PRId64 " is not a whole number of nodes of %d GPUs (%s): "
                     "give a multiple of %d, or --gpus-per-node",
                     gpus, k, gpus_per_node ? "--gpus-per-node" : "the cluster's gpus_per_node",
                     k);
    if (gpus / k > 2147483647)
      return fm_fail(em, el, FM_EUSAGE, "--gpus %" PRId64 " is too many", gpus);
    n = (int)(gpus / k);
  }
  *nodes_out = n;
  *gpn_out = k;
  return FM_OK;
}
