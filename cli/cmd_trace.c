/*
 * cmd_trace.c - flexmoe trace: inspect, import, generate, fit and rescale
 * routing traces. Each subcommand parses its flags here and calls traces/;
 * nothing here computes a statistic or draws a random number itself.
 *
 * Errors: a trace library error becomes one line
 * "flexmoe trace SUB: FILE[:LINE]: what is wrong" and exit 1; a bad command
 * line exits 2. Every subcommand takes --max-memory SIZE, the budget of what
 * it may allocate (a CSV read densely, a generator's or a rescale's working
 * set, an importer's slice; traces/tr_limits.c); a refusal names the size
 * needed and the flag. The operations themselves are the run library's
 * (run/fm_trace.h): this file maps flags to its configurations and prints
 * what comes back.
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_commands.h"
#include "run/fm_config.h"
#include "run/fm_keys.h"
#include "run/fm_trace.h"

/* ---- shared helpers ------------------------------------------------------- */

/* The run library's error buffer: its sentences name a file (up to 512
 * bytes), a line and a message, or a fit's sizes. */
#define ERRLEN 2048

/* A row of a trace key (run/fm_keys.h FM_TRACE_KEYS) with its short form. */
#define KEY_ROW(kind_, letter_, dest, id)                                                     \
  {.kind = (kind_), .letter = (letter_), .to = (dest), .key = FM_KEY_##id}
#define MAX_MEMORY_ROW(dest, letter_) KEY_ROW(CLI_O_SIZE, letter_, dest, TRACE_MAX_MEMORY)

#define FORMAT_ROW(dest, what)                                                                \
  {.flag = "--format", .letter = 'f', .kind = CLI_O_FORMAT, .to = (dest), .key = -1,        \
   .lo = CLI_FMT_TABLE | CLI_FMT_JSON, .arg = "F", .help = what}

/* The documents come from run/fm_trace (strings from a file through
 * fm_json_string). */
static int print_json(const char *cmd, json_t *root) {
  return cli_json_print(cmd, root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
}

/* A column of the statistics tables: a number, "-" where it is not finite. */
#define STAT_COL(head_, width_, fmt_)                                                         \
  {.head = (head_), .width = (width_), .fmt = (fmt_), .sep = "  ", .nan = "-", .finite = 1}
#define LAYER_COL CLI_COL("layer", 5, "%lld")

/* ---- trace info ------------------------------------------------------------ */

static void print_header(const fm_trace_analysis *a) {
  const tr_trace *t = &a->trace;
  const tr_stats *s = &a->stats;
  char v[5][32];
  const tr_meta *m = &t->meta;
  printf("trace     %s\n", t->path);
  printf("shape     %" PRId64 " iterations x %d layers x %d ranks x %d experts (%s)\n",
         t->iterations, t->layers, t->ranks, t->experts, fm_trace_dtype_name(t->dtype));
  if (s->first != 0 || s->iterations != t->iterations)
    printf("analysed  iterations %" PRId64 "..%" PRId64 "\n", s->first,
           s->first + s->iterations - 1);
  printf("hash      xxh3:%016" PRIx64 "\n", t->hash);
  snprintf(v[0], 32, m->top_k ? "%d" : "-", m->top_k);
  snprintf(v[1], 32, m->d_model ? "%d" : "-", m->d_model);
  snprintf(v[2], 32, m->d_ff ? "%d" : "-", m->d_ff);
  snprintf(v[3], 32, m->tokens_per_rank ? "%" PRId64 : "-", m->tokens_per_rank);
  snprintf(v[4], 32, m->bytes_per_elem ? "%d" : "-", m->bytes_per_elem);
  printf("model     top_k %s, d_model %s, d_ff %s, bytes/elem %s, tokens/rank %s\n", v[0],
         v[1], v[2], v[4], v[3]);
  if (m->source[0])
    printf("source    %s\n", m->source);
  if (s->tokens_min == s->tokens_max)
    printf("slots     %" PRId64 " per (iteration, layer), constant\n", s->tokens_min);
  else
    printf("slots     per (iteration, layer): min %" PRId64 ", max %" PRId64 " (varies)\n",
           s->tokens_min, s->tokens_max);
}

/* What `trace info` and `trace stats` share: parse [--format]
 * [--iterations] [--max-memory] FILE into *cfg (help: head, the rows,
 * tail). Returns CLI_OK, CLI_HELP after --help, or an exit code with one
 * message printed. */
static int parse_analysed(const char *cmd, int argc, char **argv,
                          int *fmt, fm_trace_config *cfg) {
  const cli_opt opts[] = {{.kind = CLI_O_RANGE, .letter = 'i', .to = &cfg->it0, .to2 = &cfg->it1,
                           .key = FM_KEY_TRACE_ITERATIONS},
                          FORMAT_ROW(fmt, "table (default) or json"),
                          MAX_MEMORY_ROW(&cfg->max_memory, 'M'), {.kind = CLI_O_END}};
  int rc = cli_parse_opts(cmd, argc, argv, opts);
  if (rc)
    return rc;
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd, "expected one trace FILE (see 'flexmoe %s --help')", cmd);
  cfg->path = argv[optind];
  return CLI_OK;
}

/* parse_analysed, then the trace analysed (run/fm_trace) into *a; CLI_OK
 * with *a filled (caller finalizes), CLI_HELP after --help, or an exit code
 * with one message printed. */
static int open_analysed(const char *cmd, int argc, char **argv,
                         int *fmt, fm_trace_analysis *a) {
  fm_trace_config cfg = {.path = NULL, .it0 = 0, .it1 = -1, .max_memory = 0};
  char em[ERRLEN];
  int rc;
  *fmt = CLI_FMT_TABLE;
  if ((rc = parse_analysed(cmd, argc, argv, fmt, &cfg)))
    return rc;
  if ((rc = fm_trace_analyse(&cfg, a, em, sizeof(em))))
    return cli_fail(rc, cmd, "%s", em);
  cli_trace_check_open(cmd, &a->trace, a->it0, a->it1, 0, 0); /* warnings only */
  return CLI_OK;
}

/* trace info and trace stats: FILE analysed, then the document doc makes
 * of it (--format json) or the header and the tables table prints. */
static int trace_analysed(const char *cmd,
                          json_t *(*doc)(const fm_trace_analysis *),
                          void (*table)(const tr_stats *), int argc, char **argv) {
  int fmt, rc;
  fm_trace_analysis a;
  if ((rc = open_analysed(cmd, argc, argv, &fmt, &a)))
    return rc == CLI_HELP ? CLI_OK : rc;
  if (fmt == CLI_FMT_JSON) {
    rc = print_json(cmd, doc(&a));
  } else {
    print_header(&a);
    table(&a.stats);
  }
  fm_trace_analysis_fini(&a);
  return rc;
}

/* Per layer: skew and change, in brief. */
static void print_info_table(const tr_stats *s) {
  static const cli_col cols[] = {LAYER_COL, STAT_COL("max/mean p50", 12, "%.2f"),
                                 STAT_COL("max/mean p90", 12, "%.2f"),
                                 STAT_COL("change/step (L1)", 16, "%.3f"), CLI_END_COL};
  printf("\n");
  cli_table_head(cols, CLI_FMT_TABLE);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const cli_cell row[] = {CLI_I(l), CLI_F(x->max_mean_p50), CLI_F(x->max_mean_p90),
                            CLI_F(x->change[0])};
    cli_table_row(cols, row, CLI_FMT_TABLE);
  }
}

