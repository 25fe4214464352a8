/*
 * pl_memory.h - how many expert replicas fit on a GPU.
 *
 * An expert replica holds its parameters and optimizer state
 * (pl_expert_move_bytes) plus its gradient (params x bytes_per_elem).
 * Slots = floor((hbm_bytes - reserve_bytes) / replica_bytes), capped at the
 * number of experts (a GPU never holds two replicas of one expert).
 */
#ifndef FLEXMOE_PL_MEMORY_H
#define FLEXMOE_PL_MEMORY_H

#include "placement/pl_cost.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PL_ESLOTS when fewer than ceil(experts / gpus) fit (also when reserve_bytes
 * >= hbm_bytes); PL_EINVAL on bad numbers: hbm_bytes not finite and > 0,
 * reserve_bytes not finite and >= 0 (NaN and infinities included), a model
 * dimension < 1 or an optimizer size not finite and >= 0. *slots is written
 * only on success and is then in 1..experts. reserve_bytes: memory kept for
 * activations, non-MoE weights... */
int pl_slots_from_memory(const pl_model *m, double hbm_bytes, double reserve_bytes,
                         int experts, int gpus, int *slots);

#ifdef __cplusplus
}
#endif
#endif
