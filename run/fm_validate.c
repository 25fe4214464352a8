/*
 * fm_validate.c - one validation (the contract is fm_validate.h).
 *
 * Steps: choose and check the policies; get the calibrated profile (load
 * P.json, or calibrate the backend now into a private temporary directory
 * that is removed at the end); open the database; then per policy replay on
 * the backend (measured), predict the same configuration (fm_sim with the
 * profile in memory, or fm_replay's cost-model prediction), store both and
 * the validation row; last the statistics over all policies.
 *
 * The simulator sees the profile's iteration range, model, tokens per GPU
 * and slots as the replay resolved them, and the profile's non-MoE factor
 * set to the replay's local token movement (fm_profile_for_sim), so both
 * sides build the same pl_profile and their policies plan identically.
 */
#include "run/fm_validate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "run/fm_config.h"
#include "run/fm_error.h"
#include "run/fm_profile.h"
#include "run/fm_sim.h"
#include "runtime/rt_backend.h"
#include "runtime/rt_calib.h"
#include "sim/sim_profile.h"
#include "store/st_store.h"

const char *const fm_validate_phase_names[FM_V_N] = {"compute", "alltoall", "allreduce",
                                                     "migration", "other", "time"};

/* What one validation holds while it runs. */
typedef struct vstate {
  const fm_validate_config *cfg;
  fm_replay_config replay;       /* cfg->replay with the profile's numbers */
  const char *policies[FM_VALIDATE_MAX_POLICIES];
  int npol;
  const char *profile_path;      /* given, or tmpprof */
  char tmpdir[64], tmpprof[128]; /* set when calibrated now */
  char cluster_path[1024];       /* P.cluster.json: the simulator's cluster */
  int use_sim;
  st_db *db;
} vstate;

static double rel(double p, double m) { return m != 0 ? (p - m) / m : (p == 0 ? 0 : NAN); }

static void fold(const double *ph, double time, double *v) {
  v[FM_V_COMPUTE] = ph[RT_PH_COMPUTE];
  v[FM_V_ALLTOALL] = ph[RT_PH_DISPATCH] + ph[RT_PH_COMBINE];
  v[FM_V_ALLREDUCE] = ph[RT_PH_ALLREDUCE];
  v[FM_V_MIGRATION] = ph[RT_PH_MIGRATION];
  v[FM_V_OTHER] = ph[RT_PH_LOCAL];
  v[FM_V_TIME] = time;
}

/* Whether policy `spec` moves experts in the background: it has a
 * `background` parameter whose value, as given in the spec or by default,
 * is not 0. The runtime migrates between iterations, blocking, and serves
 * from the new placement at once, while the simulator overlaps background
 * moves with the iteration and serves from the old placement meanwhile: a
 * prediction of the one would be compared with a measurement of the other.
 * A policy without the parameter, or a value that is not a whole decimal
 * integer, is left to the policy library's own error later. */
static int moves_in_background(const char *spec) {
  char v[PL_VALUE_MAX + 1], *end = NULL;
  if (pl_policy_param(spec, "background", v, sizeof v) != PL_OK) return 0;
  errno = 0;
  long b = (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) ? strtol(v, &end, 10) : 0;
  if (!end || end == v || *end || errno == ERANGE) return 0;
  return b != 0;
}

/* The policies of cfg, or the defaults this build has, into st; FM_EUSAGE
 * naming the first one that moves experts in the background. */
static int choose_policies(vstate *st, char *em, size_t el) {
  const fm_validate_config *cfg = st->cfg;
  if (cfg->npolicies < 0 || cfg->npolicies > FM_VALIDATE_MAX_POLICIES)
    return fm_fail(em, el, FM_EUSAGE, "--policy: at most %d", FM_VALIDATE_MAX_POLICIES);
  for (int p = 0; p < cfg->npolicies; p++) st->policies[st->npol++] = cfg->policies[p];
  if (st->npol == 0) {
    static const char *const defaults[][2] = {
        {"static", "static"}, {"flexmoe", "flexmoe:background=0"}, {"eplb", "eplb:background=0"}};
    for (int i = 0; i < 3; i++)
      if (pl_policy_find(defaults[i][0])) st->policies[st->npol++] = defaults[i][1];
  }
  for (int p = 0; p < st->npol; p++)
    if (moves_in_background(st->policies[p]))
      return fm_fail(em, el, FM_EUSAGE,
                   "policy '%s' moves experts in the background, which the runtime does not do "
                   "(it migrates between iterations, blocking): its prediction would describe "
                   "another run; set background=0",
                   st->policies[p]);
  return FM_OK;
}

