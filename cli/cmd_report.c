/*
 * cmd_report.c - flexmoe report: the policy comparison stored in a results
 * database, per (kind, trace, cluster, engine) and cluster size.
 *
 * Aggregation rules (docs/results.md):
 *   - only complete runs count; a configuration stored more than once (same
 *     config_key, e.g. `flexmoe sim --db` run twice) counts once, its latest
 *     run (schema 3 keeps one complete run per key itself; older databases
 *     are read as they are); runs without a config_key count each;
 *   - a row is (kind, trace, cluster, engine, gpus, policy): its mean
 *     iteration time is the mean over its runs (seeds) of each run's mean,
 *     its effective time the mean of each run's effective time (the store's
 *     st_effective_ms: mean / (1 - dropped share of token slots); +inf when
 *     a run drops every slot);
 *   - comparisons are over effective time, so a policy that drops tokens
 *     cannot look faster than the work it does: speedup = static's / the
 *     policy's in the same group (the first static spec when several exist);
 *     oracle gap = the policy's / the oracle's - 1 (how far above the lower
 *     bound it is). Both are absent when the peer was not run. For dropless
 *     policies effective time is the mean and nothing changes.
 * The database is opened read-only and never changed.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "placement/pl_policy.h"
#include "store/st_store.h"

/* a stored run's policy is its whole canonical spec: never cut on reading */
_Static_assert(sizeof(((st_run_summary *)0)->policy) > PL_SPEC_MAX,
               "st_run_summary.policy holds a canonical spec");

#define CMD "report"

static const char help[] =
    "usage: flexmoe report [--db FILE] [--format table|csv|json] [--kind sim|gpu]\n"
    "                      [--runs]\n"
    "\n"
    "Prints the runs stored in a results database: per trace, cluster and\n"
    "number of GPUs, each policy's mean and effective iteration time, its\n"
    "speedup over `static` and its distance to the `oracle` lower bound (when\n"
    "those runs exist, in effective time), and the mean time breakdown per\n"
    "iteration.\n"
    "\n"
    "  --db FILE        results database (default flexmoe.db)\n"
    "  --format F       table (default), csv or json\n"
    "  --kind K         only simulated (sim) or measured (gpu) runs\n"
    "  --runs           list every complete run instead of the comparison\n"
    "\n"
    "columns: mean_ms = mean iteration time; eff_ms = mean_ms / (1 - dropped)\n"
    "(time per iteration of useful work; inf if every slot is dropped);\n"
    "speedup = static / policy and vs_oracle = policy / oracle - 1, both in\n"
    "eff_ms; compute, a2a (dispatch + combine), allreduce (replica\n"
    "gradients), migr (expert moves), other: mean ms per iteration; balance =\n"
    "mean over iterations of max/mean GPU load; dropped = share of token\n"
    "slots dropped. eff_ms prices dropping as lost throughput only, not its\n"
    "effect on model quality.\n"
    "\n"
    "example:\n"
    "  flexmoe sweep --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --policy static --policy flexmoe --policy oracle --cluster dgx-h100 \\\n"
    "      --gpus 8,64 --db flexmoe.db\n"
    "  flexmoe report --db flexmoe.db --format table\n";

/* One row of the comparison. */
typedef struct row {
  const st_run_summary *first; /* group identity and policy */
  int runs;
  int64_t iterations;
  double mean_ms, effective_ms, compute_ms, alltoall_ms, allreduce_ms,
      migration_ms, other_ms, balance;
  double migrated_bytes, dropped_tokens, total_tokens;
  double speedup;    /* NAN when there is no static peer */
  double oracle_gap; /* NAN when there is no oracle peer */
} row;

static int policy_is(const char *spec, const char *name) {
  size_t n = strlen(name);
  return strncmp(spec, name, n) == 0 && (spec[n] == '\0' || spec[n] == ':');
}

/* Sort rank of a policy inside its group: the order of DESIGN.md (static
 * first, the oracle bound last), unknown names before the oracle. */