static int trace_info(int argc, char **argv) {
  return trace_analysed("trace info", fm_trace_info_doc, print_info_table, argc, argv);
}

/* ---- trace stats ----------------------------------------------------------- */

/* The distribution of the per-iteration lag-1 change, per layer: the mean
 * above hides that real routing changes in bursts. */
static void print_change_table(const tr_stats *s) {
  static const cli_col cols[] = {LAYER_COL, STAT_COL("p50", 6, "%.3f"), STAT_COL("p90", 6, "%.3f"),
                                 STAT_COL("p99", 6, "%.3f"), STAT_COL("p90/p50", 7, "%.2f"),
                                 CLI_END_COL};
  printf("\n       -- lag-1 change (L1) per iteration --\n");
  cli_table_head(cols, CLI_FMT_TABLE);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const cli_cell row[] = {
        CLI_I(l), CLI_F(x->change1_p50), CLI_F(x->change1_p90), CLI_F(x->change1_p99),
        CLI_F(x->change1_p50 > 0 ? x->change1_p90 / x->change1_p50 : NAN)};
    cli_table_row(cols, row, CLI_FMT_TABLE);
  }
}

/* Per layer: skew, change at three lags, hot-set persistence, ranks. */
static void print_stats_table(const tr_stats *s) {
  static const cli_col cols[] = {
      LAYER_COL, STAT_COL("max/mean p50", 12, "%.2f"), STAT_COL("p90", 5, "%.2f"),
      STAT_COL("gini", 5, "%.3f"), STAT_COL("entropy", 7, "%.3f"), STAT_COL("lag1", 5, "%.3f"),
      STAT_COL("lag10", 5, "%.3f"), STAT_COL("lag100", 6, "%.3f"), STAT_COL("lag1", 4, "%.2f"),
      STAT_COL("lag10", 5, "%.2f"), STAT_COL("L1div", 5, "%.3f"), STAT_COL("totcv", 5, "%.3f"),
      CLI_END_COL};
  printf("\n       ------------- skew -------------  --- change (L1) ---  hot %d set "
         "  --- ranks ---\n",
         s->hot);
  cli_table_head(cols, CLI_FMT_TABLE);
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    const cli_cell row[] = {
        CLI_I(l), CLI_F(x->max_mean_p50), CLI_F(x->max_mean_p90), CLI_F(x->gini),
        CLI_F(x->entropy), CLI_F(x->change[0]), CLI_F(x->change[1]), CLI_F(x->change[2]),
        CLI_F(x->hot_persist[0]), CLI_F(x->hot_persist[1]), CLI_F(x->rank_divergence),
        CLI_F(x->rank_total_cv)};
    cli_table_row(cols, row, CLI_FMT_TABLE);
  }
  print_change_table(s);
}

