/*
 * fm_trace.h - what `flexmoe trace` runs, as a library: a trace analysed
 * (info, stats), generated, fitted, rescaled or imported, each from one
 * configuration struct, over the traces library (traces/).
 *
 * Every call returns FM_OK, FM_EUSAGE (the configuration is wrong: an
 * iteration range past the trace, an unknown pattern, --top-k over
 * --experts) or FM_EFAIL (a file that cannot be read or written, a budget
 * exceeded), and on failure writes one sentence into the caller's errmsg:
 * "FILE[:LINE]: what is wrong", with "(--max-memory SIZE raises it)" when
 * the memory budget refused. Messages name the CLI's flags, as the key table
 * does (run/fm_keys.h). Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_TRACE_H
#define FLEXMOE_RUN_FM_TRACE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "traces/tr_fit.h"
#include "traces/tr_gen.h"
#include "traces/tr_stats.h"
#include "traces/tr_trace.h"

/* A trace file, the iterations [it0, it1) to use (it1 -1: to the end; it1
 * past the end is clamped, it0 at or past it is FM_EUSAGE) and the budget of
 * what a call may allocate (0: half of physical memory; traces/tr_limits.c). */
typedef struct fm_trace_config {
  const char *path;
  int64_t it0, it1;
  uint64_t max_memory;
} fm_trace_config;

/* "int64", "int32" or "uint16". */
const char *fm_trace_dtype_name(tr_dtype d);

/* ---- info and stats ---- */

/* A trace open with its statistics over [it0, it1) (the range clamped). */
typedef struct fm_trace_analysis {
  tr_trace trace;
  int64_t it0, it1;
  tr_stats stats;
} fm_trace_analysis;

/* Opens cfg->path and computes its statistics into *out (release with
 * fm_trace_analysis_fini; zeroed on failure). FM_OK, FM_EUSAGE for a range
 * past the trace, FM_EFAIL for a file that cannot be read or out of memory. */
int fm_trace_analyse(const fm_trace_config *cfg, fm_trace_analysis *out, char *errmsg,
                     size_t errlen);
/* Accepts a zeroed or failed analysis. */
void fm_trace_analysis_fini(fm_trace_analysis *a);

/* `trace info --format json`'s and `trace stats --format json`'s documents
 * (docs/traces.md); NULL when out of memory. */
json_t *fm_trace_info_doc(const fm_trace_analysis *a);
json_t *fm_trace_stats_doc(const fm_trace_analysis *a);

/* ---- gen ---- */

/* A synthetic trace: a named pattern or a fitted model (exactly one), its
 * sizes (-1, or 0 for d_model and d_ff: the pattern's or the fit's), the
 * iterations, the seed and the output file. */
typedef struct fm_trace_gen_config {
  const char *pattern, *fit_path, *out;
  int64_t iterations;
  uint64_t seed;
  long layers, ranks, experts, tokens_per_rank, top_k;
  long d_model, d_ff;
  uint64_t max_memory;
} fm_trace_gen_config;

/* The generator resolved from a configuration. gen is the model: a caller
 * may adjust its parameters (the CLI's model options) between
 * fm_trace_gen_prepare and fm_trace_gen_write. The fit and its arrays are
 * owned here. */
typedef struct fm_trace_gen {
  tr_gen_config gen;
  tr_fit fit;
  double *owned;
} fm_trace_gen;

/* The generator's defaults, then the fit's sizes (cfg->fit_path), then
 * cfg's sizes on top, then the pattern's or the fit's model, into *g
 * (release with fm_trace_gen_fini, also on failure). FM_OK, FM_EUSAGE for
 * top_k over experts or an unknown pattern, FM_EFAIL for a fit that cannot
 * be read or exceeds the budget. */
int fm_trace_gen_prepare(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *errmsg,
                         size_t errlen);
/* Writes g's trace to cfg->out (the sidecar's source names the pattern or
 * fit and the seed). FM_OK or FM_EFAIL. */
int fm_trace_gen_write(const fm_trace_gen_config *cfg, fm_trace_gen *g, char *errmsg,
                       size_t errlen);
void fm_trace_gen_fini(fm_trace_gen *g);

/* The generator's model options as typed, on top of the pattern or fit
 * resolved by fm_trace_gen_prepare: text[k] is option k's value (NULL: not
 * given). Each sets its own parameters of g->gen (a distribution replaces
 * the fitted profile; --drift, --rank-sigma and --momentum replace the
 * fit's per-expert arrays), so their order does not matter; they are
 * applied in enum order and the first error stops. Messages name an option
 * by its CLI flag (fm_gen_option_flags). FM_OK or FM_EUSAGE. */
