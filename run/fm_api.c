/*
 * fm_api.c - JSON in, JSON out (fm_api.h): a request object becomes the
 * fm_sim_config `flexmoe sim` builds from its flags, checked against the
 * same ranges with one sentence naming the key; the comparison and its
 * document are the CLI's own (fm_sim_compare, fm_sim_json).
 */
#include "run/fm_api.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "flexmoe_config.h"
#include "run/fm_commands.h"
#include "run/fm_error.h"
#include "run/fm_json.h"
#include "run/fm_keys.h"
#include "run/fm_report.h"
#include "run/fm_sim.h"
#include "run/fm_sim_json.h"
#include "run/fm_sweep.h"
#include "store/st_store.h"

const char *fm_version(void) { return FLEXMOE_VERSION; }

void fm_free(void *p) { free(p); }

/* A request's keys are the table's (run/fm_keys.h), named as JSON and
 * Python spell them; each check below reads its key's row. */
#define NAME(id) fm_key_of(id)->name

/* An optional integer key into *out (untouched when absent or null). */
static int get_int(const json_t *req, fm_key_id id, int64_t *out, char *em, size_t el) {
  const fm_key *k = fm_key_of(id);
  const json_t *v = json_object_get(req, k->name);
  if (!v || json_is_null(v))
    return FM_OK;
  if (!json_is_integer(v))
    return fm_fail(em, el, FM_EUSAGE, "%s: not an integer between %" PRId64 " and %" PRId64,
                k->name, k->lo, k->hi);
  int rc = fm_key_check(id, FM_NAME_JSON, json_integer_value(v), em, el);
  if (!rc)
    *out = json_integer_value(v);
  return rc;
}

/* An optional list of integers (or one integer) into out[max], count *n. */
static int get_int_list(const json_t *req, fm_key_id id, long *out, int max, int *n,
                        char *em, size_t el) {
  const fm_key *k = fm_key_of(id);
  const json_t *v = json_object_get(req, k->name), *x;
  size_t i;
  *n = 0;
  if (!v || json_is_null(v))
    return FM_OK;
  if (json_is_integer(v)) {
    int rc = fm_key_check(id, FM_NAME_JSON, json_integer_value(v), em, el);
    if (!rc) {
      out[0] = (long)json_integer_value(v);
      *n = 1;
    }
    return rc;
  }
  if (!json_is_array(v) || json_array_size(v) > (size_t)max)
    return fm_fail(em, el, FM_EUSAGE, "%s: not a list of at most %d integers", k->name, max);
  json_array_foreach(v, i, x) {
    if (!json_is_integer(x))
      return fm_fail(em, el, FM_EUSAGE, "%s: item %zu is not an integer", k->name, i);
    int rc = fm_key_check(id, FM_NAME_JSON, json_integer_value(x), em, el);
    if (rc)
      return rc;
    out[(*n)++] = (long)json_integer_value(x);
  }
  return FM_OK;
}

/* An optional string key into *out (untouched when absent or null). */
static int get_str(const json_t *req, fm_key_id id, const char **out, char *em, size_t el) {
  const json_t *v = json_object_get(req, NAME(id));
  if (!v || json_is_null(v))
    return FM_OK;
  if (!json_is_string(v))
    return fm_fail(em, el, FM_EUSAGE, "%s: not a string", NAME(id));
  *out = json_string_value(v);
  return FM_OK;
}

/* An optional list of strings (or one string) into out[max], count *n; what
 * is listed (SPEC, path) names an item in the message. */