static int policy_rank(const char *spec) {
  static const char *const order[] = {"static", "capacity", "fastermoe",
                                      "smartmoe", "eplb", "flexmoe"};
  for (int i = 0; i < 6; i++)
    if (policy_is(spec, order[i]))
      return i;
  return policy_is(spec, "oracle") ? 8 : 7;
}

/* Whether "key=value" occurs among the comma-separated parameters of spec. */
static int has_param(const char *spec, const char *tok, size_t len) {
  const char *p = strchr(spec, ':');
  while (p) {
    p++;
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == len && strncmp(p, tok, len) == 0)
      return 1;
    p = end;
  }
  return 0;
}

/* The table's short name of a policy: its base name plus only the
 * parameters that differ between the specs of that base in the report
 * (canonical specs list every parameter; the full spec is in csv, json and
 * --runs). */
static void short_spec(const char *spec, const char *const *specs, size_t n,
                       char *out, size_t len) {
  const char *colon = strchr(spec, ':');
  size_t base = colon ? (size_t)(colon - spec) : strlen(spec);
  size_t off = (size_t)snprintf(out, len, "%.*s", (int)base, spec);
  int first = 1;
  for (const char *p = colon; p && off < len;) {
    p++;
    const char *end = strchr(p, ',');
    size_t tl = end ? (size_t)(end - p) : strlen(p);
    int common = 1;
    for (size_t i = 0; i < n && common; i++)
      if (strncmp(specs[i], spec, base) == 0 &&
          (specs[i][base] == ':' || specs[i][base] == '\0'))
        common = has_param(specs[i], p, tl);
    if (!common) {
      off += (size_t)snprintf(out + off, len - off, "%s%.*s", first ? ":" : ",",
                              (int)tl, p);
      first = 0;
    }
    p = end;
  }
}

static int same_group(const st_run_summary *a, const st_run_summary *b) {
  return strcmp(a->kind, b->kind) == 0 && strcmp(a->trace, b->trace) == 0 &&
         strcmp(a->trace_hash, b->trace_hash) == 0 &&
         strcmp(a->cluster, b->cluster) == 0 &&
         strcmp(a->engine, b->engine) == 0 && a->it_first == b->it_first &&
         a->it_last == b->it_last && a->gpus == b->gpus;
}

static int cmp_runs(const void *pa, const void *pb) {
  const st_run_summary *a = pa, *b = pb;
  int c;
  if ((c = strcmp(a->kind, b->kind)) || (c = strcmp(a->trace, b->trace)) ||
      (c = strcmp(a->trace_hash, b->trace_hash)) ||
      (c = strcmp(a->cluster, b->cluster)) || (c = strcmp(a->engine, b->engine)))
    return c;
  if (a->it_first != b->it_first)
    return a->it_first < b->it_first ? -1 : 1;
  if (a->it_last != b->it_last)
    return a->it_last < b->it_last ? -1 : 1;
  if (a->gpus != b->gpus)
    return a->gpus < b->gpus ? -1 : 1;
  if (policy_rank(a->policy) != policy_rank(b->policy))
    return policy_rank(a->policy) - policy_rank(b->policy);
  if ((c = strcmp(a->policy, b->policy)))
    return c;
  if ((c = strcmp(a->config_key, b->config_key)))
    return c;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* Drops superseded runs (same non-empty config_key, older id) in place;
 * runs must be sorted by cmp_runs (so equal keys are adjacent). */
static size_t dedupe(st_run_summary *runs, size_t n) {
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    if (out > 0 && runs[i].config_key[0] &&
        strcmp(runs[out - 1].config_key, runs[i].config_key) == 0 &&
        strcmp(runs[out - 1].policy, runs[i].policy) == 0 &&
        same_group(&runs[out - 1], &runs[i])) {
      runs[out - 1] = runs[i]; /* later id wins */
      continue;
    }
    runs[out++] = runs[i];
  }
  return out;
}