static int trace_stats(int argc, char **argv) {
  return trace_analysed("trace stats", fm_trace_stats_doc, print_stats_table, argc, argv);
}

/* ---- trace gen --------------------------------------------------------------- */

/* What trace gen's flags say: the configuration (a size of -1, 0 for
 * d_model and d_ff, means "the pattern's or the fit's"), the model options
 * as text until the generator exists, and --spread. */
typedef struct {
  fm_trace_gen_config cfg;
  const char *model[FM_GEN_NOPTS]; /* run/fm_trace.h fm_gen_option */
  int spread;
} gen_args;

#define GEN_ROW(kind_, dest, id) KEY_ROW(kind_, 0, dest, GEN_##id)
#define MODEL_ROW(id) GEN_ROW(CLI_O_STR, &a->model[FM_GEN_##id], id)

/* argv into *a (the flag table: the keys FM_TRACE_KEYS of run/fm_keys.h),
 * then the required flags checked; CLI_OK, CLI_HELP after --help (with the
 * generator's pattern list), or CLI_EUSAGE with one message printed. */
static int gen_parse(const char *cmd, int argc, char **argv, gen_args *a) {
  fm_trace_gen_config *c = &a->cfg;
  const cli_opt opts[] = {
      KEY_ROW(CLI_O_STR, 'p', &c->pattern, GEN_PATTERN),
      KEY_ROW(CLI_O_STR, 'F', &c->fit_path, GEN_FIT),
      KEY_ROW(CLI_O_I64, 'n', &c->iterations, GEN_ITERATIONS),
      KEY_ROW(CLI_O_I64, 's', &c->seed, GEN_SEED),
      KEY_ROW(CLI_O_STR, 'o', &c->out, GEN_OUTPUT),
      GEN_ROW(CLI_O_LONG, &c->layers, LAYERS),
      GEN_ROW(CLI_O_LONG, &c->ranks, RANKS),
      GEN_ROW(CLI_O_LONG, &c->experts, EXPERTS),
      GEN_ROW(CLI_O_LONG, &c->tokens_per_rank, TOKENS),
      GEN_ROW(CLI_O_LONG, &c->top_k, TOP_K),
      GEN_ROW(CLI_O_LONG, &c->d_model, D_MODEL),
      GEN_ROW(CLI_O_LONG, &c->d_ff, D_FF),
      MAX_MEMORY_ROW(&c->max_memory, 0),
      MODEL_ROW(DIST),
      MODEL_ROW(DRIFT),
      MODEL_ROW(MOMENTUM),
      MODEL_ROW(RANK_SIGMA),
      MODEL_ROW(HOT),
      GEN_ROW(CLI_O_BOOL, &a->spread, SPREAD),
      MODEL_ROW(ROTATE),
      MODEL_ROW(BURST),
      MODEL_ROW(REGIME),
      MODEL_ROW(RAGGED),
      {.kind = CLI_O_END}};
  char list[2048] = "", tail[4096];
  for (int i = 0; tr_gen_patterns[i]; i++) {
    char line[160];
    snprintf(line, sizeof(line), "  %-19s %s\n", tr_gen_patterns[i], tr_gen_pattern_help[i]);
    strncat(list, line, sizeof(list) - strlen(list) - 1);
  }
  snprintf(tail, sizeof(tail), "\npatterns:\n%s%s", list, fm_command_of(cmd)->tail);
  int rc = cli_parse_flags_with(cmd, argc, argv, opts, tail);
  if (rc)
    return rc;
  if (!c->pattern == !c->fit_path)
    return cli_fail(CLI_EUSAGE, cmd, "give exactly one of --pattern NAME or --fit FIT.json");
  if (c->iterations < 0)
    return cli_fail(CLI_EUSAGE, cmd, "--iterations N is required");
  if (!c->out)
    return cli_fail(CLI_EUSAGE, cmd, "-o OUT.npy is required");
  return CLI_OK;
}

