/*
 * fm_trace.c - `flexmoe trace`'s operations over the traces library: open a
 * trace within a budget and clamp its range, analyse, generate, fit,
 * rescale, import (run/fm_trace.h).
 *
 * Nothing here prints: each call fills its result or one sentence in the
 * caller's buffer. The sentences are the ones the CLI has always printed
 * after "flexmoe trace SUB: ", byte for byte (tests/run/golden.py,
 * tests/traces/test_cli.c).
 */
#include "run/fm_trace.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "run/fm_error.h"
#include "run/fm_json.h"
#include "run/fm_parse.h"
#include "traces/tr_import.h"
#include "traces/tr_rescale.h"

/* A traces library error as one sentence: FILE[:LINE]: message, and the
 * flag that raises the budget when the budget refused; FM_EFAIL. */
static int trace_fail(const tr_error *err, char *em, size_t el) {
  const char *more = err->code == TR_EBUDGET ? " (--max-memory SIZE raises it)" : "";
  if (err->line > 0)
    return fm_fail(em, el, FM_EFAIL, "%s:%ld: %s%s", err->path, err->line, err->msg, more);
  return fm_fail(em, el, FM_EFAIL, "%s: %s%s", err->path, err->msg, more);
}

const char *fm_trace_dtype_name(tr_dtype d) {
  return d == TR_INT64 ? "int64" : d == TR_INT32 ? "int32" : "uint16";
}

/* Opens cfg->path within its budget into *t and clamps [*it0, *it1) to it
 * (from cfg); FM_OK with *t open, or an error with *t closed. */
static int open_range(const fm_trace_config *cfg, tr_trace *t, int64_t *it0, int64_t *it1,
                      char *em, size_t el) {
  tr_error err;
  if (tr_open_within(t, cfg->path, cfg->max_memory, &err))
    return trace_fail(&err, em, el);
  *it0 = cfg->it0;
  *it1 = cfg->it1;
  if (*it1 < 0 || *it1 > t->iterations)
    *it1 = t->iterations;
  if (*it0 >= *it1) {
    int64_t n = t->iterations;
    tr_close(t);
    return fm_fail(em, el, FM_EUSAGE, "--iterations: the trace has %" PRId64 " iterations", n);
  }
  return FM_OK;
}

/* ---- info and stats ---- */

int fm_trace_analyse(const fm_trace_config *cfg, fm_trace_analysis *out, char *em, size_t el) {
  memset(out, 0, sizeof(*out));
  int rc = open_range(cfg, &out->trace, &out->it0, &out->it1, em, el);
  if (rc)
    return rc;
  if (tr_stats_compute(&out->trace, out->it0, out->it1, &out->stats)) {
    tr_close(&out->trace);
    memset(out, 0, sizeof(*out));
    return fm_fail(em, el, FM_EFAIL, "%s: out of memory", cfg->path);
  }
  return FM_OK;
}

void fm_trace_analysis_fini(fm_trace_analysis *a) {
  if (!a)
    return;
  tr_stats_fini(&a->stats);
  tr_close(&a->trace);
}

static json_t *meta_json(const tr_meta *m) {
  return json_pack("{s:i,s:i,s:i,s:i,s:I,s:o}", "top_k", m->top_k, "d_model", m->d_model,
                   "d_ff", m->d_ff, "bytes_per_elem", m->bytes_per_elem, "tokens_per_rank",
                   (json_int_t)m->tokens_per_rank, "source", fm_json_string(m->source));
}

static json_t *shape_json(const tr_trace *t) {
  return json_pack("[I,i,i,i]", (json_int_t)t->iterations, t->layers, t->ranks, t->experts);
}

/* One layer of `trace info`: max/mean median and p90, change at lag 1. */
static json_t *info_layer_json(int l, const tr_layer_stats *x) {
  return json_pack("{s:i,s:o,s:o,s:o}", "layer", l, "max_mean_p50",
                   fm_json_number(x->max_mean_p50), "max_mean_p90",
                   fm_json_number(x->max_mean_p90), "change_l1", fm_json_number(x->change[0]));
}

