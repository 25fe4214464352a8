/*
 * pl_memory.c - expert slots per GPU from HBM capacity (see pl_memory.h).
 */
#include "placement/pl_memory.h"

#include <math.h>

#include "placement/pl_error.h"

int pl_slots_from_memory(const pl_model *m, double hbm_bytes, double reserve_bytes,
                         int experts, int gpus, int *slots) {
  if (!m || !slots || experts < 1 || gpus < 1 || !(hbm_bytes > 0) ||
      reserve_bytes < 0 || m->d_model < 1 || m->d_ff < 1 || m->bytes_per_elem < 1)
    return PL_EINVAL;
  double replica = (double)pl_expert_move_bytes(m) +
                   (double)pl_expert_params(m) * m->bytes_per_elem;
  double fit = floor((hbm_bytes - reserve_bytes) / replica);
  int need = (experts + gpus - 1) / gpus;
  if (fit < need)
    return PL_ESLOTS;
  *slots = fit > experts ? experts : (int)fit;
  return PL_OK;
}