/* flexmoe trace gen ARGS: the flags, the generator resolved from the
 * pattern or fit (run/fm_trace), the model options on top, then the trace
 * written to -o; CLI_OK, CLI_EUSAGE for a bad command line, CLI_EFAIL (one
 * message printed) for a fit or write error. */
static int trace_gen(int argc, char **argv) {
  const char *cmd = "trace gen";
  gen_args a = {.cfg = {.iterations = -1, .seed = 1, .layers = -1, .ranks = -1, .experts = -1,
                        .tokens_per_rank = -1, .top_k = -1}};
  int rc = gen_parse(cmd, argc, argv, &a);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  fm_trace_gen g;
  size_t el = ERRLEN; /* room for the model options' texts, quoted whole */
  for (int k = 0; k < FM_GEN_NOPTS; k++)
    el += a.model[k] ? strlen(a.model[k]) : 0;
  char *em = malloc(el);
  if (!em)
    return cli_fail(CLI_EFAIL, cmd, "out of memory");
  if ((rc = fm_trace_gen_prepare(&a.cfg, &g, em, el)) ||
      (rc = fm_trace_gen_options(&g, a.model, em, el)))
    goto done;
  if (a.spread)
    g.gen.hot_layout = TR_HOT_SPREAD;
  rc = fm_trace_gen_write(&a.cfg, &g, em, el);
  if (!rc)
    printf("wrote %s: %" PRId64 " iterations x %d layers x %d ranks x %d experts, top-%d, %" PRId64
           " tokens per rank, seed %" PRIu64 "\n",
           a.cfg.out, a.cfg.iterations, g.gen.layers, g.gen.ranks, g.gen.experts, g.gen.top_k,
           g.gen.tokens_per_rank, a.cfg.seed);
done:
  if (rc)
    cli_fail(rc, cmd, "%s", em);
  free(em);
  fm_trace_gen_fini(&g);
  return rc;
}