static int get_str_list(const json_t *req, fm_key_id id, const char *what, const char **out,
                        int max, int *n, char *em, size_t el) {
  const json_t *v = json_object_get(req, NAME(id)), *p;
  size_t i;
  *n = 0;
  if (!v || json_is_null(v))
    return FM_OK;
  if (json_is_string(v)) {
    out[(*n)++] = json_string_value(v);
    return FM_OK;
  }
  if (!json_is_array(v))
    return fm_fail(em, el, FM_EUSAGE, "%s: not a list of %ss", NAME(id), what);
  if (json_array_size(v) > (size_t)max)
    return fm_fail(em, el, FM_EUSAGE, "%s: at most %d %ss (got %zu)", NAME(id), max, what,
                json_array_size(v));
  json_array_foreach(v, i, p) {
    if (!json_is_string(p))
      return fm_fail(em, el, FM_EUSAGE, "%s: item %zu is not a %s string", NAME(id), i, what);
    out[(*n)++] = json_string_value(p);
  }
  return FM_OK;
}

/* One of a choice key's words (engine, network) into *out. */
static int get_choice(const json_t *req, fm_key_id id, const char **out, char *em,
                      size_t el) {
  const char *s = NULL;
  int rc = get_str(req, id, &s, em, el);
  if (rc || !s)
    return rc;
  return fm_key_parse_choice(id, FM_NAME_JSON, s, out, em, el);
}

/* An optional boolean key into *out. */
static int get_bool(const json_t *req, fm_key_id id, int *out, char *em, size_t el) {
  const json_t *v = json_object_get(req, NAME(id));
  if (!v || json_is_null(v))
    return FM_OK;
  if (!json_is_boolean(v))
    return fm_fail(em, el, FM_EUSAGE, "%s: not true or false", NAME(id));
  *out = json_is_true(v);
  return FM_OK;
}

/* iterations: "A:B" (either side optional) or [A, B] (B null: to the end). */
static int get_range(const json_t *req, int64_t *a, int64_t *b, char *em, size_t el) {
  const json_t *v = json_object_get(req, "iterations");
  if (!v || json_is_null(v))
    return FM_OK;
  int64_t lo = 0, hi = -1;
  if (json_is_array(v) && json_array_size(v) == 2) {
    const json_t *x = json_array_get(v, 0), *y = json_array_get(v, 1);
    if (!json_is_integer(x) || !(json_is_integer(y) || json_is_null(y)))
      return fm_fail(em, el, FM_EUSAGE, "iterations: not a range [A, B] of integers");
    lo = json_integer_value(x);
    hi = json_is_null(y) ? -1 : json_integer_value(y);
    if (lo < 0 || (!json_is_null(y) && hi < 1))
      return fm_fail(em, el, FM_EUSAGE,
                  "iterations: [%" PRId64 ", %" PRId64 "] is out of range: A must be at "
                  "least 0 and B at least 1",
                  lo, hi);
  } else if (json_is_string(v)) {
    const char *t = json_string_value(v), *colon = strchr(t, ':');
    char *end = NULL;
    if (!colon)
      return fm_fail(em, el, FM_EUSAGE, "iterations: '%s' is not a range A:B", t);
    if (colon != t) {
      long long x = strtoll(t, &end, 10);
      if (end != colon || x < 0 || t[0] == '+' || t[0] == ' ')
        return fm_fail(em, el, FM_EUSAGE, "iterations: '%s' is not a range A:B", t);
      lo = x;
    }
    if (colon[1]) {
      long long y = strtoll(colon + 1, &end, 10);
      if (*end || y < 1 || colon[1] == '+' || colon[1] == ' ')
        return fm_fail(em, el, FM_EUSAGE, "iterations: '%s' is not a range A:B", t);
      hi = y;
    }
  } else {
    return fm_fail(em, el, FM_EUSAGE, "iterations: not a range \"A:B\" or [A, B]");
  }
  if (hi >= 0 && hi <= lo)
    return fm_fail(em, el, FM_EUSAGE, "iterations: empty range %" PRId64 ":%" PRId64, lo, hi);
  *a = lo;
  *b = hi;
  return FM_OK;
}

/* Every key of req one of the table's keys of scope; the first other one
 * named with the list of those keys. */
