/*
 * fm_trace_cache.h - a caller-owned cache of opened traces: each file is
 * opened (mapped and content-hashed by tr_open) once, however many
 * configurations read it.
 *
 * A comparison of N policies resolves N configurations twice (key, then
 * compute); without a cache each resolution opened the trace again. Pass
 * one cache in fm_sim_config.traces to every call that should share the
 * opened files; fm_sim_compare makes one for its own calls when the caller
 * gave none, and a sweep makes one for all its points (its forked workers
 * inherit it). Entries are keyed by the path string as given (the same file
 * under two spellings is opened twice) and stay open until the cache is
 * freed, so a file must not change while a cache holds it. Not thread-safe:
 * one thread uses a cache at a time (what it returns may be read from any).
 * Owned by the run library authors (run/fm_trace_cache.c).
 */
#ifndef FLEXMOE_RUN_FM_TRACE_CACHE_H
#define FLEXMOE_RUN_FM_TRACE_CACHE_H

#include "traces/tr_trace.h"

typedef struct fm_trace_cache fm_trace_cache; /* opaque */

/* A new, empty cache into *out; FM_OK or FM_EFAIL (out of memory). */
int fm_trace_cache_new(fm_trace_cache **out);
/* Closes every trace the cache holds; accepts NULL. What fm_trace_cache_open
 * returned is invalid afterwards. */
void fm_trace_cache_free(fm_trace_cache *c);

/* The trace at path, opened with tr_open the first time it is asked for
 * and kept; *t points into the cache (do not tr_close it). On failure
 * returns tr_open's code with *err set as tr_open sets it (nothing is
 * cached, so a later call tries again), or TR_ENOMEM. */
int fm_trace_cache_open(fm_trace_cache *c, const char *path, const tr_trace **t,
                        tr_error *err);

#endif
