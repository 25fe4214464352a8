/*
 * pl_placement.h - expert-to-GPU placement of one MoE layer.
 *
 * For each expert e the sorted list of GPUs holding a replica; for each GPU
 * the experts it hosts. Invariants (pl_placement_check):
 *   - every expert has at least one replica;
 *   - no GPU hosts more than `slots` experts;
 *   - no two replicas of one expert on one GPU;
 *   - the two views (expert->GPUs, GPU->experts) agree.
 * Replica lists are kept sorted ascending by GPU id so that every walk over
 * them is deterministic.
 *
 * A layer with E experts on G GPUs with S slots per GPU needs G*S >= E.
 * Storage is O(E*G + G*S) ints, owned by the struct (init/fini).
 */
#ifndef FLEXMOE_PL_PLACEMENT_H
#define FLEXMOE_PL_PLACEMENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pl_placement {
  int experts; /* E */
  int gpus;    /* G */
  int slots;   /* S, max experts per GPU */
  int *nrep;   /* [E] replica count of expert e */
  int *rep;    /* [E*G] rep[e*G + i], i < nrep[e]: GPU ids, ascending */
  int *nhost;  /* [G] experts hosted by GPU g */
  int *host;   /* [G*S] host[g*S + j], j < nhost[g]: expert ids, ascending */
} pl_placement;

/* Empty placement (no replicas: not yet valid). PL_ESLOTS if G*S < E. */
int pl_placement_init(pl_placement *p, int experts, int gpus, int slots);
void pl_placement_fini(pl_placement *p); /* accepts NULL and zeroed structs */
/* dst must be initialised with the same dimensions. */
int pl_placement_copy(pl_placement *dst, const pl_placement *src);
void pl_placement_clear(pl_placement *p);
int pl_placement_equal(const pl_placement *a, const pl_placement *b);

int pl_placement_has(const pl_placement *p, int expert, int gpu);
/* PL_EFULL, PL_EEXIST, PL_ERANGE */
int pl_placement_add(pl_placement *p, int expert, int gpu);
/* PL_ENOENT; removing the last replica is allowed here (callers building a
 * layout need it); pl_placement_check catches an expert left without one. */
int pl_placement_remove(pl_placement *p, int expert, int gpu);
/* 0 or PL_EINVARIANT */
int pl_placement_check(const pl_placement *p);

/* Expert parallelism: when G <= E, expert e on GPU floor(e*G/E) (contiguous
 * blocks, E/G per GPU when G divides E); when G > E, expert-data-parallel:
 * GPU g hosts expert g mod E, so expert e has G/E replicas (or one more).
 * Needs S >= ceil(E/G). */
int pl_placement_static(pl_placement *p);

/* One change between two placements of a layer. */
typedef enum pl_move_kind {
  PL_MOVE_REPLICATE = 1, /* copy expert from `from` to new replica on `to` */
  PL_MOVE_DROP = 2,      /* remove the replica on `from` (to = -1, no bytes) */
  PL_MOVE_MIGRATE = 3    /* replica moves from `from` to `to` */
} pl_move_kind;

typedef struct pl_move {
  int layer;
  int expert;
  int from; /* source GPU */
  int to;   /* destination GPU, -1 for a drop */
  pl_move_kind kind;
  int64_t bytes; /* parameters + optimizer state moved (0 for a drop) */
  /* Appended (issue 17, weights-first moves; pl_policy.h rule 6): the
   * first of the move's two parts, the new replica's parameters
   * (pl_expert_weight_bytes), which must land before the layer's forward
   * pass; the other bytes - weight_bytes (optimizer state) must land
   * before the optimizer step, at the boundary. 0: a one-part move (every
   * move that is not in a weights-first plan). */
  int64_t weight_bytes;
} pl_move;

/*
 * Moves that turn `old` into `new_` exactly: for each expert, replicas only
 * in `new_` are paired with replicas only in `old` as migrations (in
 * ascending GPU order), the rest become replicates or drops. A replicate's
 * source is an old replica on the new one's node if any, else any old one;
 * among those the one sending the fewest copies of this diff so far (ties:
 * the lowest GPU id), so copies spread over the old replicas' links. `expert_bytes` is charged per copy.
 * `moves` must hold at least E*G entries (or call with moves=NULL to count).
 * Writes the count to *nmoves.
 */
int pl_placement_diff(const pl_placement *old, const pl_placement *new_,
                      int layer, int gpus_per_node, int64_t expert_bytes,
                      pl_move *moves, int *nmoves);

/* Applies moves to p in order (the inverse check of diff). */
int pl_placement_apply(pl_placement *p, const pl_move *moves, int nmoves);

#ifdef __cplusplus
}
#endif
#endif