static int check_keys(const json_t *req, int scope, char *em, size_t el) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)req, key, v) {
    int id = fm_key_by_name(key);
    if (id >= 0 && (fm_key_of(id)->scope & scope))
      continue;
    char list[1024];
    size_t at = 0;
    list[0] = '\0';
    for (int i = 0; i < FM_NKEYS && at < sizeof list; i++)
      if (fm_key_of(i)->scope & scope)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", at ? ", " : "",
                               fm_key_of(i)->name);
    return fm_fail(em, el, FM_EUSAGE, "unknown key '%s' (keys: %s)", key, list);
  }
  return FM_OK;
}

/* The model and simulator keys a simulation and a sweep share into cfg
 * (which keeps its value where a key is absent). */
static int model_config(const json_t *req, fm_sim_config *cfg, char *em, size_t el) {
  int64_t dm = cfg->d_model, dff = cfg->d_ff, tk = cfg->top_k, sl = cfg->slots;
  int rc = get_int(req, FM_KEY_D_MODEL, &dm, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_D_FF, &dff, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_TOP_K, &tk, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_TOKENS_PER_GPU, &cfg->tokens_per_gpu, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_SLOTS, &sl, em, el);
  if (!rc)
    rc = get_str(req, FM_KEY_PROFILE, &cfg->profile_path, em, el);
  if (!rc)
    rc = get_choice(req, FM_KEY_ENGINE, &cfg->engine, em, el);
  if (!rc)
    rc = get_range(req, &cfg->it_begin, &cfg->it_end, em, el);
  cfg->d_model = (int)dm;
  cfg->d_ff = (int)dff;
  cfg->top_k = (int)tk;
  cfg->slots = (int)sl;
  cfg->key_names = FM_NAME_JSON;
  return rc;
}

/* The request's configuration, as cmd_sim builds it from flags. */
static int request_config(const json_t *req, fm_sim_config *cfg, const char **db,
                          const char **specs, int *nspecs, char *em, size_t el) {
  int rc = check_keys(req, FM_KS_SIM, em, el);
  int64_t nodes = 0, gpn = 0, seed = FM_DEFAULT_SEED;
  int64_t threads = fm_sim_default_threads(); /* every core: same results, sooner */
  const char *network = NULL;
  if (!rc)
    rc = get_int(req, FM_KEY_NODES, &nodes, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_GPUS_PER_NODE, &gpn, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_SEED, &seed, em, el);
  if (!rc)
    rc = model_config(req, cfg, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_THREADS, &threads, em, el);
  if (!rc)
    rc = get_str(req, FM_KEY_TRACE, &cfg->trace_path, em, el);
  if (!rc)
    rc = get_str(req, FM_KEY_CLUSTER, &cfg->cluster, em, el);
  if (!rc)
    rc = get_str(req, FM_KEY_DB, db, em, el);
  if (!rc)
    rc = get_choice(req, FM_KEY_NETWORK, &network, em, el);
  if (!rc)
    rc = get_str_list(req, FM_KEY_POLICY, "policy spec", specs, FM_SIM_MAX_POLICIES, nspecs,
                      em, el);
  if (rc)
    return rc;
  if (!cfg->trace_path)
    return fm_fail(em, el, FM_EUSAGE, "trace is required (a routing trace .npy or .csv)");
  cfg->nodes = (int)nodes;
  cfg->gpus_per_node = (int)gpn;
  cfg->seed = (uint64_t)seed;
  cfg->threads = (int)threads;
  cfg->exact_net = network && strcmp(network, "exact") == 0;
  return FM_OK;
}

/* json_dumps of doc (released) into *result; FM_EFAIL when out of memory. */
static int dump(json_t *doc, size_t flags, char **result, char *em, size_t el) {
  *result = doc ? json_dumps(doc, flags) : NULL;
  json_decref(doc);
  return *result ? FM_OK : fm_fail(em, el, FM_EFAIL, "cannot build the JSON output (out of memory)");
}

/* The request of a JSON entry point: *result NULLed, *req the parsed JSON
 * object (the caller decrefs it). FM_EUSAGE with the sentence when result
 * is NULL or the request is not a JSON object. */