/* Builds rows from sorted, deduplicated runs; returns the count. */
static size_t build_rows(const st_run_summary *runs, size_t n, row *rows) {
  size_t nr = 0;
  for (size_t i = 0; i < n; i++) {
    row *r = nr ? &rows[nr - 1] : NULL;
    if (!r || !same_group(r->first, &runs[i]) ||
        strcmp(r->first->policy, runs[i].policy) != 0) {
      r = &rows[nr++];
      memset(r, 0, sizeof(*r));
      r->first = &runs[i];
    }
    const st_run_summary *s = &runs[i];
    r->runs++;
    r->iterations += s->iterations;
    r->mean_ms += s->mean_ms;
    r->effective_ms += s->effective_ms; /* +inf stays +inf */
    r->compute_ms += s->compute_ms;
    r->alltoall_ms += s->alltoall_ms;
    r->allreduce_ms += s->allreduce_ms;
    r->migration_ms += s->migration_ms;
    r->other_ms += s->other_ms;
    r->balance += s->balance_mean;
    r->migrated_bytes += (double)s->bytes_migrated;
    r->dropped_tokens += (double)s->tokens_dropped;
    r->total_tokens += (double)s->tokens_total;
  }
  for (size_t i = 0; i < nr; i++) {
    row *r = &rows[i];
    double k = r->runs;
    r->mean_ms /= k;
    r->effective_ms /= k;
    r->compute_ms /= k;
    r->alltoall_ms /= k;
    r->allreduce_ms /= k;
    r->migration_ms /= k;
    r->other_ms /= k;
    r->balance /= k;
  }
  /* Peers inside each group. */
  for (size_t i = 0; i < nr;) {
    size_t j = i;
    double stat = NAN, orac = NAN;
    while (j < nr && same_group(rows[i].first, rows[j].first)) {
      if (isnan(stat) && policy_is(rows[j].first->policy, "static"))
        stat = rows[j].effective_ms;
      if (isnan(orac) && policy_is(rows[j].first->policy, "oracle"))
        orac = rows[j].effective_ms;
      j++;
    }
    for (size_t k = i; k < j; k++) {
      double eff = rows[k].effective_ms;
      rows[k].speedup = cli_speedup(stat, eff);
      /* policy / oracle - 1: +inf for a policy that drops everything */
      rows[k].oracle_gap = isfinite(orac) && orac > 0 ? eff / orac - 1 : NAN;
    }
    i = j;
  }
  return nr;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static void print_table(const char *db, const row *rows, size_t nr,
                        size_t nruns) {
  const char **specs = malloc((nr ? nr : 1) * sizeof(*specs));
  for (size_t i = 0; specs && i < nr; i++)
    specs[i] = rows[i].first->policy;
  printf("%s: %zu complete run%s\n", db, nruns, nruns == 1 ? "" : "s");
  for (size_t i = 0; i < nr; i++) {
    const st_run_summary *f = rows[i].first;
    if (i == 0 || strcmp(f->kind, rows[i - 1].first->kind) ||
        strcmp(f->trace, rows[i - 1].first->trace) ||
        strcmp(f->cluster, rows[i - 1].first->cluster) ||
        strcmp(f->engine, rows[i - 1].first->engine) ||
        f->it_first != rows[i - 1].first->it_first ||
        f->it_last != rows[i - 1].first->it_last) {
      printf("\n%s runs, trace %s, cluster %s, engine %s, iterations %lld:%lld\n",
             f->kind, f->trace[0] ? base_name(f->trace) : "-", f->cluster,
             f->engine[0] ? f->engine : "-", (long long)f->it_first,
             (long long)f->it_last + 1);
      printf("%5s  %-22s %4s %6s %10s %10s %8s %9s %8s %8s %9s %7s %7s %7s %7s\n",
             "gpus", "policy", "runs", "iters", "mean_ms", "eff_ms", "speedup",
             "vs_oracle", "compute", "a2a", "allreduce", "migr", "other",
             "balance", "dropped");
    }
    char speed[32] = "-", gap[32] = "-", name[sizeof f->policy];
    if (specs)
      short_spec(f->policy, specs, nr, name, sizeof(name));
    else
      snprintf(name, sizeof(name), "%s", f->policy);
    if (!isnan(rows[i].speedup))
      snprintf(speed, sizeof(speed), "%.2fx", rows[i].speedup);
    if (!isnan(rows[i].oracle_gap))
      snprintf(gap, sizeof(gap), "%+.1f%%", 100 * rows[i].oracle_gap);
    char drop[32];
    snprintf(drop, sizeof(drop), "%.1f%%",
             rows[i].total_tokens > 0
                 ? 100 * rows[i].dropped_tokens / rows[i].total_tokens
                 : 0.0);
    /* %f prints an effective time of +inf (all dropped) as "inf" */
    printf("%5d  %-22s %4d %6lld %10.3f %10.3f %8s %9s %8.3f %8.3f %9.3f %7.3f "
           "%7.3f %7.2f %7s\n",
           f->gpus, name, rows[i].runs, (long long)rows[i].iterations,
           rows[i].mean_ms, rows[i].effective_ms, speed, gap, rows[i].compute_ms, rows[i].alltoall_ms,
           rows[i].allreduce_ms, rows[i].migration_ms, rows[i].other_ms,
           rows[i].balance, drop);
  }
  free(specs);
  printf("\n(times: mean ms per iteration; eff_ms = mean_ms / (1 - dropped), inf "
         "if all are dropped;\n speedup = static / policy and vs_oracle = policy / "
         "oracle - 1, both in eff_ms;\n dropped = share of token slots dropped "
         "(capacity); policies by name and the\n parameters that differ, in full: "
         "--format csv|json or --runs)\n");
}

/* A CSV field, quoted when it holds a comma, quote or newline. */
static void csv_field(const char *s) {
  if (!strpbrk(s, ",\"\n")) {
    fputs(s, stdout);
    return;
  }
  putchar('"');
  for (; *s; s++) {
    if (*s == '"')
      putchar('"');
    putchar(*s);
  }
  putchar('"');
}

static void csv_num(double v, const char *fmt) {
  putchar(',');
  if (!isnan(v))
    printf(fmt, v);
}

static void print_csv(const row *rows, size_t nr) {
  puts("kind,trace,cluster,engine,first_iteration,end_iteration,gpus,policy,"
       "runs,iterations,"
       "mean_iteration_ms,speedup_vs_static,oracle_gap,compute_ms,alltoall_ms,"
       "allreduce_ms,migration_ms,other_ms,balance_mean,migrated_bytes,"
       "dropped_tokens,effective_iteration_ms");
  for (size_t i = 0; i < nr; i++) {
    const row *r = &rows[i];
    const st_run_summary *f = r->first;
    csv_field(f->kind);
    putchar(',');
    csv_field(f->trace);
    putchar(',');
    csv_field(f->cluster);
    putchar(',');
    csv_field(f->engine);
    printf(",%lld,%lld,%d,", (long long)f->it_first, (long long)f->it_last + 1,
           f->gpus);
    csv_field(f->policy);
    printf(",%d,%lld", r->runs, (long long)r->iterations);
    csv_num(r->mean_ms, "%.6f");
    csv_num(r->speedup, "%.6f");
    csv_num(r->oracle_gap, "%.6f");
    csv_num(r->compute_ms, "%.6f");
    csv_num(r->alltoall_ms, "%.6f");
    csv_num(r->allreduce_ms, "%.6f");
    csv_num(r->migration_ms, "%.6f");
    csv_num(r->other_ms, "%.6f");
    csv_num(r->balance, "%.6f");
    csv_num(r->migrated_bytes, "%.0f");
    csv_num(r->dropped_tokens, "%.0f");
    csv_num(r->effective_ms, "%.6f"); /* "inf" when every slot is dropped */
    putchar('\n');
  }
}

/* Strings from the database (paths, names, specs) go through
 * fm_json_string and numbers through fm_json_number, so no row can make
 * json_pack fail and vanish; a NULL pack is out of memory, an error. */
static int print_json(const char *db, const row *rows, size_t nr, size_t nruns) {
  json_t *doc = json_object(), *arr = json_array();
  int bad = !doc || !arr;
  bad |= json_object_set_new(doc, "database", fm_json_string(db));
  bad |= json_object_set_new(doc, "runs", json_integer((json_int_t)nruns));
  for (size_t i = 0; i < nr && !bad; i++) {
    const row *r = &rows[i];
    const st_run_summary *f = r->first;
    json_t *bd = json_pack("{s:o,s:o,s:o,s:o,s:o}", "compute", fm_json_number(r->compute_ms),
                           "alltoall", fm_json_number(r->alltoall_ms), "allreduce",
                           fm_json_number(r->allreduce_ms), "migration",
                           fm_json_number(r->migration_ms), "other",
                           fm_json_number(r->other_ms));
    json_t *o = json_pack(
        "{s:o,s:o,s:o,s:o,s:[I,I],s:i,s:o,s:i,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I}",
        "kind", fm_json_string(f->kind), "trace", fm_json_string(f->trace), "cluster",
        fm_json_string(f->cluster), "engine", fm_json_string(f->engine), "iteration_range",
        (json_int_t)f->it_first, (json_int_t)f->it_last + 1, "gpus", f->gpus, "policy",
        fm_json_string(f->policy), "runs", r->runs, "iterations", (json_int_t)r->iterations,
        "mean_iteration_ms", fm_json_number(r->mean_ms), "effective_iteration_ms",
        fm_json_number(r->effective_ms), "speedup_vs_static", fm_json_number(r->speedup),
        "oracle_gap", fm_json_number(r->oracle_gap), "breakdown_ms", bd, "balance_mean",
        fm_json_number(r->balance), "migrated_bytes", (json_int_t)r->migrated_bytes,
        "dropped_tokens", (json_int_t)r->dropped_tokens);
    bad |= json_array_append_new(arr, o);
  }
  bad |= json_object_set_new(doc, "rows", arr);
  if (bad) {
    json_decref(doc);
    doc = NULL;
  }
  return cli_json_print(CMD, doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
}

/* --runs: one line (or object) per stored run, in id order. */
static int print_runs(const char *db, const st_run_summary *runs, size_t n,
                      int fmt) {
  if (fmt == CLI_FMT_JSON) {
    json_t *doc = json_object(), *arr = json_array();
    int bad = !doc || !arr;
    bad |= json_object_set_new(doc, "database", fm_json_string(db));
    for (size_t i = 0; i < n && !bad; i++) {
      const st_run_summary *r = &runs[i];
      bad |= json_array_append_new(
          arr, json_pack("{s:I,s:o,s:o,s:o,s:o,s:i,s:o,s:I,s:I,s:o,s:o,s:o}", "id",
                         (json_int_t)r->id, "kind", fm_json_string(r->kind), "policy",
                         fm_json_string(r->policy), "cluster", fm_json_string(r->cluster),
                         "engine", fm_json_string(r->engine), "gpus", r->gpus, "trace",
                         fm_json_string(r->trace), "seed", (json_int_t)r->seed, "iterations",
                         (json_int_t)r->iterations, "mean_iteration_ms",
                         fm_json_number(r->mean_ms), "effective_iteration_ms",
                         fm_json_number(r->effective_ms), "config_key",
                         fm_json_string(r->config_key)));
    }
    bad |= json_object_set_new(doc, "runs", arr);
    if (bad) {
      json_decref(doc);
      doc = NULL;
    }
    return cli_json_print(CMD, doc,
                          JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  }
  if (fmt == CLI_FMT_CSV)
    puts("id,kind,policy,cluster,engine,gpus,trace,seed,iterations,"
         "mean_iteration_ms,effective_iteration_ms");
  else
    printf("%6s %-4s %-22s %-12s %-9s %5s %6s %10s %10s  %s\n", "id", "kind",
           "policy", "cluster", "engine", "gpus", "iters", "mean_ms", "eff_ms",
           "trace");
  for (size_t i = 0; i < n; i++) {
    const st_run_summary *r = &runs[i];
    if (fmt == CLI_FMT_CSV) {
      printf("%lld,%s,", (long long)r->id, r->kind);
      csv_field(r->policy);
      putchar(',');
      csv_field(r->cluster);
      printf(",%s,%d,", r->engine, r->gpus);
      csv_field(r->trace);
      printf(",%llu,%lld,%.6f,%.6f\n", (unsigned long long)r->seed,
             (long long)r->iterations, r->mean_ms, r->effective_ms);
    } else {
      printf("%6lld %-4s %-22s %-12s %-9s %5d %6lld %10.3f %10.3f  %s\n",
             (long long)r->id, r->kind, r->policy, r->cluster, r->engine,
             r->gpus, (long long)r->iterations, r->mean_ms, r->effective_ms,
             r->trace[0] ? base_name(r->trace) : "-");
    }
  }
  return CLI_OK;
}

int cmd_report(int argc, char **argv) {
  static const struct option opts[] = {
      {"db", required_argument, NULL, 'd'},
      {"format", required_argument, NULL, 'f'},
      {"kind", required_argument, NULL, 'k'},
      {"runs", no_argument, NULL, 'r'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *dbpath = "flexmoe.db", *kind = NULL;
  int fmt = CLI_FMT_TABLE, list_runs = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      dbpath = optarg;
      break;
    case 'f':
      if (cli_parse_format(CMD, optarg,
                           CLI_FMT_TABLE | CLI_FMT_CSV | CLI_FMT_JSON, &fmt))
        return CLI_EUSAGE;
      break;
    case 'k':
      if (strcmp(optarg, "sim") != 0 && strcmp(optarg, "gpu") != 0)
        return cli_fail(CLI_EUSAGE, CMD, "--kind: '%s' is not one of sim gpu",
                        optarg);
      kind = optarg;
      break;
    case 'r':
      list_runs = 1;
      break;
    case 'h':
      cli_help(help);
      return CLI_OK;
    default:
      return cli_bad_option(CMD, argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, CMD, "unexpected argument '%s'", argv[optind]);

  char msg[1024];
  st_db *db = NULL;
  int rc = st_open(&db, dbpath, ST_READ, msg, sizeof(msg));
  if (rc != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  st_run_summary *runs = NULL;
  size_t n = 0;
  rc = st_runs_list(db, kind, &runs, &n);
  if (rc != ST_OK) {
    cli_fail(CLI_EFAIL, CMD, "%s: cannot read runs: %s", dbpath, st_errmsg(db));
    st_close(db);
    return CLI_EFAIL;
  }
  st_close(db);
  if (list_runs) {
    rc = print_runs(dbpath, runs, n, fmt);
    free(runs);
    return rc;
  }
  if (n > 0)
    qsort(runs, n, sizeof(*runs), cmp_runs);
  size_t nused = dedupe(runs, n);
  row *rows = calloc(nused ? nused : 1, sizeof(*rows));
  if (!rows) {
    free(runs);
    return cli_fail(CLI_EFAIL, CMD, "out of memory");
  }
  size_t nr = build_rows(runs, nused, rows);
  rc = CLI_OK;
  if (fmt == CLI_FMT_JSON)
    rc = print_json(dbpath, rows, nr, nused);
  else if (fmt == CLI_FMT_CSV)
    print_csv(rows, nr);
  else if (nr == 0)
    printf("%s: no complete runs%s%s\n", dbpath, kind ? " of kind " : "",
           kind ? kind : "");
  else
    print_table(dbpath, rows, nr, nused);
  free(rows);
  free(runs);
  return rc;
}
