/*
 * fm_sweep.h - a grid of simulations, computed by worker processes or MPI
 * ranks, recorded by one process, one transaction per grid point.
 *
 * The grid is traces x clusters x sizes x seeds x policies. Every point's
 * configuration key (fm_sim_config_key) is computed before anything runs,
 * so a bad trace, preset or policy refuses the whole sweep with one
 * message. Points already complete in the database are skipped (an
 * interrupted sweep resumes), duplicates run once. jobs > 1 forks that many
 * workers (dynamic scheduling over pipes; workers die with the parent);
 * under mpirun (built with MPI, OMPI_COMM_WORLD_SIZE / PMI in the
 * environment) the pending points are dealt round-robin to the ranks and
 * rank 0 records. A point's result depends on its configuration only, never
 * on jobs, MPI or interruption. Every pending point ends done, failed (the
 * simulation refused it), elsewhere (another process stored it first) or
 * lost (its worker died, or it was never handed out): lost points are not
 * stored, and the next run of the same sweep computes them.
 * The library never prints: what happens on the way (progress, a failed
 * point, a dead worker, a note from opening the database) reaches the
 * caller's on_event; a fatal error is one sentence in the caller's buffer.
 * Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_SWEEP_H
#define FLEXMOE_RUN_FM_SWEEP_H

#include <stddef.h>

#include "run/fm_sim.h"

/* What on_event is told. message: one sentence (FAILED: "LABEL: why";
 * WORKER: what became of a worker and the point it lost; NOTE: what opening
 * the database did). PROGRESS carries no message: read fm_sweep_stats_of. */
enum { FM_SWEEP_PROGRESS, FM_SWEEP_POINT_FAILED, FM_SWEEP_WORKER, FM_SWEEP_NOTE };

typedef struct fm_sweep fm_sweep; /* opaque: the grid and what became of it */

typedef struct fm_sweep_event {
  int kind;                /* FM_SWEEP_* */
  const char *message;     /* NULL for PROGRESS */
  const fm_sweep *sweep;
} fm_sweep_event;

typedef struct fm_sweep_config {
  const char *const *traces; /* [ntraces], at least one */
  int ntraces;
  const char *const *policies; /* [npolicies]; 0: the seven of `flexmoe policies` */
  int npolicies;
  const char *const *clusters; /* [nclusters]; 0: dgx-h100 */
  int nclusters;
  const long *sizes;           /* GPUs per point [nsizes], at least one */
  int nsizes;
  const long *seeds;           /* [nseeds]; 0: FM_DEFAULT_SEED */
  int nseeds;
  fm_sim_config base;          /* every other field of every point */
  int gpus_per_node;           /* 0: the cluster preset's */
  int jobs;                    /* worker processes, 1..256 (ignored under MPI) */
  const char *db;              /* results database */
  int lock_wait_s;             /* busy timeout of the database, seconds */
  void (*on_event)(void *ctx, const fm_sweep_event *ev); /* may be NULL */
  void *ctx;
} fm_sweep_config;

typedef struct fm_sweep_stats {
  int points, unique;        /* grid points, without duplicates */
  int pending;               /* to compute in this invocation */
  int done, failed, elsewhere, skipped, lost;
  int workers, ranks, rank;  /* ranks 1 without MPI; rank of this process */
  double wall_s;             /* since fm_sweep_run started */
} fm_sweep_stats;

/* Runs the sweep. FM_OK when every pending point was handed out and came
 * back (some may have failed or been lost: see the stats), FM_EUSAGE for a
 * refused grid, FM_EFAIL for a fatal error (database, pipes, fork); one
 * sentence in errmsg then. *out is set whenever the grid was built, also
 * after a fatal error (the stats and lost points say how far it came);
 * release with fm_sweep_free. Under MPI every rank returns the same code. */
int fm_sweep_run(const fm_sweep_config *cfg, fm_sweep **out, char *errmsg, size_t errlen);

const fm_sweep_stats *fm_sweep_stats_of(const fm_sweep *sw);
/* The configuration the sweep ran, its defaults filled in (policies,
 * clusters, seeds, db): borrowed from the caller's, valid while it is. */
const fm_sweep_config *fm_sweep_config_of(const fm_sweep *sw);

/* The i-th lost point in hand-out order (i from 0): its label ("POLICY on
 * CLUSTER, G GPUs, seed S, trace NAME") and whether its worker died (else
 * it was never handed out). 0, or -1 past the last. */
int fm_sweep_lost(const fm_sweep *sw, int i, const char **label, int *worker_died);

/* One point of the grid (i from 0, grid order: traces x clusters x sizes x
 * seeds x policies). cfg: its whole configuration (trace, cluster, nodes,
 * gpus_per_node, seed, policy as given); key: its configuration key (the
 * stored run's config_key); label as in the lost list; status: "computed"
 * (stored by this sweep), "stored" (complete in the database before it),
 * "elsewhere" (stored by another process meanwhile), "duplicate" (same key
 * as an earlier point), "failed" (error: the simulation's sentence) or
 * "lost" (not stored). Everything points into sw. 0, or -1 past the last. */
typedef struct fm_sweep_point {
  const fm_sim_config *cfg;
  const char *key, *label, *status, *error;
} fm_sweep_point;
int fm_sweep_point_of(const fm_sweep *sw, int i, fm_sweep_point *out);

void fm_sweep_free(fm_sweep *sw);

/* Cluster sizes given in nodes (`sweep --nodes 1,2`) as GPU counts:
 * sizes[i] = nodes[i] x K, K the GPUs per node of every cluster of
 * clusters[0..nclusters) (none: dgx-h100), gpus_per_node when non-zero,
 * else each cluster's own, which must then agree. FM_OK, or FM_EUSAGE
 * naming the cluster or the two counts. */
int fm_sweep_sizes_of_nodes(const char *const *clusters, int nclusters, int gpus_per_node,
                            const long *nodes, int n, long *sizes, char *errmsg, size_t errlen);

#endif