static int read_request(const char *request, char **result, json_t **req, char *errmsg,
                        size_t errlen) {
  if (!result)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "result: NULL pointer");
  *result = NULL;
  json_error_t jerr;
  *req = request ? json_loads(request, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  if (!*req)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "request: not JSON (%s)",
                   request ? jerr.text : "NULL");
  if (!json_is_object(*req)) {
    json_decref(*req);
    *req = NULL;
    return fm_fail(errmsg, errlen, FM_EUSAGE, "request: not a JSON object");
  }
  return FM_OK;
}

int fm_simulate_json(const char *request, char **result, char *errmsg, size_t errlen) {
  json_t *req = NULL;
  int rc = read_request(request, result, &req, errmsg, errlen);
  if (rc)
    return rc;
  fm_sim_config cfg = FM_SIM_CONFIG_INIT;
  const char *db_path = NULL, *specs[FM_SIM_MAX_POLICIES];
  int nspecs = 0;
  st_db *db = NULL;
  fm_sim_comparison cmp = {.nrun = 0};
  rc = request_config(req, &cfg, &db_path, specs, &nspecs, errmsg, errlen);
  if (!rc && db_path && db_path[0] && st_open(&db, db_path, ST_WRITE, errmsg, errlen) != 0)
    rc = FM_EFAIL;
  if (!rc)
    rc = fm_sim_compare(&cfg, specs, nspecs, db, &cmp, errmsg, errlen);
  if (!rc)
    rc = dump(fm_sim_comparison_json(&cmp, cfg.engine), FM_SIM_JSON_FLAGS, result, errmsg,
              errlen);
  fm_sim_comparison_fini(&cmp);
  st_close(db);
  json_decref(req);
  return rc;
}

/* {"columns": [names...], "rows": []}: rows appended by the caller. */
static json_t *table(const char *const *cols, size_t n) {
  json_t *c = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(c, json_string(cols[i]));
  return json_pack("{s:o, s:o}", "columns", c, "rows", json_array());
}
#define TABLE(cols) table(cols, sizeof(cols) / sizeof(cols[0]))

static int add_row(json_t *t, json_t *row) {
  return !row || json_array_append_new(json_object_get(t, "rows"), row);
}

static const char *const run_cols[] = {
    "id", "kind", "policy", "cluster", "engine", "trace", "trace_hash", "config_key", "gpus",
    "seed", "started", "finished", "iterations", "mean_ms", "compute_ms", "alltoall_ms",
    "allreduce_ms", "migration_ms", "other_ms", "balance_mean", "bytes_alltoall",
    "bytes_migrated", "tokens_dropped", "tokens_total", "effective_ms", "gpus_per_node",
    "params_json"};
/* gpus_per_node and params_json (the stored parameters: model shape, ...)
 * say, with trace, cluster, engine, seed and gpus, which configuration a run
 * is (run/fm_report.h groups by them). */
static json_t *run_row(const st_run_summary *r) {
  return json_pack("[I, o, o, o, o, o, o, o, i, I, o, o, I, o, o, o, o, o, o, o, I, I, I, I, o, i, o]",
                   (json_int_t)r->id, fm_json_string(r->kind), fm_json_string(r->policy),
                   fm_json_string(r->cluster), fm_json_string(r->engine),
                   fm_json_string(r->trace), fm_json_string(r->trace_hash),
                   fm_json_string(r->config_key), r->gpus, (json_int_t)r->seed,
                   fm_json_number(r->started), fm_json_number(r->finished),
                   (json_int_t)r->iterations, fm_json_number(r->mean_ms),
                   fm_json_number(r->compute_ms), fm_json_number(r->alltoall_ms),
                   fm_json_number(r->allreduce_ms), fm_json_number(r->migration_ms),
                   fm_json_number(r->other_ms), fm_json_number(r->balance_mean),
                   (json_int_t)r->bytes_alltoall, (json_int_t)r->bytes_migrated,
                   (json_int_t)r->tokens_dropped, (json_int_t)r->tokens_total,
                   fm_json_number(r->effective_ms), r->gpus_per_node,
                   fm_json_string(r->params_json));
}