json_t *fm_trace_info_doc(const fm_trace_analysis *a) {
  const tr_trace *t = &a->trace;
  const tr_stats *s = &a->stats;
  char h[32];
  snprintf(h, sizeof(h), "%016" PRIx64, t->hash);
  json_t *layers = json_array();
  for (int l = 0; layers && l < s->layers; l++)
    if (json_array_append_new(layers, info_layer_json(l, &s->layer[l]))) {
      json_decref(layers);
      layers = NULL;
    }
  return json_pack("{s:o,s:s,s:o,s:[I,I],s:s,s:o,s:{s:I,s:I,s:b},s:o}", "path",
                   fm_json_string(t->path), "dtype", fm_trace_dtype_name(t->dtype), "shape",
                   shape_json(t), "iterations_analysed", (json_int_t)a->it0,
                   (json_int_t)a->it1, "hash", h, "meta", meta_json(&t->meta),
                   "slots_per_slice", "min", (json_int_t)s->tokens_min, "max",
                   (json_int_t)s->tokens_max, "constant", s->tokens_min == s->tokens_max,
                   "layers", layers);
}

/* One layer of `trace stats`: every statistic, NAN as null. */
static json_t *stats_layer_json(int l, const tr_layer_stats *x) {
  return json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                   "layer", l,
                   "max_mean_p50", fm_json_number(x->max_mean_p50), "max_mean_p90",
                   fm_json_number(x->max_mean_p90), "max_mean_mean",
                   fm_json_number(x->max_mean_mean), "gini", fm_json_number(x->gini),
                   "entropy", fm_json_number(x->entropy), "change_l1_lag1",
                   fm_json_number(x->change[0]), "change_l1_lag10",
                   fm_json_number(x->change[1]), "change_l1_lag100",
                   fm_json_number(x->change[2]), "change_l1_lag1_p50",
                   fm_json_number(x->change1_p50), "change_l1_lag1_p90",
                   fm_json_number(x->change1_p90), "change_l1_lag1_p99",
                   fm_json_number(x->change1_p99), "hot_persistence_lag1",
                   fm_json_number(x->hot_persist[0]), "hot_persistence_lag10",
                   fm_json_number(x->hot_persist[1]), "rank_divergence_l1",
                   fm_json_number(x->rank_divergence), "rank_total_cv",
                   fm_json_number(x->rank_total_cv));
}

json_t *fm_trace_stats_doc(const fm_trace_analysis *a) {
  const tr_trace *t = &a->trace;
  const tr_stats *s = &a->stats;
  json_t *layers = json_array();
  for (int l = 0; layers && l < s->layers; l++)
    if (json_array_append_new(layers, stats_layer_json(l, &s->layer[l]))) {
      json_decref(layers);
      layers = NULL;
    }
  return json_pack("{s:o,s:o,s:[I,I],s:i,s:o}", "path", fm_json_string(t->path), "shape",
                   shape_json(t), "iterations_analysed", (json_int_t)s->first,
                   (json_int_t)(s->first + s->iterations), "hot_experts", s->hot, "layers",
                   layers);
}

/* ---- gen ---- */

/* The generator's defaults, then the fit's sizes (loaded into g->fit), then
 * cfg's on top; FM_OK or FM_EFAIL. */
