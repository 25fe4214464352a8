/*
 * pl_policies.h - the ops tables of the built-in policies (one .c each),
 * gathered by the registry in pl_policy.c. Callers use pl_policy_find().
 */
#ifndef FLEXMOE_PL_POLICIES_H
#define FLEXMOE_PL_POLICIES_H

#include "placement/pl_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const pl_policy_ops pl_policy_static_ops;
extern const pl_policy_ops pl_policy_capacity_ops;
extern const pl_policy_ops pl_policy_fastermoe_ops;
extern const pl_policy_ops pl_policy_smartmoe_ops;
extern const pl_policy_ops pl_policy_eplb_ops;
extern const pl_policy_ops pl_policy_flexmoe_ops;
extern const pl_policy_ops pl_policy_oracle_ops;

#ifdef __cplusplus
}
#endif
#endif