static const char *const iter_cols[] = {
    "run_id", "iteration", "time_ms", "compute_ms", "alltoall_ms", "allreduce_ms",
    "migration_ms", "other_ms", "balance", "bytes_alltoall", "bytes_migrated",
    "tokens_dropped", "tokens_total"};
static json_t *iter_row(int64_t run_id, const st_iter_row *r) {
  return json_pack("[I, I, o, o, o, o, o, o, o, I, I, I, I]", (json_int_t)run_id,
                   (json_int_t)r->iteration, fm_json_number(r->time_ms),
                   fm_json_number(r->compute_ms), fm_json_number(r->alltoall_ms),
                   fm_json_number(r->allreduce_ms), fm_json_number(r->migration_ms),
                   fm_json_number(r->other_ms), fm_json_number(r->balance),
                   (json_int_t)r->bytes_alltoall, (json_int_t)r->bytes_migrated,
                   (json_int_t)r->tokens_dropped, (json_int_t)r->tokens_total);
}

static const char *const val_cols[] = {
    "id", "predicted_run", "measured_run", "err_time", "err_compute", "err_alltoall",
    "err_allreduce", "err_migration", "err_other", "detail_json"};
static json_t *val_row(const st_validation_entry *e) {
  const st_validation_row *v = &e->v;
  return json_pack("[I, I, I, o, o, o, o, o, o, o]", (json_int_t)e->id,
                   (json_int_t)v->predicted_run, (json_int_t)v->measured_run,
                   fm_json_number(v->err_time), fm_json_number(v->err_compute),
                   fm_json_number(v->err_alltoall), fm_json_number(v->err_allreduce),
                   fm_json_number(v->err_migration), fm_json_number(v->err_other),
                   fm_json_string(v->detail_json));
}

/* The three tables of db into doc; ST_ codes of the store. */
static int read_tables(st_db *db, json_t *doc) {
  json_t *runs = json_object_get(doc, "runs"), *iters = json_object_get(doc, "iterations"),
         *vals = json_object_get(doc, "validations");
  st_run_summary *rs = NULL;
  st_validation_entry *vs = NULL;
  size_t nr = 0, nv = 0;
  int rc = st_runs_list(db, NULL, &rs, &nr), bad = 0;
  for (size_t i = 0; i < nr && !rc && !bad; i++) {
    st_iter_row *it = NULL;
    size_t ni = 0;
    bad |= add_row(runs, run_row(&rs[i]));
    rc = st_run_iterations(db, rs[i].id, &it, &ni);
    for (size_t j = 0; j < ni && !rc && !bad; j++)
      bad |= add_row(iters, iter_row(rs[i].id, &it[j]));
    free(it);
  }
  if (!rc && !bad)
    rc = st_validations_list(db, &vs, &nv);
  for (size_t i = 0; i < nv && !rc && !bad; i++)
    bad |= add_row(vals, val_row(&vs[i]));
  st_validations_free(vs, nv);
  free(rs);
  return rc ? rc : bad ? ST_ENOMEM : ST_OK;
}