static int gen_sizes(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *em, size_t el) {
  tr_gen_config *c = &g->gen;
  tr_error err;
  tr_gen_defaults(c);
  if (cfg->fit_path) {
    if (tr_fit_load(&g->fit, cfg->fit_path, &err))
      return trace_fail(&err, em, el);
    c->layers = g->fit.layers;
    c->ranks = g->fit.ranks;
    c->experts = g->fit.experts;
    c->top_k = g->fit.top_k;
    c->tokens_per_rank = g->fit.tokens_per_rank;
    c->meta.d_model = g->fit.meta.d_model;
    c->meta.d_ff = g->fit.meta.d_ff;
    c->meta.bytes_per_elem = g->fit.meta.bytes_per_elem;
  }
  if (cfg->layers > 0) c->layers = (int)cfg->layers;
  if (cfg->ranks > 0) c->ranks = (int)cfg->ranks;
  if (cfg->experts > 0) c->experts = (int)cfg->experts;
  if (cfg->tokens_per_rank >= 0) c->tokens_per_rank = cfg->tokens_per_rank;
  if (cfg->top_k > 0) c->top_k = (int)cfg->top_k;
  if (cfg->d_model) c->meta.d_model = (int)cfg->d_model;
  if (cfg->d_ff) c->meta.d_ff = (int)cfg->d_ff;
  c->iterations = cfg->iterations;
  c->seed = cfg->seed;
  c->max_memory = cfg->max_memory;
  return FM_OK;
}

/* The pattern's or the fit's model into g->gen (the fit's arrays into
 * g->owned); FM_OK, FM_EUSAGE or FM_EFAIL. */
static int gen_model(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *em, size_t el) {
  tr_gen_config *c = &g->gen;
  int rc;
  if (c->top_k > c->experts)
    return fm_fail(em, el, FM_EUSAGE, "--top-k %d is larger than --experts %d", c->top_k,
                c->experts);
  if (cfg->pattern && tr_gen_pattern(c, cfg->pattern))
    return fm_fail(em, el, FM_EUSAGE, "unknown pattern '%s' (see 'flexmoe trace gen --help')",
                cfg->pattern);
  if (cfg->fit_path && (rc = tr_fit_apply(&g->fit, c, &g->owned))) {
    char need[32], have[32];
    if (rc == TR_EBUDGET)
      return fm_fail(em, el, FM_EFAIL,
                  "%s: generating %d layers x %d ranks x %d experts from the fit needs more "
                  "than %s, the memory budget (--max-memory SIZE raises it; the generator "
                  "alone needs %s)",
                  cfg->fit_path, c->layers, c->ranks, c->experts,
                  tr_format_size((double)tr_max_memory(c->max_memory), have, sizeof(have)),
                  tr_format_size((double)tr_gen_memory(c), need, sizeof(need)));
    return fm_fail(em, el, FM_EFAIL, "%s: out of memory", cfg->fit_path);
  }
  return FM_OK;
}

int fm_trace_gen_prepare(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *em,
                         size_t el) {
  memset(g, 0, sizeof(*g));
  int rc = gen_sizes(cfg, g, em, el);
  return rc ? rc : gen_model(cfg, g, em, el);
}

int fm_trace_gen_write(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *em, size_t el) {
  tr_error err;
  snprintf(g->gen.meta.source, sizeof(g->gen.meta.source),
           "flexmoe trace gen %s %s, seed %" PRIu64, cfg->pattern ? "--pattern" : "--fit",
           cfg->pattern ? cfg->pattern : cfg->fit_path, cfg->seed);
  if (tr_gen_write(&g->gen, cfg->out, &err))
    return trace_fail(&err, em, el);
  return FM_OK;
}

void fm_trace_gen_fini(fm_trace_gen *g) {
  if (!g)
    return;
  tr_free(g->owned);
  g->owned = NULL;
  tr_fit_fini(&g->fit);
}

/* ---- fit ---- */

