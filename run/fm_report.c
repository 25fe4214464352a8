/*
 * fm_report.c - the policy comparison of a results database (fm_report.h):
 * the runs that count, one row per (group, policy), speedup and oracle gap,
 * and each family's configuration in words. Moved from cli/cmd_report.c,
 * which now only prints it.
 *
 * Runs are sorted by their whole configuration (cmp_runs), so a group (one
 * configuration but the policy: same_group) and a family (a group without
 * its size: same_family) are runs next to each other; peers are only ever
 * looked up inside a group, which is why two model shapes, seeds or engines
 * in one database cannot be set against each other. The configuration is
 * what the store keeps of each run (st_run_summary: params_json, seed,
 * cluster description), nothing the report guesses.
 */
#include "run/fm_report.h"

#include <math.h>
#include <stdarg.h>
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

/* Whether a and b are runs of one configuration but for the cluster size
 * and the policy: kind, trace (path and content), cluster (name and
 * description), engine, iteration range, seed and every stored parameter
 * (model shape, tokens, slots, profile, network, ...). */
static int same_family(const st_run_summary *a, const st_run_summary *b) {
  return strcmp(a->kind, b->kind) == 0 && strcmp(a->trace, b->trace) == 0 &&
         strcmp(a->trace_hash, b->trace_hash) == 0 && strcmp(a->cluster, b->cluster) == 0 &&
         strcmp(a->cluster_hash, b->cluster_hash) == 0 && strcmp(a->engine, b->engine) == 0 &&
         strcmp(a->params_json, b->params_json) == 0 && a->seed == b->seed &&
         a->it_first == b->it_first && a->it_last == b->it_last;
}

/* Whether a and b are runs of one configuration but the policy: the only
 * runs ever compared (speedup, oracle gap) or averaged. */
static int same_group(const st_run_summary *a, const st_run_summary *b) {
  return same_family(a, b) && a->gpus == b->gpus && a->gpus_per_node == b->gpus_per_node;
}

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