/* ---- trace fit ---------------------------------------------------------------- */

/* The fitted model f (written to out) as two tables: per layer, the
 * targets and what the fitted model reproduces (target, fitted, error of
 * four statistics); then the model's parameters (dynamics of the logits,
 * burst regimes and step spread). */
#define FIT_COLS(prec)                                                                        \
  {.width = 7, .fmt = prec, .sep = "  "}, {.width = 7, .fmt = prec},                          \
      {.width = 7, .fmt = "%+.1f%%"}
#define FIT_CELLS(t, g) CLI_F(t), CLI_F(g), CLI_F(100 * ((g) / (t) - 1))
static void print_fit_table(const tr_fit *f, const char *out) {
  static const cli_col fit[] = {LAYER_COL, FIT_COLS("%.2f"), FIT_COLS("%.4f"), FIT_COLS("%.4f"),
                                FIT_COLS("%.4f"), CLI_END_COL};
  static const cli_col model[] = {
      LAYER_COL, {.head = "scale", .width = 6, .fmt = "%.3f", .sep = "  "},
      {.head = "innov", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "phi", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "psi", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "rank_s", .width = 6, .fmt = "%.3f", .sep = "  "},
      {.head = "enter", .width = 5, .fmt = "%.3f", .sep = "   "},
      {.head = "leave", .width = 5, .fmt = "%.3f", .sep = "  "},
      {.head = "ratio", .width = 5, .fmt = "%.2f", .sep = "  "},
      {.head = "share", .width = 5, .fmt = "%.2f", .sep = "  "},
      {.head = "sigma", .width = 5, .fmt = "%.3f", .sep = "  "}, CLI_END_COL};
  printf("fitted %s (%" PRId64 " iterations) -> %s; calibration %" PRId64
         " iterations, up to %d rounds\n\n",
         f->source, f->iterations, out, f->cal_iterations, f->rounds);
  printf("       ---- max/mean p50 -----  -- lag-1 change p50 ---  -- lag-1 change p90 ---"
         "  -- L1 change lag 10 ---\nlayer");
  for (int k = 0; k < 4; k++)
    printf("   target  fitted  error");
  printf("\n");
  for (int l = 0; l < f->layers; l++) {
    const tr_fit_stats *t = &f->layer[l].target, *g = &f->layer[l].fitted;
    const cli_cell row[] = {
        CLI_I(l), FIT_CELLS(t->max_mean_p50, g->max_mean_p50),
        FIT_CELLS(t->change1_p50, g->change1_p50), FIT_CELLS(t->change1_p90, g->change1_p90),
        FIT_CELLS(t->change10, g->change10)};
    cli_table_row(fit, row, CLI_FMT_TABLE);
  }
  printf("\n       ------------ logits ------------  ---- burst regimes (ML) ----  steps\n");
  cli_table_head(model, CLI_FMT_TABLE);
  for (int l = 0; l < f->layers; l++) {
    const tr_fit_layer *x = &f->layer[l];
    double vol = x->vol_enter + x->vol_leave;
    const cli_cell row[] = {CLI_I(l), CLI_F(x->scale), CLI_F(x->innov), CLI_F(x->phi),
                            CLI_F(x->psi), CLI_F(x->rank_sigma), CLI_F(x->vol_enter),
                            CLI_F(x->vol_leave), CLI_F(x->vol_ratio),
                            CLI_F(vol > 0 ? x->vol_enter / vol : 0), CLI_F(x->vol_sigma)};
    cli_table_row(model, row, CLI_FMT_TABLE);
  }
}

/* tr_fit_progress_fn for the progress line: a layer's regimes, then its
 * calibration. */
static void fit_progress(void *ctx, int done, int total) {
  char what[64];
  snprintf(what, sizeof what, "step %d/%d (%s)", done, total,
           done <= total / 2 ? "regimes" : "calibration");
  cli_progress_update(ctx, (double)done / total, what);
}

