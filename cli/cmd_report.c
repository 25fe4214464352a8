/*
 * cmd_report.c - flexmoe report: the policy comparison stored in a results
 * database, per configuration (kind, trace, cluster, engine, iterations,
 * seed, model shape and every other stored parameter) and cluster size.
 *
 * The comparison (which runs count, rows, speedup, oracle gap) is
 * run/fm_report.h's, shared with the Python package; this file prints it.
 * The database is opened read-only and never changed.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_report.h"
#include "store/st_store.h"

#define CMD "report"

static const char help_head[] =
    "usage: flexmoe report [--db FILE] [--format table|csv|json] [--kind sim|gpu]\n"
    "                      [--runs]\n"
    "\n"
    "Prints the runs stored in a results database: per configuration (trace,\n"
    "cluster, engine, iterations, seed, model shape and any other parameter\n"
    "that differs between runs: the header of each block) and number of GPUs,\n"
    "each policy's mean and effective iteration time, its speedup over\n"
    "`static` and its distance to the `oracle` lower bound (when those runs\n"
    "exist, in effective time), and the mean time breakdown per iteration.\n"
    "Runs of different configurations are never compared.\n"
    "\n";
static const char help_tail[] =
    "\n"
    "columns: mean_ms = mean iteration time; eff_ms = mean_ms / (1 - dropped)\n"
    "(time per iteration of useful work; inf if every slot is dropped);\n"
    "speedup = static / policy and vs_oracle = policy / oracle - 1, both in\n"
    "eff_ms (vs_oracle only for dropless policies: the oracle processes every\n"
    "token); compute, a2a (dispatch + combine), allreduce (replica\n"
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

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* The gpus cell of row i: the size, as nodes x GPUs per node when another
 * group of its family has the same size (two shapes of one size). */
static void gpus_cell(const fm_report *rep, size_t i, char *out, size_t len) {
  const fm_report_row *w = &rep->rows[i];
  int twin = 0;
  for (size_t k = 0; k < rep->nrows && !twin; k++)
    twin = rep->rows[k].family == w->family && rep->rows[k].group != w->group &&
           rep->rows[k].first->gpus == w->first->gpus;
  int gpn = w->first->gpus_per_node;
  if (twin && gpn > 0)
    snprintf(out, len, "%dx%d", w->first->gpus / gpn, gpn);
  else
    snprintf(out, len, "%d", w->first->gpus);
}