int fm_trace_fit(const fm_trace_fit_config *cfg, tr_fit *f, char *em, size_t el) {
  const char *path = cfg->trace.path;
  tr_trace t;
  int64_t it0 = 0, it1 = 0;
  tr_error err;
  int rc;
  memset(f, 0, sizeof(*f));
  if ((rc = open_range(&cfg->trace, &t, &it0, &it1, em, el)))
    return rc;
  if (it1 - it0 < 12) {
    tr_close(&t);
    return fm_fail(em, el, FM_EFAIL, "%s: fitting needs at least 12 iterations", path);
  }
  rc = tr_fit_trace_progress(&t, it0, it1, cfg->seed, f, cfg->progress, cfg->progress_ctx);
  tr_close(&t);
  if (rc == TR_ENOMEM)
    return fm_fail(em, el, FM_EFAIL, "%s: out of memory", path);
  if (rc)
    return fm_fail(em, el, FM_EFAIL,
                "%s: its tokens per rank (slots per rank / top_k) must be between %" PRId64
                " and %" PRId64 " to fit a model (is the trace empty?)",
                path, tr_limits[TR_LIM_TOKENS_PER_RANK].lo, tr_limits[TR_LIM_TOKENS_PER_RANK].hi);
  if (tr_fit_save(f, cfg->out, &err)) {
    tr_fit_fini(f);
    return trace_fail(&err, em, el);
  }
  return FM_OK;
}

/* ---- rescale ---- */

int fm_trace_rescale(const fm_trace_rescale_config *cfg, fm_trace_shape *out, char *em,
                     size_t el) {
  tr_trace t;
  int64_t it0 = 0, it1 = 0;
  tr_error err;
  int rc = open_range(&cfg->trace, &t, &it0, &it1, em, el);
  if (rc)
    return rc;
  int k = t.meta.top_k > 0 ? t.meta.top_k : 1;
  int64_t tokens = cfg->tokens_per_gpu;
  tr_meta meta = t.meta;
  if (tokens > 0)
    meta.tokens_per_rank = tokens;
  snprintf(meta.source, sizeof(meta.source),
           "flexmoe trace rescale %.150s --gpus %d --tokens-per-gpu %" PRId64 " --seed %" PRIu64
           " (%.250s)",
           t.path, cfg->gpus, tokens, cfg->seed, t.meta.source);
  if (tr_rescale_write(&t, it0, it1, cfg->gpus, tokens > 0 ? tokens * k : 0, cfg->seed,
                       cfg->out, &meta, cfg->trace.max_memory, &err))
    rc = trace_fail(&err, em, el);
  else
    *out = (fm_trace_shape){.iterations = it1 - it0, .layers = t.layers, .ranks = cfg->gpus,
                            .experts = t.experts, .dtype = t.dtype};
  tr_close(&t);
  return rc;
}

/* ---- import ---- */

/* A .npy or long CSV trace (its range) re-written as flexmoe's .npy; the
 * sidecar's source says where it came from when the input had none. */
static int import_trace(const fm_trace_import_config *cfg, tr_error *err, char *em, size_t el) {
  tr_trace t;
  int64_t it0 = 0, it1 = 0;
  int rc = open_range(&cfg->trace, &t, &it0, &it1, em, el);
  if (rc)
    return rc;
  tr_meta meta = t.meta;
  if (!meta.source[0])
    snprintf(meta.source, sizeof(meta.source), "imported from %s", cfg->trace.path);
  rc = tr_import_trace(&t, it0, it1, cfg->out, &meta, err);
  tr_close(&t);
  return rc ? trace_fail(err, em, el) : FM_OK;
}

/* The sidecar fields cfg sets written over what *o (the imported file,
 * reopened) says: the file is written again with them (temp + rename, so
 * *o's mapping stays valid) and *o reopened. FM_OK when nothing is set. */
