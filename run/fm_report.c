/*
 * fm_report.c - the policy comparison of a results database (fm_report.h):
 * the runs that count, one row per (group, policy), speedup and oracle gap.
 * Moved from cli/cmd_report.c, which now only prints it.
 */
#include "run/fm_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/pl_policy.h"
#include "run/fm_error.h"
#include "run/fm_json.h"
#include "run/fm_sim_json.h"

/* a stored run's policy is its whole canonical spec: never cut on reading */
_Static_assert(sizeof(((st_run_summary *)0)->policy) > PL_SPEC_MAX,
               "st_run_summary.policy holds a canonical spec");

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

void fm_report_short_name(const fm_report *r, size_t i, char *out, size_t len) {
  const char *spec = r->rows[i].first->policy;
  const char *colon = strchr(spec, ':');
  size_t base = colon ? (size_t)(colon - spec) : strlen(spec);
  size_t off = (size_t)snprintf(out, len, "%.*s", (int)base, spec);
  int first = 1;
  for (const char *p = colon; p && off < len;) {
    p++;
    const char *end = strchr(p, ',');
    size_t tl = end ? (size_t)(end - p) : strlen(p);
    int common = 1;
    for (size_t k = 0; k < r->nrows && common; k++) {
      const char *other = r->rows[k].first->policy;
      if (strncmp(other, spec, base) == 0 && (other[base] == ':' || other[base] == '\0'))
        common = has_param(other, p, tl);
    }
    if (!common) {
      off += (size_t)snprintf(out + off, len - off, "%s%.*s", first ? ":" : ",", (int)tl, p);
      first = 0;
    }
    p = end;
  }
}

static int same_group(const st_run_summary *a, const st_run_summary *b) {
  return strcmp(a->kind, b->kind) == 0 && strcmp(a->trace, b->trace) == 0 &&
         strcmp(a->trace_hash, b->trace_hash) == 0 && strcmp(a->cluster, b->cluster) == 0 &&
         strcmp(a->engine, b->engine) == 0 && a->it_first == b->it_first &&
         a->it_last == b->it_last && a->gpus == b->gpus;
}

static int cmp_runs(const void *pa, const void *pb) {
  const st_run_summary *a = pa, *b = pb;
  int c;
  if ((c = strcmp(a->kind, b->kind)) || (c = strcmp(a->trace, b->trace)) ||
      (c = strcmp(a->trace_hash, b->trace_hash)) || (c = strcmp(a->cluster, b->cluster)) ||
      (c = strcmp(a->engine, b->engine)))
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
        strcmp(runs[out - 1].policy, runs[i].policy) == 0 && same_group(&runs[out - 1], &runs[i])) {
      runs[out - 1] = runs[i]; /* later id wins */
      continue;
    }
    runs[out++] = runs[i];
  }
  return out;
}

/* Sums sorted, deduplicated runs into rows (one per group and policy) and
 * divides by each row's run count; returns the number of rows. */
static size_t sum_rows(const st_run_summary *runs, size_t n, fm_report_row *rows) {
  size_t nr = 0;
  for (size_t i = 0; i < n; i++) {
    fm_report_row *r = nr ? &rows[nr - 1] : NULL;
    if (!r || !same_group(r->first, &runs[i]) || strcmp(r->first->policy, runs[i].policy) != 0) {
      r = &rows[nr++];
      *r = (fm_report_row){.first = &runs[i], .run0 = i};
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
    fm_report_row *r = &rows[i];
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
  return nr;
}

/* Speedup over static and gap to the oracle inside each group. */
static void add_peers(fm_report_row *rows, size_t nr) {
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
      rows[k].speedup = fm_speedup(stat, eff);
      /* policy / oracle - 1: +inf for a policy that drops everything */
      rows[k].oracle_gap = isfinite(orac) && orac > 0 ? eff / orac - 1 : NAN;
    }
    i = j;
  }
}

