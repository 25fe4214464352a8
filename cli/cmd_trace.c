/*
 * cmd_trace.c - flexmoe trace: inspect, import, generate, fit and rescale
 * routing traces. Each subcommand parses its flags here and calls traces/;
 * nothing here computes a statistic or draws a random number itself.
 *
 * Errors: a trace library error becomes one line
 * "flexmoe trace SUB: FILE[:LINE]: what is wrong" and exit 1; a bad command
 * line exits 2.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "traces/tr_stats.h"
#include "traces/tr_trace.h"

/* ---- shared helpers ------------------------------------------------------- */

static int trace_fail(const char *cmd, const tr_error *err) {
  if (err->line > 0)
    return cli_fail(CLI_EFAIL, cmd, "%s:%ld: %s", err->path, err->line, err->msg);
  return cli_fail(CLI_EFAIL, cmd, "%s: %s", err->path, err->msg);
}

static int is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* JSON number, or null for NaN/inf (JSON has no NaN). */
static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static int print_json(json_t *root) {
  int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  fputc('\n', stdout);
  json_decref(root);
  return rc ? CLI_EFAIL : CLI_OK;
}

static const char *dtype_name(tr_dtype d) {
  return d == TR_INT64 ? "int64" : d == TR_INT32 ? "int32" : "uint16";
}

/* Opens FILE and clamps [it0, it1) to it; prints the error and returns
 * non-zero on failure. */
static int open_range(const char *cmd, const char *path, tr_trace *t, int64_t *it0,
                      int64_t *it1) {
  tr_error err;
  if (tr_open(t, path, &err))
    return trace_fail(cmd, &err);
  if (*it1 < 0 || *it1 > t->iterations)
    *it1 = t->iterations;
  if (*it0 >= *it1) {
    int64_t n = t->iterations;
    tr_close(t);
    return cli_fail(CLI_EUSAGE, cmd, "--iterations: the trace has %" PRId64 " iterations", n);
  }
  return CLI_OK;
}

static void fmt_num(char *buf, size_t n, double v, int prec) {
  if (isfinite(v))
    snprintf(buf, n, "%.*f", prec, v);
  else
    snprintf(buf, n, "-");
}

/* ---- trace info ------------------------------------------------------------ */

static const char INFO_HELP[] =
    "usage: flexmoe trace info FILE [--iterations A:B] [--format table|json]\n"
    "\n"
    "What a routing trace holds: shape, dtype, model metadata from the .json sidecar,\n"
    "token slots per (iteration, layer), and per layer the expert max/mean load (median\n"
    "and p90 over iterations) and the step-to-step change (mean L1 distance between\n"
    "consecutive normalised load distributions, 0..2).\n"
    "\n"
    "  FILE               .npy ([I,L,R,E] or [I,L,E]; int32, int64, uint16) or long CSV\n"
    "  --iterations A:B   only iterations [A, B)\n"
    "  --format F         table (default) or json\n"
    "\n"
    "example:\n"
    "  flexmoe trace info traces/samples/gpt-l6-e32-top2-aux-200.npy\n";

static json_t *meta_json(const tr_trace *t) {
  json_t *m = json_object();
  json_object_set_new(m, "top_k", json_integer(t->meta.top_k));
  json_object_set_new(m, "d_model", json_integer(t->meta.d_model));
  json_object_set_new(m, "d_ff", json_integer(t->meta.d_ff));
  json_object_set_new(m, "bytes_per_elem", json_integer(t->meta.bytes_per_elem));
  json_object_set_new(m, "tokens_per_rank", json_integer(t->meta.tokens_per_rank));
  json_object_set_new(m, "source", json_string(t->meta.source));
  return m;
}