/* flexmoe trace fit FILE -o FIT.json: fits the generator's model to the
 * trace, writes it and prints target vs fitted; CLI_OK, CLI_EUSAGE for a bad
 * command line, CLI_EFAIL (one message printed) for a trace, fit or write
 * error. */
static int trace_fit(int argc, char **argv) {
  const char *cmd = "trace fit";
  int fmt = CLI_FMT_TABLE;
  cli_progress line;
  fm_trace_fit_config cfg = {.trace = {.it1 = -1}, .seed = 1, .progress = fit_progress,
                             .progress_ctx = &line};
  const cli_opt opts[] = {
      KEY_ROW(CLI_O_STR, 'o', &cfg.out, FIT_OUTPUT),
      {.kind = CLI_O_RANGE, .letter = 'i', .to = &cfg.trace.it0, .to2 = &cfg.trace.it1,
       .key = FM_KEY_FIT_ITERATIONS},
      KEY_ROW(CLI_O_I64, 's', &cfg.seed, FIT_SEED),
      FORMAT_ROW(&fmt, "table (default) or json (the FIT.json document)"),
      MAX_MEMORY_ROW(&cfg.trace.max_memory, 'M'), {.kind = CLI_O_END}};
  int c = cli_parse_opts(cmd, argc, argv, opts);
  if (c)
    return c == CLI_HELP ? CLI_OK : c;
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd, "expected one trace FILE (see 'flexmoe trace fit --help')");
  if (!cfg.out)
    return cli_fail(CLI_EUSAGE, cmd, "-o FIT.json is required");
  cfg.trace.path = argv[optind];
  cli_progress_start(&line, cmd);
  tr_fit f;
  char em[ERRLEN];
  c = fm_trace_fit(&cfg, &f, em, sizeof(em));
  cli_progress_end(&line);
  if (c)
    return cli_fail(c, cmd, "%s", em);
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON) {
    json_t *o = json_load_file(cfg.out, 0, NULL);
    rc = o ? print_json(cmd, o) : cli_fail(CLI_EFAIL, cmd, "%s: cannot read back", cfg.out);
  } else {
    print_fit_table(&f, cfg.out);
  }
  tr_fit_fini(&f);
  return rc;
}

/* ---- trace rescale ------------------------------------------------------------- */

static int trace_rescale(int argc, char **argv) {
  const char *cmd = "trace rescale";
  fm_trace_rescale_config cfg = {.trace = {.it1 = -1}, .gpus = -1, .seed = FM_DEFAULT_SEED};
  const cli_opt opts[] = {
      KEY_ROW(CLI_O_INT, 0, &cfg.gpus, RESCALE_GPUS),
      KEY_ROW(CLI_O_I64, 0, &cfg.tokens_per_gpu, RESCALE_TOKENS_PER_GPU),
      KEY_ROW(CLI_O_I64, 0, &cfg.seed, RESCALE_SEED),
      {.kind = CLI_O_RANGE, .to = &cfg.trace.it0, .to2 = &cfg.trace.it1,
       .key = FM_KEY_TRACE_ITERATIONS},
      KEY_ROW(CLI_O_STR, 'o', &cfg.out, RESCALE_OUTPUT),
      MAX_MEMORY_ROW(&cfg.trace.max_memory, 0),
      {.kind = CLI_O_END}};
  int c = cli_parse_opts(cmd, argc, argv, opts);
  if (c)
    return c == CLI_HELP ? CLI_OK : c;
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd,
                    "expected one trace FILE (see 'flexmoe trace rescale --help')");
  if (cfg.gpus < 0)
    return cli_fail(CLI_EUSAGE, cmd, "--gpus G is required");
  if (!cfg.out)
    return cli_fail(CLI_EUSAGE, cmd, "-o OUT.npy is required");
  cfg.trace.path = argv[optind];
  fm_trace_shape w;
  char em[ERRLEN];
  if ((c = fm_trace_rescale(&cfg, &w, em, sizeof(em))))
    return cli_fail(c, cmd, "%s", em);
  printf("wrote %s: %" PRId64 " iterations x %d layers x %d GPUs x %d experts, %s slots "
         "per GPU, seed %" PRIu64 "\n",
         cfg.out, w.iterations, w.layers, cfg.gpus, w.experts,
         cfg.tokens_per_gpu > 0 ? "exact" : "source-rank", cfg.seed);
  return CLI_OK;
}