int fm_results_json(const char *db_path, char **result, char *errmsg, size_t errlen) {
  if (!result)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "result: NULL pointer");
  *result = NULL;
  if (!db_path || !db_path[0])
    return fm_fail(errmsg, errlen, FM_EUSAGE, "db: a results database path is required");
  if (access(db_path, F_OK) != 0)
    return fm_fail(errmsg, errlen, FM_EFAIL, "%s: no such results database", db_path);
  st_db *db = NULL;
  if (st_open(&db, db_path, ST_READ, errmsg, errlen) != 0)
    return FM_EFAIL;
  json_t *doc = json_pack("{s:o, s:o, s:o}", "runs", TABLE(run_cols), "iterations",
                          TABLE(iter_cols), "validations", TABLE(val_cols));
  int rc = doc ? read_tables(db, doc) : ST_ENOMEM;
  if (rc != ST_OK) {
    fm_fail(errmsg, errlen, FM_EFAIL, "%s: cannot read the results: %s", db_path,
         rc == ST_ENOMEM ? st_strerror(rc) : st_errmsg(db));
    json_decref(doc);
    st_close(db);
    return FM_EFAIL;
  }
  st_close(db);
  return dump(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17), result,
              errmsg, errlen);
}

/* Opens db_path read-only for a reading call; a missing file is an error. */
static int open_read(const char *db_path, st_db **db, char *errmsg, size_t errlen) {
  if (!db_path || !db_path[0])
    return fm_fail(errmsg, errlen, FM_EUSAGE, "db: a results database path is required");
  if (access(db_path, F_OK) != 0)
    return fm_fail(errmsg, errlen, FM_EFAIL, "%s: no such results database", db_path);
  return st_open(db, db_path, ST_READ, errmsg, errlen) == 0 ? FM_OK : FM_EFAIL;
}

int fm_report_json(const char *db_path, const char *kind, char **result, char *errmsg,
                   size_t errlen) {
  if (!result)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "result: NULL pointer");
  *result = NULL;
  if (kind && !kind[0])
    kind = NULL;
  if (kind && strcmp(kind, "sim") != 0 && strcmp(kind, "gpu") != 0)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "kind: '%s' is not one of sim gpu", kind);
  st_db *db = NULL;
  int rc = open_read(db_path, &db, errmsg, errlen);
  fm_report rep = {.runs = NULL};
  if (!rc)
    rc = fm_report_build(db, db_path, kind, &rep, errmsg, errlen);
  st_close(db);
  if (!rc)
    rc = dump(fm_report_doc(db_path, &rep, 1),
              JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17), result, errmsg,
              errlen);
  fm_report_fini(&rep);
  return rc;
}

static const char *const load_cols[] = {"trace", "trace_hash", "iteration", "layer", "expert",
                                        "tokens"};

/* The rows of loads (traces by id in traces) into t; 1 when out of memory. */
static int add_loads(json_t *t, const st_trace_entry *traces, size_t ntr,
                     const st_trace_load *loads, size_t nl) {
  int bad = 0;
  size_t k = 0;
  for (size_t i = 0; i < nl && !bad; i++) {
    while (k < ntr && traces[k].id < loads[i].trace_id)
      k++; /* both sorted by trace id */
    const st_trace_entry *tr = k < ntr && traces[k].id == loads[i].trace_id ? &traces[k] : NULL;
    bad |= add_row(t, json_pack("[o, o, I, i, i, I]", fm_json_string(tr ? tr->path : ""),
                                fm_json_string(tr ? tr->hash : ""),
                                (json_int_t)loads[i].iteration, loads[i].layer, loads[i].expert,
                                (json_int_t)loads[i].tokens));
  }
  return bad;
}

int fm_trace_loads_json(const char *db_path, char **result, char *errmsg, size_t errlen) {
  if (!result)
    return fm_fail(errmsg, errlen, FM_EUSAGE, "result: NULL pointer");
  *result = NULL;
  st_db *db = NULL;
  int rc = open_read(db_path, &db, errmsg, errlen);
  if (rc)
    return rc;
  st_trace_entry *traces = NULL;
  st_trace_load *loads = NULL;
  size_t ntr = 0, nl = 0;
  int src = st_traces_list(db, &traces, &ntr);
  if (src == ST_OK)
    src = st_trace_loads_list(db, &loads, &nl);
  json_t *t = src == ST_OK ? TABLE(load_cols) : NULL;
  if (src != ST_OK)
    rc = fm_fail(errmsg, errlen, FM_EFAIL, "%s: cannot read the trace loads: %s", db_path,
              src == ST_ENOMEM ? st_strerror(src) : st_errmsg(db));
  else if (!t || add_loads(t, traces, ntr, loads, nl))
    rc = fm_fail(errmsg, errlen, FM_EFAIL, "cannot build the JSON output (out of memory)");
  else
    rc = dump(json_incref(t), JSON_COMPACT | JSON_PRESERVE_ORDER, result, errmsg, errlen);
  json_decref(t);
  free(loads);
  free(traces);
  st_close(db);
  return rc;
}