/* The calibration result as a profile of `b` (name BACKEND-G-validate). */
static void profile_of(const rt_calib_result *res, const rt_backend *b, const char *backend,
                       int d, int f, fm_profile *prof) {
  char name[sizeof prof->name];
  snprintf(name, sizeof name, "%s-%d-validate", backend, b->ranks);
  fm_profile_from_calib(res, b, name, d, f, prof);
}

/* Calibrates the backend now (as `flexmoe calibrate`) and writes the
 * profile into a private temporary directory (st->tmpdir, removed by
 * remove_calibrated): the runtime's replay reads its profile and the
 * simulator its cluster from files. st->profile_path points at it. */
static int calibrate_now(vstate *st, char *em, size_t el) {
  const fm_replay_config *rc = &st->cfg->replay;
  int ranks = rc->partitions ? rc->partitions : (rc->ranks ? rc->ranks : 4);
  rt_backend_config bc = {.ranks = ranks, .partitions = rc->partitions, .device = rc->device,
                          .timeout_s = 300.0, .direct = 0};
  if (strcmp(rc->backend, "nccl") == 0)
    return fm_fail(em, el, FM_EUSAGE, "--backend nccl needs --profile (calibrate with cuda)");
  rt_backend *b = NULL;
  char err[1024] = "";
  if (rt_backend_create(&b, rc->backend, &bc, err, sizeof err))
    return fm_fail(em, el, FM_EFAIL, "%s", err);
  int d = rc->d_model, f = rc->d_ff, out = FM_OK;
  rt_calib_config cc;
  rt_calib_result res;
  fm_profile prof;
  if (!d || !f) {
    out = fm_fail(em, el, FM_EUSAGE, "without --profile, give --d-model and --d-ff to calibrate");
    goto done;
  }
  rt_calib_defaults(&cc, b, d, f);
  if (rt_calibrate(b, &cc, &res, err, sizeof err)) {
    out = fm_fail(em, el, FM_EFAIL, "calibration: %s", err);
    goto done;
  }
  profile_of(&res, b, rc->backend, d, f, &prof);
  snprintf(st->tmpdir, sizeof st->tmpdir, "/tmp/flexmoe-validate-XXXXXX");
  if (!mkdtemp(st->tmpdir)) {
    st->tmpdir[0] = 0;
    out = fm_fail(em, el, FM_EFAIL, "cannot make a temporary directory");
    goto done;
  }
  snprintf(st->tmpprof, sizeof st->tmpprof, "%s/profile.json", st->tmpdir);
  if ((out = fm_profile_save(&prof, st->tmpprof, em, el))) goto done;
  st->profile_path = st->tmpprof;
done:
  rt_backend_destroy(b);
  return out;
}

/* Removes what calibrate_now wrote (the three files and the directory). */
static void remove_calibrated(vstate *st) {
  if (!st->tmpdir[0]) return;
  char p[1100];
  unlink(st->tmpprof);
  fm_profile_cluster_path(st->tmpprof, p, sizeof p);
  unlink(p);
  snprintf(p, sizeof p, "%s/profile.runtime.json", st->tmpdir);
  unlink(p);
  rmdir(st->tmpdir);
}

/* The profile (given or calibrated now) and its cluster file: the replay
 * takes the path and the exchange numbers, the simulator the cluster. */