static void print_header(const tr_trace *t, const tr_stats *s) {
  char v[5][32];
  const tr_meta *m = &t->meta;
  printf("trace     %s\n", t->path);
  printf("shape     %" PRId64 " iterations x %d layers x %d ranks x %d experts (%s)\n",
         t->iterations, t->layers, t->ranks, t->experts, dtype_name(t->dtype));
  if (s->first != 0 || s->iterations != t->iterations)
    printf("analysed  iterations %" PRId64 "..%" PRId64 "\n", s->first,
           s->first + s->iterations - 1);
  printf("hash      fnv1a64:%016" PRIx64 "\n", t->hash);
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

static int trace_info(int argc, char **argv) {
  const char *cmd = "trace info";
  static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                       {"format", required_argument, 0, 'f'},
                                       {"iterations", required_argument, 0, 'i'},
                                       {0, 0, 0, 0}};
  int fmt = CLI_FMT_TABLE, c;
  int64_t it0 = 0, it1 = -1;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":hf:i:", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      cli_help(INFO_HELP);
      return CLI_OK;
    case 'f':
      if (cli_parse_format(cmd, optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))
        return CLI_EUSAGE;
      break;
    case 'i':
      if (cli_parse_range(cmd, "--iterations", optarg, &it0, &it1))
        return CLI_EUSAGE;
      break;
    default:
      return cli_bad_option(cmd, argv[optind - 1]);
    }
  }
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd, "expected one trace FILE (see 'flexmoe trace info --help')");
  tr_trace t;
  if ((c = open_range(cmd, argv[optind], &t, &it0, &it1)))
    return c;
  tr_stats s;
  if (tr_stats_compute(&t, it0, it1, &s)) {
    tr_close(&t);
    return cli_fail(CLI_EFAIL, cmd, "%s: out of memory", argv[optind]);
  }
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON) {
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(t.path));
    json_object_set_new(o, "dtype", json_string(dtype_name(t.dtype)));
    json_object_set_new(o, "shape", json_pack("[I,i,i,i]", (json_int_t)t.iterations, t.layers,
                                              t.ranks, t.experts));
    json_object_set_new(o, "iterations_analysed",
                        json_pack("[I,I]", (json_int_t)it0, (json_int_t)it1));
    char h[32];
    snprintf(h, sizeof(h), "%016" PRIx64, t.hash);
    json_object_set_new(o, "hash", json_string(h));
    json_object_set_new(o, "meta", meta_json(&t));
    json_object_set_new(o, "slots_per_slice",
                        json_pack("{s:I,s:I,s:b}", "min", (json_int_t)s.tokens_min, "max",
                                  (json_int_t)s.tokens_max, "constant",
                                  s.tokens_min == s.tokens_max));
    json_t *layers = json_array();
    for (int l = 0; l < s.layers; l++) {
      json_t *x = json_object();
      json_object_set_new(x, "layer", json_integer(l));
      json_object_set_new(x, "max_mean_p50", jnum(s.layer[l].max_mean_p50));
      json_object_set_new(x, "max_mean_p90", jnum(s.layer[l].max_mean_p90));
      json_object_set_new(x, "change_l1", jnum(s.layer[l].change[0]));
      json_array_append_new(layers, x);
    }
    json_object_set_new(o, "layers", layers);
    rc = print_json(o);
  } else {
    print_header(&t, &s);
    printf("\nlayer  max/mean p50  max/mean p90  change/step (L1)\n");
    for (int l = 0; l < s.layers; l++) {
      char a[3][32];
      fmt_num(a[0], 32, s.layer[l].max_mean_p50, 2);
      fmt_num(a[1], 32, s.layer[l].max_mean_p90, 2);
      fmt_num(a[2], 32, s.layer[l].change[0], 3);
      printf("%5d  %12s  %12s  %16s\n", l, a[0], a[1], a[2]);
    }
  }
  tr_stats_fini(&s);
  tr_close(&t);
  return rc;
}

/* ---- trace stats ----------------------------------------------------------- */

static const char STATS_HELP[] =
    "usage: flexmoe trace stats FILE [--iterations A:B] [--format table|json]\n"
    "\n"
    "Per layer: skew (expert max/mean load median and p90, Gini, normalised entropy),\n"
    "fluctuation (L1 distance between normalised load distributions at lags 1, 10 and\n"
    "100 iterations), persistence of the hot experts (share of the E/8 most loaded\n"
    "experts still among them 1 and 10 iterations later), and per-rank variation (L1\n"
    "distance of each rank's distribution from the layer's; CV of rank totals).\n"
    "Streams through the file: a trace larger than memory works.\n"
    "\n"
    "  --iterations A:B   only iterations [A, B)\n"
    "  --format F         table (default) or json\n"
    "\n"
    "example:\n"
    "  flexmoe trace stats traces/samples/gpt-l6-e32-top2-aux-200.npy --format json\n";

static json_t *stats_json(const tr_trace *t, const tr_stats *s) {
  json_t *o = json_object();
  json_object_set_new(o, "path", json_string(t->path));
  json_object_set_new(o, "shape", json_pack("[I,i,i,i]", (json_int_t)t->iterations, t->layers,
                                            t->ranks, t->experts));
  json_object_set_new(o, "iterations_analysed",
                      json_pack("[I,I]", (json_int_t)s->first,
                                (json_int_t)(s->first + s->iterations)));
  json_object_set_new(o, "hot_experts", json_integer(s->hot));
  json_t *layers = json_array();
  for (int l = 0; l < s->layers; l++) {
    const tr_layer_stats *x = &s->layer[l];
    json_t *j = json_object();
    json_object_set_new(j, "layer", json_integer(l));
    json_object_set_new(j, "max_mean_p50", jnum(x->max_mean_p50));
    json_object_set_new(j, "max_mean_p90", jnum(x->max_mean_p90));
    json_object_set_new(j, "max_mean_mean", jnum(x->max_mean_mean));
    json_object_set_new(j, "gini", jnum(x->gini));
    json_object_set_new(j, "entropy", jnum(x->entropy));
    json_object_set_new(j, "change_l1_lag1", jnum(x->change[0]));
    json_object_set_new(j, "change_l1_lag10", jnum(x->change[1]));
    json_object_set_new(j, "change_l1_lag100", jnum(x->change[2]));
    json_object_set_new(j, "hot_persistence_lag1", jnum(x->hot_persist[0]));
    json_object_set_new(j, "hot_persistence_lag10", jnum(x->hot_persist[1]));
    json_object_set_new(j, "rank_divergence_l1", jnum(x->rank_divergence));
    json_object_set_new(j, "rank_total_cv", jnum(x->rank_total_cv));
    json_array_append_new(layers, j);
  }
  json_object_set_new(o, "layers", layers);
  return o;
}

