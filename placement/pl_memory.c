/*
 * pl_memory.c - expert slots per GPU from HBM capacity (see pl_memory.h).
 *
 * All arithmetic is in double from validated, finite inputs: the replica's
 * bytes are at least 2 x bytes_per_elem > 0, so the quotient is finite and
 * is compared with the expert count before it is ever converted to int.
 */
#include "placement/pl_memory.h"

#include <math.h>

#include "placement/pl_error.h"

int pl_slots_from_memory(const pl_model *m, double hbm_bytes, double reserve_bytes,
                         int experts, int gpus, int *slots) {
  /* written so that NaN fails every test */
  if (!m || !slots || experts < 1 || gpus < 1 || !(hbm_bytes > 0) || !isfinite(hbm_bytes) ||
      !(reserve_bytes >= 0) || !isfinite(reserve_bytes) || m->d_model < 1 || m->d_ff < 1 ||
      m->bytes_per_elem < 1 || !(m->optimizer_bytes_per_param >= 0) ||
      !isfinite(m->optimizer_bytes_per_param))
    return PL_EINVAL;
  /* pl_expert_move_bytes + the gradient, without its int64 round trip */
  double params = 2.0 * (double)m->d_model * (double)m->d_ff;
  double replica = params * (2.0 * m->bytes_per_elem + m->optimizer_bytes_per_param);
  double fit = floor((hbm_bytes - reserve_bytes) / replica);
  int need = (experts + gpus - 1) / gpus;
  if (!(fit >= need))
    return PL_ESLOTS;
  *slots = fit >= experts ? experts : (int)fit;
  return PL_OK;
}
