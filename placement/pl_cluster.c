/*
 * pl_cluster.c - consistency check of the planner's cluster view.
 */
#include "placement/pl_cluster.h"

#include "placement/pl_error.h"

int pl_cluster_check(const pl_cluster *c) {
  if (!c || c->gpus < 1 || c->gpus_per_node < 1 || c->slots < 1)
    return PL_EINVAL;
  if (c->gpus % c->gpus_per_node != 0)
    return PL_EINVAL;
  /* written so that NaN fails every test */
  if (!(c->intra_Bps >= PL_BW_MIN_BPS && c->intra_Bps <= PL_BW_MAX_BPS) ||
      !(c->inter_Bps >= PL_BW_MIN_BPS && c->inter_Bps <= PL_BW_MAX_BPS) ||
      !(c->intra_lat_s >= 0 && c->intra_lat_s <= PL_LAT_MAX_S) ||
      !(c->inter_lat_s >= 0 && c->inter_lat_s <= PL_LAT_MAX_S) ||
      !(c->oversub >= 1.0 && c->oversub <= PL_OVERSUB_MAX))
    return PL_EINVAL;
  return PL_OK;
}
