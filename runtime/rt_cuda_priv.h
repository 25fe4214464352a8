/*
 * rt_cuda_priv.h - what the nccl backend borrows from the cuda backend:
 * the stream and device of a rank. Private to runtime/.
 */
#ifndef FLEXMOE_RT_CUDA_PRIV_H
#define FLEXMOE_RT_CUDA_PRIV_H

#include "runtime/rt_backend.h"

void *rt_cuda_stream(rt_backend *b, int rank); /* a cudaStream_t */
int rt_cuda_device(rt_backend *b, int rank);

#endif