static int load_profile(vstate *st, char *em, size_t el) {
  int rc;
  st->profile_path = st->cfg->profile_path;
  if (!st->profile_path && (rc = calibrate_now(st, em, el))) return rc;
  fm_profile prof;
  if (fm_profile_load(st->profile_path, &prof, em, el)) return FM_EFAIL;
  if (prof.exchange_GBps <= 0)
    return fm_fail(em, el, FM_EFAIL,
                 "%s: no exchange bandwidth (no .cluster.json beside it, or a zero bandwidth in "
                 "it; write both with flexmoe calibrate --out)",
                 st->profile_path);
  fm_profile_cluster_path(st->profile_path, st->cluster_path, sizeof st->cluster_path);
  st->replay.profile_path = st->profile_path;
  st->replay.exchange_GBps = prof.exchange_GBps;
  st->replay.exchange_lat_us = prof.exchange_latency_us;
  return FM_OK;
}

/* Per-iteration times of `n` rows (`stride` bytes apart, time at `rows`)
 * into a new array *out. */
static int times_of(const double *first, size_t stride, int64_t n, double **out) {
  *out = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!*out) return FM_EFAIL;
  for (int64_t i = 0; i < n; i++)
    (*out)[i] = *(const double *)((const char *)first + stride * (size_t)i);
  return FM_OK;
}

/* Replays policy p on the backend into run->measured (and the
 * per-iteration times), recording it when st->db. *m (caller frees) stays
 * for the prediction, which takes the replay's resolved numbers. */
static int measure(vstate *st, int p, fm_validate_run *run, fm_replay_output **m, char *em,
                   size_t el) {
  int rc;
  st->replay.policy = st->policies[p];
  st->replay.predict = 0;
  if ((rc = fm_replay_compute(&st->replay, m, em, el))) return rc;
  const fm_replay_output *o = *m;
  snprintf(run->policy, sizeof run->policy, "%s", o->policy);
  fold(o->phase_ms, o->mean_iteration_ms, run->measured);
  run->measured_nonmoe_us = o->nonmoe_us;
  run->predicted_nonmoe_us = NAN;
  run->iterations = o->iterations;
  if (times_of(&o->rows[0].time_ms, sizeof o->rows[0], o->iterations, &run->measured_ms))
    return fm_fail(em, el, FM_EFAIL, "out of memory");
  if (st->db && o->owner && (rc = fm_replay_record(st->db, o, &run->measured_id, em, el))) {
    char why[512];
    snprintf(why, sizeof why, "%s", em);
    return fm_fail(em, el, rc, "%s: %s", st->cfg->db_path, why);
  }
  return FM_OK;
}

/* The simulator's non-MoE time of a run (its stored parameters). */
static double sim_nonmoe_us(const fm_sim_output *so) {
  json_t *pj = json_loads(fm_sim_params_json(so), 0, NULL);
  double v = json_number_value(json_object_get(pj, "nonmoe_us"));
  json_decref(pj);
  return pj ? v : NAN;
}

/* The simulator's configuration of measured run m: the same trace, range,
 * seed, model, tokens per GPU and slots, the profile's cluster. */
static fm_sim_config sim_config_of(const vstate *st, int p, const fm_replay_output *m,
                                   const sim_profile *sp) {
  return (fm_sim_config){.trace_path = st->replay.trace_path,
                         .cluster = st->cluster_path,
                         .policy = st->policies[p],
                         .engine = st->cfg->engine ? st->cfg->engine : "analytic",
                         .it_begin = m->it_begin,
                         .it_end = m->it_end,
                         .seed = st->replay.seed,
                         .d_model = m->d_model,
                         .d_ff = m->d_ff,
                         .top_k = m->top_k,
                         .tokens_per_gpu = st->replay.tokens_per_gpu,
                         .profile_path = st->profile_path,
                         .slots = m->slots,
                         .plan_moves = 1,
                         .sim_profile = sp};
}

/* Predicts measured run m with the simulator, the profile in memory with
 * its non-MoE factor set to the replay's local token movement. Without
 * that movement (no P.runtime.json) the simulator reads P.json itself, its
 * own nonmoe_factor included, as validate always did (the replay then uses
 * a factor of 0: the two sides differ there). */