char *fm_keys_json(void) { return fm_keys_json_text(); }

char *fm_commands_json(void) { return fm_commands_json_text(); }

/* ---- sweep ---- */

#define SWEEP_MAX 64 /* values per list key, as `flexmoe sweep` takes */

/* A sweep request: its lists and where they point (into the request). */
typedef struct sweep_req {
  const char *traces[SWEEP_MAX], *clusters[SWEEP_MAX], *policies[SWEEP_MAX];
  long sizes[SWEEP_MAX], seeds[SWEEP_MAX];
  fm_sweep_config c;
} sweep_req;

/* The request's sweep, as cmd_sweep builds it from flags. */
static int sweep_config(const json_t *req, sweep_req *q, char *em, size_t el) {
  fm_sweep_config *c = &q->c;
  int64_t gpn = 0, jobs = 1, wait = 30;
  int moves = 0, rc = check_keys(req, FM_KS_SWEEP, em, el);
  c->base = (fm_sim_config)FM_SIM_CONFIG_INIT;
  if (!rc)
    rc = get_str_list(req, FM_KEY_TRACE, "path", q->traces, SWEEP_MAX, &c->ntraces, em, el);
  if (!rc)
    rc = get_str_list(req, FM_KEY_CLUSTER, "cluster", q->clusters, SWEEP_MAX, &c->nclusters,
                      em, el);
  if (!rc)
    rc = get_str_list(req, FM_KEY_POLICY, "policy spec", q->policies, SWEEP_MAX,
                      &c->npolicies, em, el);
  if (!rc)
    rc = get_int_list(req, FM_KEY_GPUS, q->sizes, SWEEP_MAX, &c->nsizes, em, el);
  if (!rc)
    rc = get_int_list(req, FM_KEY_SEEDS, q->seeds, SWEEP_MAX, &c->nseeds, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_GPUS_PER_NODE, &gpn, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_JOBS, &jobs, em, el);
  if (!rc)
    rc = get_int(req, FM_KEY_LOCK_WAIT, &wait, em, el);
  if (!rc)
    rc = get_bool(req, FM_KEY_PLAN_MOVES, &moves, em, el);
  if (!rc)
    rc = get_str(req, FM_KEY_DB, &c->db, em, el);
  if (!rc)
    rc = model_config(req, &c->base, em, el);
  if (!rc && (!c->db || !c->db[0]))
    rc = fm_fail(em, el, FM_EUSAGE, "db: a results database path is required");
  c->traces = q->traces;
  c->clusters = q->clusters;
  c->policies = q->policies;
  c->sizes = q->sizes;
  c->seeds = q->seeds;
  c->gpus_per_node = (int)gpn;
  c->jobs = (int)jobs;
  c->lock_wait_s = (int)wait;
  c->base.plan_moves = moves;
  return rc;
}

static const char *const point_cols[] = {
    "trace", "cluster", "gpus", "nodes", "gpus_per_node", "seed", "policy", "status", "error",
    "run_id", "iterations", "mean_ms", "effective_ms", "compute_ms", "alltoall_ms",
    "allreduce_ms", "migration_ms", "other_ms", "balance_mean", "bytes_migrated",
    "tokens_dropped", "tokens_total"};

/* A point's row: its configuration and what became of it, and the stored
 * run of its key (r, NULL when none: nulls). */