static int cmp_runs(const void *pa, const void *pb) {
  const st_run_summary *a = pa, *b = pb;
  int c;
  if ((c = strcmp(a->kind, b->kind)) || (c = strcmp(a->trace, b->trace)) ||
      (c = strcmp(a->trace_hash, b->trace_hash)) || (c = strcmp(a->cluster, b->cluster)) ||
      (c = strcmp(a->cluster_hash, b->cluster_hash)) || (c = strcmp(a->engine, b->engine)) ||
      (c = cmp_i64(a->it_first, b->it_first)) || (c = cmp_i64(a->it_last, b->it_last)) ||
      (c = strcmp(a->params_json, b->params_json)) ||
      (c = a->seed < b->seed ? -1 : a->seed > b->seed) || (c = cmp_i64(a->gpus, b->gpus)) ||
      (c = cmp_i64(a->gpus_per_node, b->gpus_per_node)))
    return c;
  if (policy_rank(a->policy) != policy_rank(b->policy))
    return policy_rank(a->policy) - policy_rank(b->policy);
  if ((c = strcmp(a->policy, b->policy)))
    return c;
  if ((c = strcmp(a->config_key, b->config_key)))
    return c;
  return cmp_i64(a->id, b->id);
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

/* Whether a policy makes per-iteration copies: fastermoe's shadows,
 * flexmoe's temporaries (shadow > 0), the oracle's (shadow > 0, its default
 * since 2026-12-07). Below an oracle that makes none is no surprise for such
 * a policy. A canonical oracle spec stored before then lists parameters
 * but not shadow: that oracle made none (its default was not yet 3). */
static int copies_per_iteration(const char *policy) {
  char v[8];
  if (policy_is(policy, "oracle") && strchr(policy, ':') && !strstr(policy, "shadow="))
    return 0;
  return policy_is(policy, "fastermoe") ||
         (pl_policy_param(policy, "shadow", v, sizeof v) == 0 && strcmp(v, "0") != 0);
}

/* Speedup over static and gap to the oracle inside each group, and the
 * group and family indices. The oracle processes every token: it bounds the
 * dropless policies only, so a row that drops slots gets no gap (NAN), and
 * a dropless row below its oracle (not a bound there), unless it copies per
 * iteration and the oracle does not, is counted in *beaten. */
static void add_peers(fm_report_row *rows, size_t nr, int *beaten) {
  int group = -1, family = -1;
  for (size_t i = 0; i < nr;) {
    size_t j = i;
    double stat = NAN, orac = NAN;
    int orac_copies = 0;
    group++;
    if (i == 0 || !same_family(rows[i - 1].first, rows[i].first))
      family++;
    while (j < nr && same_group(rows[i].first, rows[j].first)) {
      if (isnan(stat) && policy_is(rows[j].first->policy, "static"))
        stat = rows[j].effective_ms;
      if (isnan(orac) && policy_is(rows[j].first->policy, "oracle")) {
        orac = rows[j].effective_ms;
        orac_copies = copies_per_iteration(rows[j].first->policy);
      }
      j++;
    }
    for (size_t k = i; k < j; k++) {
      fm_report_row *r = &rows[k];
      double eff = r->effective_ms;
      r->group = group;
      r->family = family;
      r->drops = r->dropped_tokens > 0;
      r->speedup = fm_speedup(stat, eff);
      /* policy / oracle - 1: +inf for a policy that drops everything */
      r->oracle_gap = isfinite(orac) && orac > 0 && !r->drops ? eff / orac - 1 : NAN;
      if (r->oracle_gap < -1e-9 && (orac_copies || !copies_per_iteration(r->first->policy)))
        (*beaten)++;
    }
    i = j;
  }
}

/* ---- the configuration in words ---- */

/* Whether key is one of the parameters every label shows (the model shape)
 * or one it never shows as a parameter (said elsewhere in the label). */
static int always_shown(const char *key) {
  return !strcmp(key, "d_model") || !strcmp(key, "d_ff") || !strcmp(key, "top_k");
}
static int said_elsewhere(const char *key) {
  return !strcmp(key, "iterations") || !strcmp(key, "engine");
}

/* A parameter's value as text: strings bare, the rest compact JSON. */
static void value_text(const json_t *v, char *out, size_t len) {
  if (json_is_string(v)) {
    snprintf(out, len, "%s", json_string_value(v));
    return;
  }
  char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
  snprintf(out, len, "%s", t ? t : "null");
  free(t);
}

static const char *base_of(const char *path) {
  const char *sl = strrchr(path, '/');
  return sl ? sl + 1 : path;
}

/* Whether rows i and k look alike by what every label shows: kind, trace
 * name, cluster name, engine, iterations, seed and the model shape. */
static int look_alike(const fm_report *r, json_t **pj, size_t i, size_t k) {
  const st_run_summary *a = r->rows[i].first, *b = r->rows[k].first;
  static const char *const shape[] = {"d_model", "d_ff", "top_k"};
  int same = !strcmp(a->kind, b->kind) && !strcmp(base_of(a->trace), base_of(b->trace)) &&
             !strcmp(a->cluster, b->cluster) && !strcmp(a->engine, b->engine) &&
             a->it_first == b->it_first && a->it_last == b->it_last && a->seed == b->seed;
  for (int s = 0; s < 3 && same; s++)
    same = json_equal(json_object_get(pj[i], shape[s]), json_object_get(pj[k], shape[s])) ||
           (!json_object_get(pj[i], shape[s]) && !json_object_get(pj[k], shape[s]));
  return same;
}

/* Whether another family of the report (rows' firsts, parsed params in
 * pj) that looks alike (look_alike) differs from row i's in a field, which
 * must then be named to tell them apart: what = 0 trace (other path or
 * content), 1 cluster (other description), 2 the parameter key (other
 * value, or none). */
static int differs(const fm_report *r, json_t **pj, size_t i, int what, const char *key) {
  const st_run_summary *a = r->rows[i].first;
  json_t *va = key ? json_object_get(pj[i], key) : NULL;
  for (size_t k = 0; k < r->nrows; k++) {
    const st_run_summary *b = r->rows[k].first;
    if (!look_alike(r, pj, i, k))
      continue;
    if (what == 0 && (strcmp(a->trace, b->trace) || strcmp(a->trace_hash, b->trace_hash)))
      return 1;
    if (what == 1 && strcmp(a->cluster_hash, b->cluster_hash))
      return 1;
    if (what == 2 && !json_equal(va, json_object_get(pj[k], key)))
      return 1;
  }
  return 0;
}

/* Appends fmt... to out (at *off, capacity len), cut where it is full. */
static void add(char *out, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(char *out, size_t len, size_t *off, const char *fmt, ...) {
  if (*off >= len)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + *off, len - *off, fmt, ap);
  va_end(ap);
  *off = n < 0 ? len : *off + (size_t)n;
}

/* Row i's family in words: trace, cluster, engine, iterations, seed, the
 * model shape, and whatever else tells it apart from a family that looks
 * alike by those (look_alike): the trace's path or content, the cluster's
 * description, the parameters whose values differ. */
static void describe(const fm_report *r, json_t **pj, size_t i, char *out, size_t len) {
  const st_run_summary *f = r->rows[i].first;
  size_t off = 0;
  out[0] = '\0';
  add(out, len, &off, "trace %s", f->trace[0] ? base_of(f->trace) : "-");
  if (differs(r, pj, i, 0, NULL))
    add(out, len, &off, " (%s, content %.8s)", f->trace, f->trace_hash);
  add(out, len, &off, ", cluster %s", f->cluster);
  if (differs(r, pj, i, 1, NULL))
    add(out, len, &off, " (description %.8s)", f->cluster_hash);
  add(out, len, &off, ", engine %s, iterations %lld:%lld, seed %llu", f->engine[0] ? f->engine : "-",
      (long long)f->it_first, (long long)f->it_last + 1, (unsigned long long)f->seed);
  const char *key;
  json_t *v;
  char val[256];
  json_object_foreach(pj[i], key, v) {
    if (said_elsewhere(key) || (!always_shown(key) && !differs(r, pj, i, 2, key)))
      continue;
    value_text(v, val, sizeof(val));
    add(out, len, &off, ", %s=%s", key, val);
  }
}

/* Every row's config (its family's words); parses each row's parameters
 * once. FM_OK, or FM_EFAIL when out of memory. */
static int add_configs(fm_report *r) {
  json_t **pj = calloc(r->nrows ? r->nrows : 1, sizeof(*pj));
  if (!pj)
    return FM_EFAIL;
  for (size_t i = 0; i < r->nrows; i++) {
    json_t *p = json_loads(r->rows[i].first->params_json, 0, NULL);
    pj[i] = json_is_object(p) ? p : json_object(); /* none, or not an object: nothing to show */
    if (p && !json_is_object(p))
      json_decref(p);
  }
  int rc = FM_OK;
  for (size_t i = 0; i < r->nrows; i++) {
    if (!pj[i]) {
      rc = FM_EFAIL;
      break;
    }
    if (i > 0 && r->rows[i].family == r->rows[i - 1].family)
      memcpy(r->rows[i].config, r->rows[i - 1].config, sizeof(r->rows[i].config));
    else
      describe(r, pj, i, r->rows[i].config, sizeof(r->rows[i].config));
  }
  for (size_t i = 0; i < r->nrows; i++)
    json_decref(pj[i]);
  free(pj);
  return rc;
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
  int beaten = 0;
  add_peers(rows, nr, &beaten);
  *out = (fm_report){.runs = runs, .nruns = nused, .rows = rows, .nrows = nr, .nbeaten = beaten};
  if (add_configs(out) != FM_OK) {
    fm_report_fini(out);
    snprintf(errmsg, errlen, "out of memory");
    return FM_EFAIL;
  }
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

/* The group's configuration keys of a row: seed, gpus_per_node, params
 * (the stored object, null if none), config, group, family; 1 when out of
 * memory. */
static int add_config(const fm_report_row *w, json_t *o) {
  json_t *p = json_loads(w->first->params_json, 0, NULL);
  if (!json_is_object(p)) {
    json_decref(p);
    p = json_null();
  }
  int bad = json_object_set_new(o, "seed", json_integer((json_int_t)w->first->seed));
  bad |= json_object_set_new(o, "gpus_per_node", json_integer(w->first->gpus_per_node));
  bad |= json_object_set_new(o, "params", p);
  bad |= json_object_set_new(o, "config", fm_json_string(w->config));
  bad |= json_object_set_new(o, "group", json_integer(w->group));
  bad |= json_object_set_new(o, "family", json_integer(w->family));
  return bad;
}

void fm_report_beaten_note(const fm_report *r, char *out, size_t len) {
  out[0] = '\0';
  if (r->nbeaten > 0)
    snprintf(out, len,
             "%d dropless row%s below the oracle of %s group: that oracle run is not a "
             "lower bound there (the oracle is a heuristic: a limited search such as "
             "oracle:max_steps, shadow=0 against temporaries, or placements and "
             "temporaries its search misses)",
             r->nbeaten, r->nbeaten == 1 ? " is" : "s are", r->nbeaten == 1 ? "its" : "their");
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
    bad |= !o || add_config(w, o) || (detail && add_detail(r, i, o));
    bad |= json_array_append_new(arr, o);
  }
  bad |= json_object_set_new(doc, "rows", arr);
  char note[512];
  fm_report_beaten_note(r, note, sizeof(note));
  json_t *notes = json_array();
  bad |= !notes || (note[0] && json_array_append_new(notes, fm_json_string(note)));
  bad |= json_object_set_new(doc, "notes", notes);
  if (bad) {
    json_decref(doc);
    return NULL;
  }
  return doc;
}

void fm_report_gpus_label(const fm_report *rep, size_t i, char *out, size_t len) {
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