static int predict_sim(vstate *st, int p, const fm_replay_output *m, fm_validate_run *run,
                       char *em, size_t el) {
  sim_profile sp;
  int rc = fm_profile_for_sim(st->profile_path, m->d_model, m->d_ff, m->top_k,
                              (double)m->tokens_per_gpu, &sp, em, el);
  if (rc) return rc;
  fm_sim_config sc = sim_config_of(st, p, m, sp.nonmoe_factor > 0 ? &sp : NULL);
  fm_sim_output *so = NULL;
  char why[900];
  if ((rc = fm_sim_compute(&sc, &so, why, sizeof why)))
    return fm_fail(em, el, rc, "simulator: %s", why);
  const fm_sim_summary *s = fm_sim_summary_of(so);
  run->predicted[FM_V_COMPUTE] = s->compute_ms;
  run->predicted[FM_V_ALLTOALL] = s->alltoall_ms;
  run->predicted[FM_V_ALLREDUCE] = s->allreduce_ms;
  run->predicted[FM_V_MIGRATION] = s->migration_ms;
  run->predicted[FM_V_OTHER] = s->other_ms;
  run->predicted[FM_V_TIME] = s->mean_iteration_ms;
  run->predicted_nonmoe_us = sim_nonmoe_us(so);
  const st_iter_row *rows = NULL;
  int64_t n = fm_sim_iteration_rows(so, &rows);
  rc = n != run->iterations ? fm_fail(em, el, FM_EFAIL, "simulator: %lld iterations, runtime %lld",
                                    (long long)n, (long long)run->iterations)
       : times_of(&rows[0].time_ms, sizeof rows[0], n, &run->predicted_ms)
           ? fm_fail(em, el, FM_EFAIL, "out of memory")
           : FM_OK;
  if (!rc && st->db && (rc = fm_sim_record(st->db, so, &run->predicted_id, why, sizeof why)))
    fm_fail(em, el, rc, "%s: %s", st->cfg->db_path, why);
  fm_sim_output_free(so);
  return rc;
}

/* Predicts measured run m with the placement cost model (fm_replay's
 * predict mode on the replay's ranks). */
static int predict_cost(vstate *st, const fm_replay_output *m, fm_validate_run *run, char *em,
                        size_t el) {
  fm_replay_config pc = st->replay;
  pc.predict = 1;
  pc.ranks = m->gpus;
  pc.partitions = 0;
  pc.quiet = 1;
  fm_replay_output *po = NULL;
  char why[900];
  int rc = fm_replay_compute(&pc, &po, why, sizeof why);
  if (rc) return fm_fail(em, el, rc, "prediction: %s", why);
  fold(po->phase_ms, po->mean_iteration_ms, run->predicted);
  rc = po->iterations != run->iterations
           ? fm_fail(em, el, FM_EFAIL, "prediction: %lld iterations, runtime %lld",
                   (long long)po->iterations, (long long)run->iterations)
       : times_of(&po->rows[0].time_ms, sizeof po->rows[0], po->iterations, &run->predicted_ms)
           ? fm_fail(em, el, FM_EFAIL, "out of memory")
           : FM_OK;
  fm_replay_output_free(po);
  return rc;
}

/* The validation row of a run whose both sides are stored. */
static int store_validation(vstate *st, const fm_validate_run *run, char *em, size_t el) {
  const double *e = run->error;
  st_validation_row row = {.predicted_run = run->predicted_id,
                           .measured_run = run->measured_id,
                           .err_time = e[FM_V_TIME],
                           .err_compute = e[FM_V_COMPUTE],
                           .err_alltoall = e[FM_V_ALLTOALL],
                           .err_allreduce = e[FM_V_ALLREDUCE],
                           .err_migration = e[FM_V_MIGRATION],
                           .err_other = e[FM_V_OTHER],
                           .detail_json = NULL};
  int64_t vid;
  if (st_validation_add(st->db, &row, &vid))
    return fm_fail(em, el, FM_EFAIL, "%s: cannot store the validation", st->cfg->db_path);
  return FM_OK;
}

/* Policy p: measured, predicted, compared, stored. res->owner becomes 0
 * on an MPI rank that records nothing (it only takes part in the replay). */
static int validate_one(vstate *st, int p, fm_validate_result *res, char *em, size_t el) {
  fm_validate_run *run = &res->runs[p];
  fm_replay_output *m = NULL;
  int rc = measure(st, p, run, &m, em, el);
  if (!rc && m->owner) {
    rc = st->use_sim ? predict_sim(st, p, m, run, em, el) : predict_cost(st, m, run, em, el);
    for (int q = 0; q < FM_V_N; q++) run->error[q] = rel(run->predicted[q], run->measured[q]);
    if (!rc && st->db && run->predicted_id) rc = store_validation(st, run, em, el);
  }
  if (m) res->owner = m->owner;
  fm_replay_output_free(m);
  return rc;
}

