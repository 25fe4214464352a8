/*
 * fm_sim_json.c - the `sim --format json` document (fm_sim_json.h), moved
 * here from cli/cmd_sim.c unchanged so that the CLI and the Python package
 * print the same bytes.
 */
#include "run/fm_sim_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "placement/pl_policy.h"
#include "run/fm_error.h"
#include "run/fm_json.h"
#include "run/fm_trace_cache.h"

double fm_speedup(double ref_ms, double ms) {
  if (!isfinite(ref_ms) || ref_ms <= 0 || isnan(ms) || ms <= 0)
    return NAN;
  return isinf(ms) ? 0.0 : ref_ms / ms;
}

/* One run's object; NULL when out of memory. */
static json_t *run_object(const fm_sim_summary *s, double ref, const char *engine,
                          const int64_t *run_id) {
  json_t *o = json_pack(
      "{s:o, s:o, s:i, s:I, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:{s:o, s:o, s:o, s:o, s:o}, s:o}",
      "policy", fm_json_string(s->policy), "cluster", fm_json_string(s->cluster), "gpus",
      s->gpus, "iterations", (json_int_t)s->iterations, "mean_iteration_ms",
      fm_json_number(s->mean_iteration_ms), "speedup_vs_static",
      fm_json_number(fm_speedup(ref, s->effective_iteration_ms)), "effective_iteration_ms",
      fm_json_number(s->effective_iteration_ms), "balance_p50", fm_json_number(s->balance_p50),
      "balance_p90", fm_json_number(s->balance_p90), "migrated_bytes",
      (json_int_t)s->migrated_bytes, "dropped_tokens", (json_int_t)s->dropped_tokens,
      "breakdown_ms", "compute", fm_json_number(s->compute_ms), "alltoall",
      fm_json_number(s->alltoall_ms), "allreduce", fm_json_number(s->allreduce_ms),
      "migration", fm_json_number(s->migration_ms), "other", fm_json_number(s->other_ms),
      "engine", fm_json_string(engine));
  int bad = !o;
  bad |= json_object_set_new(o, "slots_per_gpu", json_integer(s->slots_per_gpu));
  if (run_id)
    bad |= json_object_set_new(o, "run_id", json_integer(*run_id));
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

json_t *fm_sim_json(const fm_sim_output *const *out, int n, const fm_sim_output *ref,
                    const char *engine, const int64_t *run_ids) {
  /* comparisons are over effective time: dropping cannot look like speed */
  double ref_ms = fm_sim_summary_of(ref)->effective_iteration_ms;
  json_t *runs = json_array();
  int bad = !runs; /* a value that could not be built fails the output */
  for (int i = 0; i < n && !bad; i++) {
    json_t *o = run_object(fm_sim_summary_of(out[i]), ref_ms, engine,
                           run_ids ? &run_ids[i] : NULL);
    bad |= !o || json_array_append_new(runs, o);
  }
  json_t *root = json_pack("{s:o}", "runs", runs);
  if (bad) {
    json_decref(root);
    return NULL;
  }
  return root;
}

int fm_sim_compare_runs(const char *const *policies, int npol) {
  int n = npol, has_static = npol == 0;
  if (n == 0)
    for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++)
      n++;
  for (int i = 0; i < npol; i++)
    has_static |= strcmp(policies[i], "static") == 0;
  return n + !has_static;
}

int fm_sim_compare(const fm_sim_config *base, const char *const *policies, int npol,
                   st_db *db, fm_sim_comparison *c, char *errmsg, size_t errlen) {
  memset(c, 0, sizeof(*c));
  c->static_idx = -1;
  if (npol < 0 || npol > FM_SIM_MAX_POLICIES) {
    snprintf(errmsg, errlen, "policies: at most %d policies (got %d)", FM_SIM_MAX_POLICIES,
             npol);
    return FM_EUSAGE;
  }
  for (int i = 0; i < npol; i++)
    c->policies[c->n++] = policies[i];
  if (npol == 0) {
    const pl_policy_ops *const *reg = pl_policy_registry();
    for (int i = 0; reg[i] && c->n < FM_SIM_MAX_POLICIES; i++)
      c->policies[c->n++] = reg[i]->name;
  }
  /* static is the reference of the speedup column: run it if not asked */
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->policies[i], "static") == 0 && c->static_idx < 0)
      c->static_idx = i;
  c->nrun = c->n;
  if (c->static_idx < 0)
    c->policies[c->static_idx = c->nrun++] = "static";
  char key[128];
  /* every run of the comparison reads the trace through one cache: opened
   * and hashed once, not twice per policy */
  fm_trace_cache *own = NULL;
  if (!base->traces && fm_trace_cache_new(&own)) {
    snprintf(errmsg, errlen, "out of memory");
    return FM_EFAIL;
  }
  int rc = FM_OK;
  for (int i = 0; i < c->nrun && !rc; i++) {
    fm_sim_config cfg = *base;
    cfg.policy = c->policies[i];
    cfg.traces = base->traces ? base->traces : own;
    rc = fm_sim_config_key(&cfg, key, sizeof(key), errmsg, errlen);
  }
  for (int i = 0; i < c->nrun && !rc; i++) {
    fm_sim_config cfg = *base;
    cfg.policy = c->policies[i];
    cfg.traces = base->traces ? base->traces : own;
    cfg.keep_draws = base->keep_draws && i + 1 < c->nrun; /* the next policy replays them */
    rc = fm_sim_compute(&cfg, &c->out[i], errmsg, errlen);
  }
  fm_trace_cache_free(own);
  for (int i = 0; i < c->n && !rc && db; i++)
    rc = fm_sim_record(db, c->out[i], &c->run_ids[i], errmsg, errlen);
  c->recorded = !rc && db;
  return rc;
}

void fm_sim_comparison_fini(fm_sim_comparison *c) {
  for (int i = 0; i < c->nrun; i++)
    fm_sim_output_free(c->out[i]);
  memset(c, 0, sizeof(*c));
}

json_t *fm_sim_comparison_json(const fm_sim_comparison *c, const char *engine) {
  return fm_sim_json((const fm_sim_output *const *)c->out, c->n, c->out[c->static_idx],
                     engine, c->recorded ? c->run_ids : NULL);
}