static json_t *point_row(const fm_sweep_point *p, const st_run_summary *r) {
  const fm_sim_config *c = p->cfg;
  json_t *row = json_pack("[o, o, i, i, i, I, o, s, o]", fm_json_string(c->trace_path),
                          fm_json_string(c->cluster), c->nodes * c->gpus_per_node, c->nodes,
                          c->gpus_per_node, (json_int_t)c->seed, fm_json_string(c->policy),
                          p->status, p->error[0] ? fm_json_string(p->error) : json_null());
  json_t *run = r ? json_pack("[I, I, o, o, o, o, o, o, o, o, I, I, I]", (json_int_t)r->id,
                              (json_int_t)r->iterations, fm_json_number(r->mean_ms),
                              fm_json_number(r->effective_ms), fm_json_number(r->compute_ms),
                              fm_json_number(r->alltoall_ms), fm_json_number(r->allreduce_ms),
                              fm_json_number(r->migration_ms), fm_json_number(r->other_ms),
                              fm_json_number(r->balance_mean), (json_int_t)r->bytes_migrated,
                              (json_int_t)r->tokens_dropped, (json_int_t)r->tokens_total)
                  : NULL;
  for (int i = 0; !r && row && i < 13; i++)
    json_array_append_new(row, json_null());
  if (row && run && json_array_extend(row, run) != 0) {
    json_decref(row);
    row = NULL;
  }
  json_decref(run);
  return row;
}

/* The sweep's points as a table, each with its stored run (read from the
 * sweep's database), and its counts, into *doc. */
static int sweep_doc(const fm_sweep *sw, json_t **doc, char *em, size_t el) {
  const fm_sweep_stats *s = fm_sweep_stats_of(sw);
  const char *path = fm_sweep_config_of(sw)->db;
  st_db *db = NULL;
  st_run_summary *rs = NULL;
  size_t nr = 0;
  int rc = open_read(path, &db, em, el);
  if (!rc && st_runs_list(db, "sim", &rs, &nr) != ST_OK)
    rc = fm_fail(em, el, FM_EFAIL, "%s: cannot read the runs: %s", path, st_errmsg(db));
  st_close(db);
  json_t *t = rc ? NULL : TABLE(point_cols);
  fm_sweep_point p;
  int bad = !rc && !t;
  for (int i = 0; !rc && !bad && fm_sweep_point_of(sw, i, &p) == 0; i++) {
    const st_run_summary *r = NULL;
    for (size_t k = 0; k < nr && !r; k++)
      r = strcmp(rs[k].config_key, p.key) == 0 ? &rs[k] : NULL;
    bad |= add_row(t, point_row(&p, r));
  }
  free(rs);
  if (!rc && !bad)
    *doc = json_pack("{s:o, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}}", "points",
                     json_incref(t), "summary", "points", s->points, "unique", s->unique,
                     "computed", s->done, "stored", s->skipped, "elsewhere", s->elsewhere,
                     "failed", s->failed, "lost", s->lost, "workers", s->workers, "wall_s",
                     fm_json_number(s->wall_s));
  json_decref(t);
  if (!rc && (bad || !*doc))
    rc = fm_fail(em, el, FM_EFAIL, "cannot build the JSON output (out of memory)");
  return rc;
}

int fm_sweep_json(const char *request, char **result, char *errmsg, size_t errlen) {
  json_t *req = NULL;
  int rc = read_request(request, result, &req, errmsg, errlen);
  if (rc)
    return rc;
  sweep_req q = {.c = {.jobs = 1}};
  fm_sweep *sw = NULL;
  json_t *doc = NULL;
  rc = sweep_config(req, &q, errmsg, errlen);
  if (!rc)
    rc = fm_sweep_run(&q.c, &sw, errmsg, errlen);
  if (!rc)
    rc = sweep_doc(sw, &doc, errmsg, errlen);
  if (!rc)
    rc = dump(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17), result,
              errmsg, errlen);
  fm_sweep_free(sw);
  json_decref(req);
  return rc;
}
