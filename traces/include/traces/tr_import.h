/*
 * tr_import.h - turning other layouts into flexmoe's .npy trace, streaming
 * one (iteration, layer) slice at a time into the writer (temp + rename).
 *
 * - tr_import_trace: any trace tr_open reads (.npy, long CSV), optionally
 *   an iteration range, re-written as .npy with its metadata.
 * - tr_import_axes: a .npy whose axes are in another order, named by a
 *   comma-separated list of iteration|layer|rank|expert (or the letters
 *   I, L, R, E: "L,I,E,R" or "LIER"); rank may be absent (3 axes, R = 1).
 * - tr_import_ids: per-token expert ids, a .npy of shape [I, L, R, T, k] or
 *   [I, L, T, k] (one rank): element [i][l][r][t][j] is the j-th expert
 *   chosen for token t of rank r at (iteration i, layer l); a negative id
 *   (-1) marks a dropped or padding slot and is not counted. Counts become
 *   the number of slots per (i, l, r, expert); E is `experts` or, when 0,
 *   the largest id + 1. Metadata: top_k = k, tokens_per_rank = T.
 *
 * The importers hold one output slice (R x E int64 counts); with the shapes
 * an axes or ids file may declare, or an expert id of 2^31 - 2, that slice
 * could be huge, so it must fit in max_memory bytes (0: the default
 * budget), else TR_EBUDGET before it is allocated. tr_import_trace's input
 * is already open (mapped, or a CSV read within its budget), and its slice
 * is one slice of that input.
 */
#ifndef FLEXMOE_TR_IMPORT_H
#define FLEXMOE_TR_IMPORT_H

#include <stdint.h>

#include "traces/tr_trace.h"

#ifdef __cplusplus
extern "C" {
#endif

int tr_import_trace(const tr_trace *t, int64_t it0, int64_t it1, const char *out,
                    const tr_meta *meta, tr_error *err);
int tr_import_axes(const char *in, const char *axes, const char *out, uint64_t max_memory,
                   tr_error *err);
int tr_import_ids(const char *in, int experts, const char *out, uint64_t max_memory,
                  tr_error *err);

#ifdef __cplusplus
}
#endif
#endif