/* Median, p95 and ranking over the runs (fm_validate.h). */
static void statistics(fm_validate_result *res) {
  double tim[FM_VALIDATE_MAX_POLICIES], all[FM_VALIDATE_MAX_POLICIES * FM_V_N];
  int nt = 0, na = 0;
  for (int p = 0; p < res->nruns; p++) {
    const fm_validate_run *r = &res->runs[p];
    tim[nt++] = fabs(r->error[FM_V_TIME]);
    for (int q = 0; q < FM_V_N; q++)
      if (r->measured[q] >= 0.05 * r->measured[FM_V_TIME] && r->measured[q] > 0)
        all[na++] = fabs(r->error[q]);
  }
  res->median_abs_error = fm_percentile_of(tim, nt, 0.5);
  res->p95_abs_error = fm_percentile_of(all, na, 0.95);
  res->ranking_agrees = 1;
  for (int p = 0; p < res->nruns; p++)
    for (int q = 0; q < res->nruns; q++) {
      const fm_validate_run *a = &res->runs[p], *b = &res->runs[q];
      if ((a->measured[FM_V_TIME] < b->measured[FM_V_TIME]) !=
          (a->predicted[FM_V_TIME] < b->predicted[FM_V_TIME]))
        res->ranking_agrees = 0;
    }
}

/* Names of the result: predictor, profile, backend. */
static void describe(const vstate *st, fm_validate_result *res) {
  const char *engine = st->cfg->engine ? st->cfg->engine : "analytic";
  snprintf(res->predictor, sizeof res->predictor, "%s",
           !st->use_sim                 ? "placement cost model"
           : strcmp(engine, "des") == 0 ? "simulator (des)"
                                        : "simulator (analytic)");
  snprintf(res->profile, sizeof res->profile, "%s",
           st->tmpdir[0] ? "calibrated now" : st->profile_path);
  snprintf(res->backend, sizeof res->backend, "%s", st->replay.backend);
}

int fm_validate(const fm_validate_config *cfg, fm_validate_result *res, char *em, size_t el) {
  memset(res, 0, sizeof *res);
  vstate st = {.cfg = cfg, .replay = cfg->replay};
  const char *engine = cfg->engine ? cfg->engine : "analytic";
  if (strcmp(engine, "analytic") && strcmp(engine, "des") && strcmp(engine, "cost"))
    return fm_fail(em, el, FM_EUSAGE, "--engine: '%s' is not analytic, des or cost", engine);
  if (!cfg->replay.backend || !cfg->replay.trace_path)
    return fm_fail(em, el, FM_EUSAGE, "%s is required",
                 cfg->replay.backend ? "--trace" : "--backend");
  st.use_sim = strcmp(engine, "cost") != 0;
  int rc = choose_policies(&st, em, el);
  if (!rc) rc = load_profile(&st, em, el);
  if (!rc && cfg->db_path) rc = st_open(&st.db, cfg->db_path, ST_WRITE, em, el) ? FM_EFAIL : FM_OK;
  if (!rc && !(res->runs = calloc((size_t)st.npol, sizeof *res->runs)))
    rc = fm_fail(em, el, FM_EFAIL, "out of memory");
  res->nruns = st.npol;
  res->owner = 1;
  for (int p = 0; p < st.npol && !rc; p++) rc = validate_one(&st, p, res, em, el);
  if (st.db) st_close(st.db);
  if (!rc && res->owner) statistics(res);
  if (!rc) describe(&st, res);
  remove_calibrated(&st);
  if (rc) fm_validate_result_fini(res);
  return rc;
}

void fm_validate_result_fini(fm_validate_result *res) {
  if (!res) return;
  for (int p = 0; p < res->nruns && res->runs; p++) {
    free(res->runs[p].predicted_ms);
    free(res->runs[p].measured_ms);
  }
  free(res->runs);
  memset(res, 0, sizeof *res);
}
