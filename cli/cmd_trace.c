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
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_text.h"
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

/* ---- trace info ------------------------------------------------------------ */

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
                          void (*table)(FILE *, const tr_stats *), int argc, char **argv) {
  int fmt, rc;
  fm_trace_analysis a;
  if ((rc = open_analysed(cmd, argc, argv, &fmt, &a)))
    return rc == CLI_HELP ? CLI_OK : rc;
  if (fmt == CLI_FMT_JSON) {
    rc = print_json(cmd, doc(&a));
  } else {
    fm_text_trace_header(stdout, &a);
    table(stdout, &a.stats);
  }
  fm_trace_analysis_fini(&a);
  return rc;
}

static int trace_info(int argc, char **argv) {
  return trace_analysed("trace info", fm_trace_info_doc, fm_text_trace_info, argc, argv);
}

/* ---- trace stats ----------------------------------------------------------- */

static int trace_stats(int argc, char **argv) {
  return trace_analysed("trace stats", fm_trace_stats_doc, fm_text_trace_stats, argc, argv);
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
  int rc = cli_parse_flags(cmd, argc, argv, opts);
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
    fm_text_trace_gen(stdout, &a.cfg, &g);
done:
  if (rc)
    cli_fail(rc, cmd, "%s", em);
  free(em);
  fm_trace_gen_fini(&g);
  return rc;
}

/* ---- trace fit ---------------------------------------------------------------- */

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
    fm_text_trace_fit(stdout, &f, cfg.out);
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
  fm_text_trace_rescale(stdout, &cfg, &w);
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
  fm_text_trace_import(stdout, cfg.out, &o);
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