static int set_meta(const fm_trace_import_config *cfg, tr_trace *o, char *em, size_t el) {
  const tr_meta *m = &cfg->meta;
  if (!m->top_k && !m->d_model && !m->d_ff && !m->bytes_per_elem && !m->tokens_per_rank)
    return FM_OK;
  tr_meta meta = o->meta;
  meta.top_k = m->top_k ? m->top_k : meta.top_k;
  meta.d_model = m->d_model ? m->d_model : meta.d_model;
  meta.d_ff = m->d_ff ? m->d_ff : meta.d_ff;
  meta.bytes_per_elem = m->bytes_per_elem ? m->bytes_per_elem : meta.bytes_per_elem;
  meta.tokens_per_rank = m->tokens_per_rank ? m->tokens_per_rank : meta.tokens_per_rank;
  tr_error err;
  if (tr_check_meta(&meta, o->experts, TR_EINVAL, cfg->out, &err)) {
    char side[600]; /* nothing half-done stays: the file without the fields asked */
    tr_sidecar_path(cfg->out, side, sizeof side);
    remove(cfg->out);
    remove(side);
    return fm_fail(em, el, FM_EUSAGE, "%s (--top-k at most the trace's experts)", err.msg);
  }
  if (tr_import_trace(o, 0, o->iterations, cfg->out, &meta, &err)) {
    tr_close(o);
    return trace_fail(&err, em, el);
  }
  tr_close(o);
  return tr_open(o, cfg->out, &err) ? trace_fail(&err, em, el) : FM_OK;
}

int fm_trace_import(const fm_trace_import_config *cfg, fm_trace_shape *out, char *em,
                    size_t el) {
  const char *in = cfg->trace.path;
  uint64_t budget = cfg->trace.max_memory;
  tr_error err;
  int rc;
  if (cfg->axes) {
    rc = tr_import_axes(in, cfg->axes, cfg->out, budget, &err);
    if (rc == TR_EINVAL)
      return fm_fail(em, el, FM_EUSAGE, "%s", err.msg);
  } else if (cfg->expert_ids) {
    rc = tr_import_ids(in, cfg->experts, cfg->out, budget, &err);
  } else if ((rc = import_trace(cfg, &err, em, el))) {
    return rc;
  }
  if (rc)
    return trace_fail(&err, em, el);
  tr_trace o;
  if (tr_open(&o, cfg->out, &err))
    return trace_fail(&err, em, el);
  if ((rc = set_meta(cfg, &o, em, el))) {
    tr_close(&o);
    return rc;
  }
  *out = (fm_trace_shape){.iterations = o.iterations, .layers = o.layers, .ranks = o.ranks,
                          .experts = o.experts, .dtype = o.dtype};
  tr_close(&o);
  return FM_OK;
}

/* ---- sanity ---- */

/* One (iteration, layer) slice's counts added to the per-rank and
 * per-expert totals; returns the slice's sum. */
static int64_t add_slice(const int64_t *slice, int R, int E, int64_t *rank_tot,
                         int64_t *expert_tot) {
  int64_t sum = 0;
  for (int r = 0; r < R; r++)
    for (int e = 0; e < E; e++) {
      int64_t v = slice[(size_t)r * E + e];
      rank_tot[r] += v;
      expert_tot[e] += v;
      sum += v;
    }
  return sum;
}

/* The totals into the counts of *s. */
static void sum_up(const int64_t *rank_tot, const int64_t *expert_tot, int R, int E,
                   fm_trace_sanity *s) {
  s->first_empty_rank = -1;
  for (int r = 0; r < R; r++)
    if (rank_tot[r] == 0 && s->empty_ranks++ == 0)
      s->first_empty_rank = r;
  for (int e = 0; e < E; e++)
    s->empty_experts += expert_tot[e] == 0;
  s->rank0_only_empty = R > 1 && s->empty_ranks == 1 && rank_tot[0] == 0;
  s->expert0_only_empty = E > 1 && s->empty_experts == 1 && expert_tot[0] == 0;
}