static void print_table(const char *db, const fm_report *rep) {
  const fm_report_row *rows = rep->rows;
  size_t nr = rep->nrows;
  printf("%s: %zu complete run%s\n", db, rep->nruns, rep->nruns == 1 ? "" : "s");
  for (size_t i = 0; i < nr; i++) {
    const st_run_summary *f = rows[i].first;
    if (i == 0 || rows[i].family != rows[i - 1].family) {
      printf("\n%s runs, %s\n", f->kind, rows[i].config);
      printf("%5s  %-22s %4s %6s %10s %10s %8s %9s %8s %8s %9s %7s %7s %7s %7s\n",
             "gpus", "policy", "runs", "iters", "mean_ms", "eff_ms", "speedup",
             "vs_oracle", "compute", "a2a", "allreduce", "migr", "other",
             "balance", "dropped");
    }
    char speed[32] = "-", gap[32] = "-", name[sizeof f->policy], gpus[32];
    fm_report_short_name(rep, i, name, sizeof(name));
    gpus_cell(rep, i, gpus, sizeof(gpus));
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
    printf("%5s  %-22s %4d %6lld %10.3f %10.3f %8s %9s %8.3f %8.3f %9.3f %7.3f "
           "%7.3f %7.2f %7s\n",
           gpus, name, rows[i].runs, (long long)rows[i].iterations,
           rows[i].mean_ms, rows[i].effective_ms, speed, gap, rows[i].compute_ms, rows[i].alltoall_ms,
           rows[i].allreduce_ms, rows[i].migration_ms, rows[i].other_ms,
           rows[i].balance, drop);
  }
  printf("\n(times: mean ms per iteration; eff_ms = mean_ms / (1 - dropped), inf "
         "if all are dropped;\n speedup = static / policy and vs_oracle = policy / "
         "oracle - 1, both in eff_ms;\n vs_oracle is - for a policy that drops "
         "tokens: the oracle bounds dropless policies;\n dropped = share of token "
         "slots dropped (capacity); policies by name and the\n parameters that "
         "differ, in full: --format csv|json or --runs)\n");
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

static void print_csv(const fm_report_row *rows, size_t nr) {
  puts("kind,trace,cluster,engine,first_iteration,end_iteration,gpus,policy,"
       "runs,iterations,"
       "mean_iteration_ms,speedup_vs_static,oracle_gap,compute_ms,alltoall_ms,"
       "allreduce_ms,migration_ms,other_ms,balance_mean,migrated_bytes,"
       "dropped_tokens,effective_iteration_ms,seed,gpus_per_node,group,config");
  for (size_t i = 0; i < nr; i++) {
    const fm_report_row *r = &rows[i];
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
    printf(",%llu,%d,%d,", (unsigned long long)f->seed, f->gpus_per_node, r->group);
    csv_field(r->config);
    putchar('\n');
  }
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

/* --runs: every complete run (of kind unless NULL), in id order. */
static int report_runs(st_db *db, const char *dbpath, const char *kind, int fmt) {
  st_run_summary *runs = NULL;
  size_t n = 0;
  if (st_runs_list(db, kind, &runs, &n) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s: cannot read runs: %s", dbpath, st_errmsg(db));
  int rc = print_runs(dbpath, runs, n, fmt);
  free(runs);
  return rc;
}

/* The comparison (run/fm_report.h) in format fmt. */
static int report_rows(st_db *db, const char *dbpath, const char *kind, int fmt) {
  char msg[1024];
  fm_report rep;
  if (fm_report_build(db, dbpath, kind, &rep, msg, sizeof(msg)) != FM_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  int rc = CLI_OK;
  if (fmt == CLI_FMT_JSON)
    rc = cli_json_print(CMD, fm_report_doc(dbpath, &rep, 0),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  else if (fmt == CLI_FMT_CSV)
    print_csv(rep.rows, rep.nrows);
  else if (rep.nrows == 0)
    printf("%s: no complete runs%s%s\n", dbpath, kind ? " of kind " : "", kind ? kind : "");
  else
    print_table(dbpath, &rep);
  char note[512];
  fm_report_beaten_note(&rep, note, sizeof(note));
  if (note[0])
    fprintf(stderr, "flexmoe report: note: %s\n", note);
  fm_report_fini(&rep);
  return rc;
}

/* --kind: sim or gpu (cli_opt CLI_O_FN); CLI_OK or CLI_EUSAGE. */
static int kind_opt(const char *cmd, const char *arg, void *to) {
  if (strcmp(arg, "sim") != 0 && strcmp(arg, "gpu") != 0)
    return cli_fail(CLI_EUSAGE, cmd, "--kind: '%s' is not one of sim gpu", arg);
  *(const char **)to = arg;
  return CLI_OK;
}

int cmd_report(int argc, char **argv) {
  const char *dbpath = "flexmoe.db", *kind = NULL;
  int fmt = CLI_FMT_TABLE, list_runs = 0;
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &dbpath, .key = FM_KEY_DB,
       .help = "results database (default flexmoe.db)"},
      {.flag = "--format", .kind = CLI_O_FORMAT, .to = &fmt, .key = -1,
       .lo = CLI_FMT_TABLE | CLI_FMT_CSV | CLI_FMT_JSON, .arg = "F",
       .help = "table (default), csv or json"},
      {.flag = "--kind", .kind = CLI_O_FN, .to = &kind, .key = -1, .arg = "K", .fn = kind_opt,
       .help = "only simulated (sim) or measured (gpu) runs"},
      {.flag = "--runs", .kind = CLI_O_BOOL, .to = &list_runs, .key = -1,
       .help = "list every complete run instead of the comparison"},
      {.kind = CLI_O_END}};
  int c = cli_parse_opts(CMD, argc, argv, opts, help_head, help_tail);
  if (c)
    return c == CLI_HELP ? CLI_OK : c;
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, CMD, "unexpected argument '%s'", argv[optind]);

  char msg[1024];
  st_db *db = NULL;
  if (st_open(&db, dbpath, ST_READ, msg, sizeof(msg)) != ST_OK)
    return cli_fail(CLI_EFAIL, CMD, "%s", msg);
  int rc = list_runs ? report_runs(db, dbpath, kind, fmt) : report_rows(db, dbpath, kind, fmt);
  st_close(db);
  return rc;
}