typedef enum fm_gen_option {
  FM_GEN_DIST,       /* NAME[:P] uniform, zipf, lognormal or dirichlet */
  FM_GEN_DRIFT,      /* INNOV[:PHI] AR(1) on the logits */
  FM_GEN_RANK_SIGMA, /* S per-rank logit noise */
  FM_GEN_HOT,        /* N[:BOOST] hot experts */
  FM_GEN_ROTATE,     /* P the hot set moves every P iterations */
  FM_GEN_BURST,      /* PROB of a burst per expert and iteration */
  FM_GEN_REGIME,     /* P re-shuffle the popularity every P iterations */
  FM_GEN_RAGGED,     /* SIGMA log-normal rank totals */
  FM_GEN_MOMENTUM,   /* PSI the step is AR(1) */
  FM_GEN_NOPTS
} fm_gen_option;
extern const char *const fm_gen_option_flags[FM_GEN_NOPTS];
int fm_trace_gen_options(fm_trace_gen *g, const char *const text[FM_GEN_NOPTS], char *errmsg,
                         size_t errlen);

/* ---- fit ---- */

typedef struct fm_trace_fit_config {
  fm_trace_config trace;
  const char *out; /* FIT.json, written by temp + rename */
  uint64_t seed;   /* the calibration's random stream */
  /* called after each step of the fit (tr_fit_progress_fn; NULL: not
   * called), for progress lines only */
  tr_fit_progress_fn progress;
  void *progress_ctx;
} fm_trace_fit_config;

/* Fits the generator's model to cfg->trace's iterations (at least 12) into
 * *f and writes it to cfg->out. On success the caller releases *f with
 * tr_fit_fini; on failure it is released. FM_OK, FM_EUSAGE for a range past
 * the trace, FM_EFAIL otherwise. */
int fm_trace_fit(const fm_trace_fit_config *cfg, tr_fit *f, char *errmsg, size_t errlen);

/* ---- rescale ---- */

typedef struct fm_trace_rescale_config {
  fm_trace_config trace;
  const char *out;
  int gpus;               /* G: GPU g replays source rank g mod R */
  int64_t tokens_per_gpu; /* 0: each source rank's own (counts copied when G = R) */
  uint64_t seed;
} fm_trace_rescale_config;

/* What a written trace holds. */
typedef struct fm_trace_shape {
  int64_t iterations;
  int layers, ranks, experts;
  tr_dtype dtype;
} fm_trace_shape;

/* Rescales cfg->trace onto cfg->gpus GPUs and writes cfg->out; *out gets the
 * written shape (ranks = gpus). FM_OK, FM_EUSAGE for a range past the
 * trace, FM_EFAIL otherwise. */
int fm_trace_rescale(const fm_trace_rescale_config *cfg, fm_trace_shape *out, char *errmsg,
                     size_t errlen);

/* ---- import ---- */

typedef struct fm_trace_import_config {
  fm_trace_config trace; /* the input; the range applies to .npy/.csv traces */
  const char *out;
  const char *axes; /* the input's axis order (a .npy), or NULL */
  int expert_ids;   /* the input holds per-token expert ids */
  int experts;      /* with expert_ids: E, 0 = the largest id + 1 */
  tr_meta meta;     /* sidecar fields to set (top_k .. tokens_per_rank; 0 = keep
                       what the input says); checked against their ranges */
} fm_trace_import_config;

/* Converts cfg->trace into flexmoe's .npy (+ sidecar) at cfg->out and reads
 * back its shape into *out. FM_OK, FM_EUSAGE for malformed axes or a range
 * past the trace, FM_EFAIL otherwise. */
int fm_trace_import(const fm_trace_import_config *cfg, fm_trace_shape *out, char *errmsg,
                    size_t errlen);
/* Removes a written trace and its .json sidecar (what an import that
 * --strict refuses leaves behind); a file that is not there is no error. */
void fm_trace_remove(const char *path);

/* ---- sanity ---- */

/*
 * What looks wrong in a trace over iterations [it0, it1) (it1 -1: to the
 * end; clamped): checked on import and before every command reads one, so
 * suspicious input never passes silently. used_ranks is the ranks (GPUs) the
 * command replays (0: none in particular).
 */
typedef struct fm_trace_sanity {
  int64_t total;            /* token slots in the range */
  int64_t empty_iterations; /* iterations without a slot */
  int64_t first_empty_iteration;
  int empty_ranks;          /* ranks without a slot in the whole range */
  int first_empty_rank;     /* -1 when none */
  int empty_experts;        /* experts without a slot in any layer */
  int rank0_only_empty;     /* rank 0 is the one empty rank (ids from 1?) */
  int expert0_only_empty;   /* expert 0 is the one empty expert (ids from 1?) */
  int ranks, used_ranks;
  int warnings; /* how many sentences fm_trace_sanity_text writes */
} fm_trace_sanity;

/* Scans the range once (pages released as it goes) into *out; FM_OK, or
 * FM_EFAIL when out of memory (message in errmsg). A trace whose one slice
 * (R x E counts) exceeds the default memory budget is not scanned: *out
 * then says nothing (no warnings), and the command meets the budget itself. */
int fm_trace_check(const tr_trace *t, int64_t it0, int64_t it1, int used_ranks,
                   fm_trace_sanity *out, char *errmsg, size_t errlen);

/* The findings as sentences, one per line ("PATH: what; what to do"), into
 * buf (NUL-terminated, cut at len): an all-zero trace, ids that look
 * 1-based, empty ranks, empty iterations, ranks fewer or more than the
 * command uses. Returns the number of sentences. */
int fm_trace_sanity_text(const fm_trace_sanity *s, const char *path, char *buf, size_t len);

#endif