int fm_trace_check(const tr_trace *t, int64_t it0, int64_t it1, int used_ranks,
                   fm_trace_sanity *out, char *em, size_t el) {
  int R = t->ranks, E = t->experts;
  if (it1 < 0 || it1 > t->iterations)
    it1 = t->iterations;
  if (it0 < 0 || it0 > it1)
    it0 = it1;
  fm_trace_sanity s = {.ranks = R, .used_ranks = used_ranks, .first_empty_iteration = -1};
  tr_error berr;
  uint64_t need = tr_mul_sat(tr_add_sat(tr_mul_sat((uint64_t)R, (uint64_t)E), (uint64_t)R + E),
                             sizeof(int64_t));
  if (tr_check_memory(need, 0, t->path, "the sanity check", &berr) != TR_OK) {
    s.total = 1; /* a slice past the memory budget: the command's own checks speak */
    *out = s;
    return FM_OK;
  }
  int64_t *slice = tr_calloc((size_t)R * E, sizeof(int64_t));
  int64_t *rank_tot = tr_calloc((size_t)R, sizeof(int64_t));
  int64_t *expert_tot = tr_calloc((size_t)E, sizeof(int64_t));
  int rc = FM_OK;
  if (!slice || !rank_tot || !expert_tot) {
    rc = fm_fail(em, el, FM_EFAIL, "%s: out of memory checking the trace", t->path);
    goto done;
  }
  for (int64_t it = it0; it < it1; it++) {
    int64_t it_sum = 0;
    for (int l = 0; l < t->layers; l++) {
      tr_slice(t, it, l, slice);
      it_sum += add_slice(slice, R, E, rank_tot, expert_tot);
    }
    if (it_sum == 0 && s.empty_iterations++ == 0)
      s.first_empty_iteration = it;
    s.total += it_sum;
    tr_release_before(t, it);
  }
  sum_up(rank_tot, expert_tot, R, E, &s);
  s.warnings = fm_trace_sanity_text(&s, t->path, NULL, 0);
  *out = s;
done:
  tr_free(slice);
  tr_free(rank_tot);
  tr_free(expert_tot);
  return rc;
}

/* Appends one line to buf[len] at *at (counting what did not fit). */
static void line(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line(char *buf, size_t len, size_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf && *at < len ? buf + *at : NULL, buf && *at < len ? len - *at : 0,
                    fmt, ap);
  va_end(ap);
  if (n > 0)
    *at += (size_t)n;
}

int fm_trace_sanity_text(const fm_trace_sanity *s, const char *p, char *buf, size_t len) {
  size_t at = 0;
  int n = 0;
  if (buf && len)
    buf[0] = '\0';
  if (s->total == 0) {
    line(buf, len, &at, "%s: every count is 0: nothing was routed (did the capture record?); "
                        "sim refuses it unless --allow-empty\n", p);
    return 1;
  }
  if (s->rank0_only_empty && ++n)
    line(buf, len, &at, "%s: rank 0 is empty and ranks 1 to %d are not: the rank ids look "
                        "1-based (ids start at 0: subtract 1 and import again)\n", p,
         s->ranks - 1);
  else if (s->empty_ranks && ++n)
    line(buf, len, &at, "%s: %d of %d ranks have no token slot (the first: rank %d): missing "
                        "data?\n", p, s->empty_ranks, s->ranks, s->first_empty_rank);
  if (s->expert0_only_empty && ++n)
    line(buf, len, &at, "%s: expert 0 is empty in every layer and the others are not: the "
                        "expert ids look 1-based (ids start at 0: subtract 1 and import "
                        "again)\n", p);
  if (s->empty_iterations && ++n)
    line(buf, len, &at, "%s: %" PRId64 " iteration%s without a token slot (the first: %" PRId64
                        "): missing data?\n", p, s->empty_iterations,
         s->empty_iterations == 1 ? "" : "s", s->first_empty_iteration);
  if (s->used_ranks && s->used_ranks < s->ranks && ++n)
    line(buf, len, &at, "%s: %d ranks, this run uses %d (GPU g replays rank g): rank%s %d%s%.0d "
                        "%s not used (%d GPUs or ranks use them all)\n", p,
         s->ranks, s->used_ranks, s->ranks - s->used_ranks > 1 ? "s" : "", s->used_ranks,
         s->ranks - s->used_ranks > 1 ? " to " : "",
         s->ranks - s->used_ranks > 1 ? s->ranks - 1 : 0,
         s->ranks - s->used_ranks > 1 ? "are" : "is", s->ranks);
  else if (s->used_ranks > s->ranks && s->used_ranks % s->ranks && ++n)
    line(buf, len, &at, "%s: %d ranks, this run uses %d: GPU g replays rank g mod %d, so "
                        "ranks 0 to %d are replayed once more than the others\n", p,
         s->ranks, s->used_ranks, s->ranks, s->used_ranks % s->ranks - 1);
  return n;
}

