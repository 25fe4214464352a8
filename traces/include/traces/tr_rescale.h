/*
 * tr_rescale.h - a trace recorded on R ranks driving a cluster of G GPUs.
 *
 * Rule (DESIGN.md): simulated GPU g takes the routing distribution of source
 * rank g mod R at the same (iteration, layer), scaled to the simulated
 * per-GPU token-slot count; integer counts are drawn by a seeded multinomial
 * (tr_sample.h: exact, by the Poisson method or conditional binomials), so
 * each GPU's total is exact, skew and fluctuation are preserved, and the
 * same seed gives the same counts. When G == R and the slot count is the trace's own, counts are
 * copied unchanged (no randomness).
 *
 * Every (iteration, layer, GPU) has its own random stream seeded from
 * (seed, iteration, layer, g), so slices can be drawn in any order, or in
 * parallel, with identical results, and GPU g's row does not depend on G:
 * the first 64 rows at G = 1,024 are the rows at G = 64 (same seed and slot
 * count; the identity copy at G == R excepted).
 */
#ifndef FLEXMOE_TR_RESCALE_H
#define FLEXMOE_TR_RESCALE_H

#include <stdint.h>

#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Counts for one (iteration, layer) on `gpus` GPUs into out[gpus * E]
 * (row = GPU). slots_per_gpu: token slots each GPU routes (tokens x top-k);
 * <= 0 keeps each source rank's own total. A source rank that routed no
 * tokens gives its GPUs zero counts. Errors: TR_EINVAL, TR_ENOMEM.
 */
int tr_rescale_slice(const tr_trace *t, int64_t iteration, int layer, int gpus,
                     int64_t slots_per_gpu, uint64_t seed, int64_t *out);

/* Bytes tr_rescale_write holds for t at `gpus` GPUs: one output slice
 * (gpus x E counts) and tr_rescale_slice's scratch (the source slice, the
 * prepared probabilities, one generator per GPU of a source rank);
 * saturates at UINT64_MAX. */
uint64_t tr_rescale_memory(const tr_trace *t, int gpus);

/*
 * The whole trace (iterations [it0, it1), it1 < 0: to the end) rescaled to
 * `gpus` GPUs and written to out (.npy + sidecar with meta), slice by slice:
 * neither the input nor the output is held in memory. What is held
 * (tr_rescale_memory) must fit in max_memory bytes (0: the default budget),
 * else TR_EBUDGET before anything is allocated. Errors name the file.
 */
int tr_rescale_write(const tr_trace *t, int64_t it0, int64_t it1, int gpus,
                     int64_t slots_per_gpu, uint64_t seed, const char *out,
                     const tr_meta *meta, uint64_t max_memory, tr_error *err);

/* The 64-bit seed of random stream (a, b) of a run seeded with `seed`
 * (SplitMix64 mix); used for the (iteration, layer) streams here (GPU g's
 * key is SplitMix64 of it xor g) and by the generators, so streams never
 * depend on the order they are drawn in. */
uint64_t tr_stream_seed(uint64_t seed, uint64_t a, uint64_t b);

#ifdef __cplusplus
}
#endif
#endif
