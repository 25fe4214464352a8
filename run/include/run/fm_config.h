/*
 * fm_config.h - the rules every command shares: the default seed, the one
 * percentile, the one iteration range.
 *
 * `sim`, `sweep`, `run`, `validate` and `place` read these, so one
 * configuration gives one answer whichever command runs it:
 *   - FM_DEFAULT_SEED is the seed of a run that names none (docs/results.md
 *     "Seeds" says why it is 0);
 *   - fm_percentile is the nearest-rank percentile (the simulator's since its
 *     first release), used for the balance p50/p90 of simulated and measured
 *     runs and for validate's error statistics;
 *   - fm_iteration_range resolves --iterations A:B against a trace and
 *     refuses a range outside it with one message, where `run` used to clamp
 *     it silently.
 * Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_CONFIG_H
#define FLEXMOE_RUN_FM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* The seed of every command that is not given --seed/--seeds. */
#define FM_DEFAULT_SEED 0

/* Nearest-rank q-quantile (0 < q <= 1) of sorted[n] (ascending):
 * sorted[ceil(q n) - 1], the smallest value with at least a share q of the
 * values at or below it; always one of the values, never interpolated.
 * NAN when n < 1 (no value). */
double fm_percentile(const double *sorted, int64_t n, double q);

/* Sorts v[n] ascending in place (NAN-free input) and returns
 * fm_percentile(v, n, q). */
double fm_percentile_of(double *v, int64_t n, double q);

/* Iterations [begin, end) of a trace of `iterations` iterations, end < 0
 * meaning to the end, into [*a, *b). FM_OK, or FM_EUSAGE with the message
 * "--iterations: A:B is not inside the trace's 0:N" (the one every command
 * prints) when the range is empty or reaches outside the trace; *a and *b
 * are untouched then. */
int fm_iteration_range(int64_t begin, int64_t end, int64_t iterations, int64_t *a,
                       int64_t *b, char *errmsg, size_t errlen);
/* The same check with the key named as the caller's face spells it
 * ("--iterations" or "iterations", run/fm_keys.h fm_key_name). */
int fm_iteration_range_as(const char *name, int64_t begin, int64_t end, int64_t iterations,
                          int64_t *a, int64_t *b, char *errmsg, size_t errlen);

/*
 * The one sizing rule of `sim`, `place`, `sweep` and `net`: a cluster
 * (preset or file) sized by any of --gpus G, --nodes N, --gpus-per-node K
 * (0: not given) into *nodes x *gpn. K defaults to the cluster's; G alone
 * below K is one partial node of G GPUs (as a sweep's sizes), else G must
 * be a whole number of nodes; G with N gives N nodes of G/N GPUs and must
 * agree with K when both are given; nothing given keeps the cluster's own
 * size (a file's nodes and gpus_per_node). FM_OK, or FM_EUSAGE with one
 * sentence naming the flags that disagree and what fits (an unknown
 * cluster: the resolver's sentence).
 */
int fm_cluster_size(const char *cluster, int64_t gpus, int nodes, int gpus_per_node,
                    int *nodes_out, int *gpn_out, char *errmsg, size_t errlen);

#endif