int fm_report_build(st_db *db, const char *db_path, const char *kind, fm_report *out,
                    char *errmsg, size_t errlen) {
  *out = (fm_report){.runs = NULL};
  st_run_summary *runs = NULL;
  size_t n = 0;
  if (st_runs_list(db, kind, &runs, &n) != ST_OK) {
    snprintf(errmsg, errlen, "%s: cannot read runs: %s", db_path, st_errmsg(db));
    return FM_EFAIL;
  }
  if (n > 0)
    qsort(runs, n, sizeof(*runs), cmp_runs);
  size_t nused = dedupe(runs, n);
  fm_report_row *rows = calloc(nused ? nused : 1, sizeof(*rows));
  if (!rows) {
    free(runs);
    snprintf(errmsg, errlen, "out of memory");
    return FM_EFAIL;
  }
  size_t nr = sum_rows(runs, nused, rows);
  add_peers(rows, nr);
  *out = (fm_report){.runs = runs, .nruns = nused, .rows = rows, .nrows = nr};
  return FM_OK;
}

void fm_report_fini(fm_report *r) {
  if (!r)
    return;
  free(r->rows);
  free(r->runs);
  *r = (fm_report){.runs = NULL};
}

/* detail's keys of row i: trace_hash, name, run_ids; 1 when out of memory. */
static int add_detail(const fm_report *r, size_t i, json_t *o) {
  const fm_report_row *row = &r->rows[i];
  char name[sizeof row->first->policy];
  fm_report_short_name(r, i, name, sizeof(name));
  json_t *ids = json_array();
  int bad = !ids;
  for (int k = 0; k < row->runs && !bad; k++)
    bad |= json_array_append_new(ids, json_integer((json_int_t)r->runs[row->run0 + k].id));
  bad |= json_object_set_new(o, "trace_hash", fm_json_string(row->first->trace_hash));
  bad |= json_object_set_new(o, "name", fm_json_string(name));
  bad |= json_object_set_new(o, "run_ids", ids);
  return bad;
}

/* Strings from the database (paths, names, specs) go through
 * fm_json_string and numbers through fm_json_number, so no row can make
 * json_pack fail and vanish; a NULL pack is out of memory. */
json_t *fm_report_doc(const char *db_path, const fm_report *r, int detail) {
  json_t *doc = json_object(), *arr = json_array();
  int bad = !doc || !arr;
  bad |= json_object_set_new(doc, "database", fm_json_string(db_path));
  bad |= json_object_set_new(doc, "runs", json_integer((json_int_t)r->nruns));
  for (size_t i = 0; i < r->nrows && !bad; i++) {
    const fm_report_row *w = &r->rows[i];
    const st_run_summary *f = w->first;
    json_t *bd = json_pack("{s:o,s:o,s:o,s:o,s:o}", "compute", fm_json_number(w->compute_ms),
                           "alltoall", fm_json_number(w->alltoall_ms), "allreduce",
                           fm_json_number(w->allreduce_ms), "migration",
                           fm_json_number(w->migration_ms), "other", fm_json_number(w->other_ms));
    json_t *o = json_pack(
        "{s:o,s:o,s:o,s:o,s:[I,I],s:i,s:o,s:i,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I}", "kind",
        fm_json_string(f->kind), "trace", fm_json_string(f->trace), "cluster",
        fm_json_string(f->cluster), "engine", fm_json_string(f->engine), "iteration_range",
        (json_int_t)f->it_first, (json_int_t)f->it_last + 1, "gpus", f->gpus, "policy",
        fm_json_string(f->policy), "runs", w->runs, "iterations", (json_int_t)w->iterations,
        "mean_iteration_ms", fm_json_number(w->mean_ms), "effective_iteration_ms",
        fm_json_number(w->effective_ms), "speedup_vs_static", fm_json_number(w->speedup),
        "oracle_gap", fm_json_number(w->oracle_gap), "breakdown_ms", bd, "balance_mean",
        fm_json_number(w->balance), "migrated_bytes", (json_int_t)w->migrated_bytes,
        "dropped_tokens", (json_int_t)w->dropped_tokens);
    bad |= !o || (detail && add_detail(r, i, o));
    bad |= json_array_append_new(arr, o);
  }
  bad |= json_object_set_new(doc, "rows", arr);
  if (bad) {
    json_decref(doc);
    return NULL;
  }
  return doc;
}