/* ---- trace import ------------------------------------------------------------- */

#define IMPORT_ROW(kind_, dest, id) KEY_ROW(kind_, 0, dest, IMPORT_##id)

static int trace_import(int argc, char **argv) {
  const char *cmd = "trace import";
  int strict = 0;
  fm_trace_import_config cfg = {.trace = {.it1 = -1}};
  tr_meta *m = &cfg.meta;
  const cli_opt opts[] = {
      KEY_ROW(CLI_O_STR, 'o', &cfg.out, IMPORT_OUTPUT),
      IMPORT_ROW(CLI_O_STR, &cfg.axes, AXES),
      IMPORT_ROW(CLI_O_BOOL, &cfg.expert_ids, EXPERT_IDS),
      IMPORT_ROW(CLI_O_INT, &cfg.experts, EXPERTS),
      {.kind = CLI_O_RANGE, .to = &cfg.trace.it0, .to2 = &cfg.trace.it1,
       .key = FM_KEY_IMPORT_ITERATIONS},
      IMPORT_ROW(CLI_O_INT, &m->top_k, TOP_K),
      IMPORT_ROW(CLI_O_INT, &m->d_model, D_MODEL),
      IMPORT_ROW(CLI_O_INT, &m->d_ff, D_FF),
      IMPORT_ROW(CLI_O_I64, &m->tokens_per_rank, TOKENS_PER_RANK),
      IMPORT_ROW(CLI_O_INT, &m->bytes_per_elem, BYTES_PER_ELEM),
      IMPORT_ROW(CLI_O_BOOL, &strict, STRICT),
      MAX_MEMORY_ROW(&cfg.trace.max_memory, 0),
      {.kind = CLI_O_END}};
  int c = cli_parse_opts(cmd, argc, argv, opts);
  if (c)
    return c == CLI_HELP ? CLI_OK : c;
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd, "expected one input FILE (see 'flexmoe trace import --help')");
  if (!cfg.out)
    return cli_fail(CLI_EUSAGE, cmd, "-o OUT.npy is required");
  if (cfg.axes && cfg.expert_ids)
    return cli_fail(CLI_EUSAGE, cmd, "--axes and --expert-ids do not go together");
  if ((cfg.axes || cfg.expert_ids) && (cfg.trace.it0 != 0 || cfg.trace.it1 != -1))
    return cli_fail(CLI_EUSAGE, cmd, "--iterations works on .npy/.csv traces only");
  cfg.trace.path = argv[optind];
  fm_trace_shape o;
  char em[ERRLEN];
  if ((c = fm_trace_import(&cfg, &o, em, sizeof(em))))
    return cli_fail(c, cmd, "%s", em);
  if ((c = cli_trace_check(cmd, cfg.out, 0, -1, 0, strict ? CLI_TRACE_STRICT : 0))) {
    fm_trace_remove(cfg.out);
    return c;
  }
  printf("wrote %s: %" PRId64 " iterations x %d layers x %d ranks x %d experts (%s)\n", cfg.out,
         o.iterations, o.layers, o.ranks, o.experts, fm_trace_dtype_name(o.dtype));
  return CLI_OK;
}

/* ---- dispatch -------------------------------------------------------------- */

/* The subcommands, as main's table of commands (their usage and
 * summaries: run/fm_commands.h, the rows "trace ..."). */
static const cli_command subs[] = {
    {"info", trace_info}, {"stats", trace_stats},     {"gen", trace_gen},
    {"fit", trace_fit},   {"rescale", trace_rescale}, {"import", trace_import},
};

int cmd_trace(int argc, char **argv) {
  static const cli_menu menu = {.cmd = "trace", .cmds = subs, .n = sizeof subs / sizeof subs[0]};
  return cli_dispatch(&menu, argc, argv);
}