void fm_trace_remove(const char *path) {
  char side[600];
  tr_sidecar_path(path, side, sizeof side);
  remove(path);
  remove(side);
}

/* ---- the generator's model options ---- */

const char *const fm_gen_option_flags[FM_GEN_NOPTS] = {
    "--dist", "--drift", "--rank-sigma", "--hot", "--rotate", "--burst", "--regime", "--ragged",
    "--momentum"};

/* --dist NAME[:PARAM] into *g (replacing a fitted profile). */
static int gen_dist(const char *text, tr_gen_config *g, char *em, size_t el) {
  static const char *names[] = {"uniform", "zipf", "lognormal", "dirichlet"};
  char name[32];
  snprintf(name, sizeof(name), "%s", text);
  char *colon = strchr(name, ':');
  if (colon)
    *colon = '\0';
  int k = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0)
      k = i;
  if (k < 0)
    return fm_fail(em, el, FM_EUSAGE,
                   "--dist: '%s' is not one of uniform zipf lognormal dirichlet", text);
  g->dist = (tr_dist)k;
  g->base = NULL; /* a distribution replaces the fitted profile */
  if (colon && fm_parse_double("--dist", colon + 1, 1e-6, 100, &g->dist_param, em, el))
    return FM_EUSAGE;
  return FM_OK;
}

/* Model option k (its text) on top of the pattern or fit in *g. */
static int gen_option(int k, const char *text, tr_gen_config *g, char *em, size_t el) {
  const char *f = fm_gen_option_flags[k];
  double a = 0, b = 0;
  long v = 0;
  int rc = FM_OK;
  switch (k) {
  case FM_GEN_DIST: return gen_dist(text, g, em, el);
  case FM_GEN_DRIFT:
    a = g->innov1, b = g->phi1;
    if (!(rc = fm_parse_pair(f, text, 0, 10, &a, 0, 1, &b, em, el)))
      g->innov1 = a, g->phi1 = b, g->innov = g->phi = NULL;
    return rc;
  case FM_GEN_RANK_SIGMA:
    if (!(rc = fm_parse_double(f, text, 0, 10, &g->rank_sigma1, em, el)))
      g->rank_sigma = NULL;
    return rc;
  case FM_GEN_HOT:
    b = g->hot_boost;
    if (!(rc = fm_parse_pair(f, text, 0, g->experts, &a, -20, 20, &b, em, el)))
      g->hot = (int)a, g->hot_boost = b;
    return rc;
  case FM_GEN_ROTATE:
  case FM_GEN_REGIME:
    if (!(rc = fm_parse_long(f, text, 1, LONG_MAX, &v, em, el)))
      *(k == FM_GEN_ROTATE ? &g->rotate_period : &g->regime_period) = v;
    return rc;
  case FM_GEN_BURST: return fm_parse_double(f, text, 0, 1, &g->burst_prob, em, el);
  case FM_GEN_MOMENTUM:
    if (!(rc = fm_parse_double(f, text, 0, 0.99, &g->psi1, em, el)))
      g->psi = NULL;
    return rc;
  case FM_GEN_RAGGED: return fm_parse_double(f, text, 0, 3, &g->rank_total_sigma, em, el);
  default: return FM_OK;
  }
}

int fm_trace_gen_options(fm_trace_gen *g, const char *const text[FM_GEN_NOPTS], char *em,
                         size_t el) {
  int rc = FM_OK;
  for (int k = 0; k < FM_GEN_NOPTS && !rc; k++)
    if (text[k])
      rc = gen_option(k, text[k], &g->gen, em, el);
  return rc;
}