static int trace_stats(int argc, char **argv) {
  const char *cmd = "trace stats";
  static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                       {"format", required_argument, 0, 'f'},
                                       {"iterations", required_argument, 0, 'i'},
                                       {0, 0, 0, 0}};
  int fmt = CLI_FMT_TABLE, c;
  int64_t it0 = 0, it1 = -1;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":hf:i:", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      cli_help(STATS_HELP);
      return CLI_OK;
    case 'f':
      if (cli_parse_format(cmd, optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))
        return CLI_EUSAGE;
      break;
    case 'i':
      if (cli_parse_range(cmd, "--iterations", optarg, &it0, &it1))
        return CLI_EUSAGE;
      break;
    default:
      return cli_bad_option(cmd, argv[optind - 1]);
    }
  }
  if (optind != argc - 1)
    return cli_fail(CLI_EUSAGE, cmd, "expected one trace FILE (see 'flexmoe trace stats --help')");
  tr_trace t;
  if ((c = open_range(cmd, argv[optind], &t, &it0, &it1)))
    return c;
  tr_stats s;
  if (tr_stats_compute(&t, it0, it1, &s)) {
    tr_close(&t);
    return cli_fail(CLI_EFAIL, cmd, "%s: out of memory", argv[optind]);
  }
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON) {
    rc = print_json(stats_json(&t, &s));
  } else {
    print_header(&t, &s);
    printf("\n       ------------- skew -------------  --- change (L1) ---  hot %d set "
           "  --- ranks ---\n",
           s.hot);
    printf("layer  max/mean p50    p90   gini  entropy   lag1  lag10  lag100  lag1  lag10"
           "  L1div  totcv\n");
    for (int l = 0; l < s.layers; l++) {
      const tr_layer_stats *x = &s.layer[l];
      char a[11][32];
      fmt_num(a[0], 32, x->max_mean_p50, 2);
      fmt_num(a[1], 32, x->max_mean_p90, 2);
      fmt_num(a[2], 32, x->gini, 3);
      fmt_num(a[3], 32, x->entropy, 3);
      fmt_num(a[4], 32, x->change[0], 3);
      fmt_num(a[5], 32, x->change[1], 3);
      fmt_num(a[6], 32, x->change[2], 3);
      fmt_num(a[7], 32, x->hot_persist[0], 2);
      fmt_num(a[8], 32, x->hot_persist[1], 2);
      fmt_num(a[9], 32, x->rank_divergence, 3);
      fmt_num(a[10], 32, x->rank_total_cv, 3);
      printf("%5d  %12s  %5s  %5s  %7s  %5s  %5s  %6s  %4s  %5s  %5s  %5s\n", l, a[0], a[1],
             a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
    }
  }
  tr_stats_fini(&s);
  tr_close(&t);
  return rc;
}

/* ---- dispatch -------------------------------------------------------------- */

typedef struct trace_sub {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} trace_sub;

static const trace_sub subs[] = {
    {"info", trace_info, "shape, metadata, tokens, skew and change per layer"},
    {"stats", trace_stats, "skew, fluctuation, hot-expert persistence, rank variation"},
};
#define NSUBS (sizeof(subs) / sizeof(subs[0]))

static void trace_usage(FILE *out) {
  fprintf(out, "usage: flexmoe trace SUBCOMMAND [options]   (flexmoe trace SUBCOMMAND --help)\n"
               "\n"
               "Routing traces: counts[iteration][layer][rank][expert] of token slots, as\n"
               ".npy (+ .json sidecar) or long CSV (iteration,layer,rank,expert,tokens).\n"
               "\n"
               "subcommands:\n");
  for (size_t i = 0; i < NSUBS; i++)
    fprintf(out, "  %-8s %s\n", subs[i].name, subs[i].summary);
  fprintf(out, "\nexample:\n  flexmoe trace info traces/samples/gpt-l6-e32-top2-aux-200.npy\n");
}

int cmd_trace(int argc, char **argv) {
  if (argc < 2) {
    trace_usage(stderr);
    return CLI_EUSAGE;
  }
  if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    trace_usage(stdout);
    return CLI_OK;
  }
  for (size_t i = 0; i < NSUBS; i++)
    if (strcmp(argv[1], subs[i].name) == 0)
      return subs[i].fn(argc - 1, argv + 1);
  return cli_fail(CLI_EUSAGE, "trace", "unknown subcommand '%s' (see 'flexmoe trace --help')",
                  argv[1]);
}
