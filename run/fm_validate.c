/*
 * fm_validate.c - one validation (the contract is fm_validate.h).
 *
 * Steps: choose the policies; resolve the ranks against the trace (and the
 * machine's cores on the cpu backend); open the database (so a database
 * that cannot be written fails before any work); get the calibrated
 * profile (load P.json, or calibrate the backend now, on the ranks the
 * replay uses, into a private temporary directory that is removed at the
 * end); then predict every policy (fm_sim with the profile in memory, or
 * the cost model) before measuring any, so a configuration the simulator
 * refuses fails in seconds, not after the measurement; then replay every
 * policy on the backend (measured); last the statistics, and only when
 * every policy is done, store both runs of each and the validation rows
 * (nothing is stored for a validation that fails). Background policies
 * are validated like blocking ones: the runtime overlaps their moves as
 * the simulator does (docs/runtime.md, "Background moves").
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
#include "run/fm_json.h"
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
  int G;                         /* ranks the replay uses, 0: known only after
                                    the backend starts (nccl without --ranks) */
  fm_replay_output *shape[FM_VALIDATE_MAX_POLICIES]; /* resolved before measuring */
  fm_replay_output *meas[FM_VALIDATE_MAX_POLICIES];  /* measured */
  fm_sim_output *sims[FM_VALIDATE_MAX_POLICIES];     /* predicted by the simulator */
} vstate;

/* Relative error; two times both under a microsecond (the resolution the
 * phases are printed and timed at) agree: 0, never -100%. */
static double rel(double p, double m) {
  if (fabs(p) < 1e-3 && fabs(m) < 1e-3) return 0.0;
  return m != 0 ? (p - m) / m : NAN;
}

static void fold(const double *ph, double time, double *v) {
  v[FM_V_COMPUTE] = ph[RT_PH_COMPUTE];
  v[FM_V_ALLTOALL] = ph[RT_PH_DISPATCH] + ph[RT_PH_COMBINE];
  v[FM_V_ALLREDUCE] = ph[RT_PH_ALLREDUCE];
  v[FM_V_MIGRATION] = ph[RT_PH_MIGRATION];
  v[FM_V_OTHER] = ph[RT_PH_LOCAL];
  v[FM_V_TIME] = time;
}

/* The policies of cfg, or the defaults this build has, into st. */
static int choose_policies(vstate *st, char *em, size_t el) {
  const fm_validate_config *cfg = st->cfg;
  if (cfg->npolicies < 0 || cfg->npolicies > FM_VALIDATE_MAX_POLICIES)
    return fm_fail(em, el, FM_EUSAGE, "--policy: at most %d", FM_VALIDATE_MAX_POLICIES);
  for (int p = 0; p < cfg->npolicies; p++) st->policies[st->npol++] = cfg->policies[p];
  if (st->npol == 0) {
    static const char *const defaults[][2] = {{"static", "static"},
                                              {"flexmoe", "flexmoe"},
                                              {"flexmoe", "flexmoe:background=0"},
                                              {"eplb", "eplb"}};
    for (int i = 0; i < 4; i++)
      if (pl_policy_find(defaults[i][0])) st->policies[st->npol++] = defaults[i][1];
  }
  return FM_OK;
}

/* The ranks the replay will use (fm_replay.c's rule: --partitions, else
 * --ranks, else the trace's ranks on cpu, one GPU on cuda; unknown on nccl
 * before MPI starts), checked against the trace's ranks (a replay rank
 * replays one trace rank: more ranks than the trace has would replay some
 * twice); on the cpu backend a rank count above the machine's cores is
 * warned about in warning[wl]. FM_OK, FM_EUSAGE or FM_EFAIL. */
static int resolve_ranks(vstate *st, char *warning, size_t wl, char *em, size_t el) {
  const fm_replay_config *rc = &st->cfg->replay;
  int R = 0;
  int orc = fm_replay_trace_ranks(rc->trace_path, &R, em, el);
  if (orc) return orc;
  int G = rc->partitions > 0 ? rc->partitions : rc->ranks;
  if (!G && strcmp(rc->backend, "cpu") == 0) G = R;
  if (!G && strcmp(rc->backend, "cuda") == 0) G = 1;
  if (G > R)
    return fm_fail(em, el, FM_EUSAGE,
                   "--%s %d: %s has %d ranks, and every replay rank replays one of them "
                   "(give --%s 1..%d)",
                   rc->partitions > 0 ? "partitions" : "ranks", G, rc->trace_path, R,
                   rc->partitions > 0 ? "partitions" : "ranks", R);
  st->G = G;
  if (strcmp(rc->backend, "cpu") == 0) fm_replay_cores_warning(G, warning, wl);
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
  /* the ranks the replay uses: the simulator's cluster is the profile's */
  int ranks = st->G > 0 ? st->G : 4;
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
 * per-iteration times); the output stays in st->meas[p] to be stored. */
static int measure(vstate *st, int p, fm_validate_run *run, char *em, size_t el) {
  int rc;
  st->replay.policy = st->policies[p];
  st->replay.predict = 0;
  if ((rc = fm_replay_compute(&st->replay, &st->meas[p], em, el))) return rc;
  const fm_replay_output *o = st->meas[p];
  snprintf(run->policy, sizeof run->policy, "%s", o->policy);
  fold(o->phase_ms, o->mean_iteration_ms, run->measured);
  run->measured_nonmoe_us = o->nonmoe_us;
  run->iterations = o->iterations;
  if (times_of(&o->rows[0].time_ms, sizeof o->rows[0], o->iterations, &run->measured_ms))
    return fm_fail(em, el, FM_EFAIL, "out of memory");
  return FM_OK;
}

/* The configuration of policy p resolved as the replay resolves it (the
 * replay's cost-model prediction on the resolved ranks: no backend, no
 * measurement) into st->shape[p]: the iteration range, model, tokens per
 * GPU and slots the simulator gets. Refuses what the replay would refuse
 * (slots below the experts, a bad policy) before anything is measured. */
static int resolve_shape(vstate *st, int p, char *em, size_t el) {
  fm_replay_config pc = st->replay;
  pc.policy = st->policies[p];
  pc.predict = 1;
  pc.ranks = st->G;
  pc.partitions = 0;
  pc.quiet = 1;
  int rc = fm_replay_compute(&pc, &st->shape[p], em, el);
  if (!rc) snprintf(st->shape[p]->cluster, sizeof st->shape[p]->cluster, "%s-%d",
                    st->replay.backend, st->G);
  return rc;
}

/* The simulator's non-MoE time of a run (its stored parameters). */
static double sim_nonmoe_us(const fm_sim_output *so) {
  json_t *pj = json_loads(fm_sim_params_json(so), 0, NULL);
  double v = json_number_value(json_object_get(pj, "nonmoe_us"));
  json_decref(pj);
  return pj ? v : NAN;
}

/* The simulator's configuration of resolved run m: the same trace, range,
 * seed, model, tokens per GPU and slots, the profile's cluster (on m's
 * ranks when the profile was measured on another count). */
static fm_sim_config sim_config_of(const vstate *st, int p, const fm_replay_output *m,
                                   const sim_profile *sp, int gpus_per_node) {
  return (fm_sim_config){.trace_path = st->replay.trace_path,
                         .cluster = st->cluster_path,
                         .nodes = gpus_per_node ? 1 : 0,
                         .gpus_per_node = gpus_per_node,
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

/* Predicts resolved run m with the simulator, the profile in memory with
 * its non-MoE factor set to the replay's local token movement. Without
 * that movement (no P.runtime.json) the simulator reads P.json itself, its
 * own nonmoe_factor included, as validate always did (the replay then uses
 * a factor of 0: the two sides differ there). The output stays in
 * st->sims[p] to be stored. */
static int predict_sim(vstate *st, int p, const fm_replay_output *m, fm_validate_run *run,
                       char *em, size_t el) {
  sim_profile sp;
  int rc = fm_profile_for_sim(st->profile_path, m->d_model, m->d_ff, m->top_k,
                              (double)m->tokens_per_gpu, &sp, em, el);
  if (rc) return rc;
  fm_profile prof;
  if (fm_profile_load(st->profile_path, &prof, em, el)) return FM_EFAIL;
  int gpn = prof.gpus > 0 && prof.gpus != m->gpus ? m->gpus : 0;
  fm_sim_config sc = sim_config_of(st, p, m, sp.nonmoe_factor > 0 ? &sp : NULL, gpn);
  char why[900];
  if ((rc = fm_sim_compute(&sc, &st->sims[p], why, sizeof why)))
    return fm_fail(em, el, rc, "simulator, policy '%s': %s", st->policies[p], why);
  const fm_sim_output *so = st->sims[p];
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
  run->npredicted = n;
  return times_of(&rows[0].time_ms, sizeof rows[0], n, &run->predicted_ms)
             ? fm_fail(em, el, FM_EFAIL, "out of memory")
             : FM_OK;
}

/* Predicts resolved run m (a cost-model replay: fm_replay's predict mode
 * on the replay's ranks) by taking its numbers. */
static int predict_cost(const fm_replay_output *po, fm_validate_run *run, char *em, size_t el) {
  fold(po->phase_ms, po->mean_iteration_ms, run->predicted);
  run->npredicted = po->iterations;
  return times_of(&po->rows[0].time_ms, sizeof po->rows[0], po->iterations, &run->predicted_ms)
             ? fm_fail(em, el, FM_EFAIL, "out of memory")
             : FM_OK;
}

/* Policy p predicted from resolved run m (st->shape[p], or the
 * measurement when the ranks were known only after the backend started). */
static int predict(vstate *st, int p, const fm_replay_output *m, fm_validate_run *run, char *em,
                   size_t el) {
  run->predicted_nonmoe_us = NAN;
  if (st->use_sim) return predict_sim(st, p, m, run, em, el);
  if (m->backend[0] && !st->shape[p]) {
    /* resolved from the measurement: predict on its ranks now */
    st->G = m->gpus;
    int rc = resolve_shape(st, p, em, el);
    if (rc) return rc;
  }
  return predict_cost(st->shape[p], run, em, el);
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

/* Every policy's measured run, predicted run (simulator only: the cost
 * model's prediction is not a run) and validation row, once all are done. */
static int store_all(vstate *st, fm_validate_result *res, char *em, size_t el) {
  char why[900];
  for (int p = 0; p < st->npol; p++) {
    fm_validate_run *run = &res->runs[p];
    int rc = FM_OK;
    if (st->meas[p]->owner &&
        (rc = fm_replay_record(st->db, st->meas[p], &run->measured_id, why, sizeof why)))
      return fm_fail(em, el, rc, "%s: %s", st->cfg->db_path, why);
    if (st->sims[p] &&
        (rc = fm_sim_record(st->db, st->sims[p], &run->predicted_id, why, sizeof why)))
      return fm_fail(em, el, rc, "%s: %s", st->cfg->db_path, why);
    if (run->predicted_id && (rc = store_validation(st, run, em, el))) return rc;
  }
  return FM_OK;
}

/* Policy p measured, predicted when it was not before, and compared.
 * res->owner becomes 0 on an MPI rank that records nothing. */
static int validate_one(vstate *st, int p, fm_validate_result *res, char *em, size_t el) {
  fm_validate_run *run = &res->runs[p];
  int rc = measure(st, p, run, em, el);
  const fm_replay_output *m = st->meas[p];
  if (m) res->owner = m->owner;
  if (rc || !m->owner) return rc;
  if (!run->predicted_ms && (rc = predict(st, p, m, run, em, el))) return rc;
  const fm_replay_output *sh = st->shape[p] ? st->shape[p] : m;
  if (sh->it_begin != m->it_begin || sh->it_end != m->it_end || sh->slots != m->slots ||
      sh->gpus != m->gpus)
    return fm_fail(em, el, FM_EFAIL,
                   "policy '%s': the replay resolved another configuration than the prediction "
                   "(%d ranks, %d slots; predicted on %d ranks, %d slots)",
                   st->policies[p], m->gpus, m->slots, sh->gpus, sh->slots);
  if (run->npredicted != run->iterations)
    return fm_fail(em, el, FM_EFAIL, "prediction: %lld iterations, runtime %lld",
                   (long long)run->npredicted, (long long)run->iterations);
  for (int q = 0; q < FM_V_N; q++) run->error[q] = rel(run->predicted[q], run->measured[q]);
  return FM_OK;
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

/* Opens the database for writing before any work, so one that cannot be
 * written fails first, naming the file. */
static int open_db(vstate *st, char *em, size_t el) {
  if (!st->cfg->db_path) return FM_OK;
  char why[512] = "";
  if (st_open(&st->db, st->cfg->db_path, ST_WRITE, why, sizeof why))
    return fm_fail(em, el, FM_EFAIL, "--db %s: cannot open it for writing: %s", st->cfg->db_path,
                   why[0] ? why : "unknown error");
  return FM_OK;
}

/* Every policy predicted (when the ranks are known), then every policy
 * measured and compared. */
static int run_all(vstate *st, fm_validate_result *res, char *em, size_t el) {
  int rc = FM_OK;
  for (int p = 0; p < st->npol && !rc && st->G > 0; p++) {
    if (!(rc = resolve_shape(st, p, em, el)))
      rc = predict(st, p, st->shape[p], &res->runs[p], em, el);
  }
  for (int p = 0; p < st->npol && !rc; p++) rc = validate_one(st, p, res, em, el);
  return rc;
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
  if (!rc) rc = resolve_ranks(&st, res->warning, sizeof res->warning, em, el);
  if (!rc) rc = open_db(&st, em, el);
  if (!rc) rc = load_profile(&st, em, el);
  if (!rc && !(res->runs = calloc((size_t)st.npol, sizeof *res->runs)))
    rc = fm_fail(em, el, FM_EFAIL, "out of memory");
  res->nruns = st.npol;
  res->owner = 1;
  if (!rc) rc = run_all(&st, res, em, el);
  if (!rc && res->owner) statistics(res);
  if (!rc && res->owner && st.db) rc = store_all(&st, res, em, el);
  if (st.db) st_close(st.db);
  if (!rc) describe(&st, res);
  for (int p = 0; p < st.npol; p++) {
    fm_replay_output_free(st.shape[p]);
    fm_replay_output_free(st.meas[p]);
    fm_sim_output_free(st.sims[p]);
  }
  remove_calibrated(&st);
  if (rc) {
    char keep[sizeof res->warning];
    snprintf(keep, sizeof keep, "%s", res->warning);
    fm_validate_result_fini(res);
    snprintf(res->warning, sizeof res->warning, "%s", keep);
  }
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

/* One policy's predicted and measured times as JSON. */
static json_t *run_doc(const fm_validate_run *r) {
  json_t *ph = json_object();
  int bad = !ph;
  for (int q = 0; q < FM_V_TIME && !bad; q++)
    bad |= json_object_set_new(
        ph, fm_validate_phase_names[q],
        json_pack("{s:o, s:o, s:o}", "predicted_ms", fm_json_number(r->predicted[q]),
                  "measured_ms", fm_json_number(r->measured[q]), "error",
                  fm_json_number(r->error[q])));
  if (bad) {
    json_decref(ph);
    return NULL;
  }
  return json_pack("{s:o, s:o, s:o, s:o, s:o}", "policy", fm_json_string(r->policy),
                   "predicted_ms", fm_json_number(r->predicted[FM_V_TIME]), "measured_ms",
                   fm_json_number(r->measured[FM_V_TIME]), "error",
                   fm_json_number(r->error[FM_V_TIME]), "phases", ph);
}

json_t *fm_validate_doc(const fm_validate_result *res) {
  json_t *runs = json_array();
  int bad = !runs;
  for (int p = 0; p < res->nruns && !bad; p++)
    bad |= json_array_append_new(runs, run_doc(&res->runs[p]));
  json_t *doc = json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "runs", runs,
                          "median_abs_error", fm_json_number(res->median_abs_error),
                          "p95_abs_error", fm_json_number(res->p95_abs_error), "ranking_agrees",
                          res->ranking_agrees, "predictor", fm_json_string(res->predictor),
                          "profile", fm_json_string(res->profile), "backend",
                          fm_json_string(res->backend));
  if (bad) {
    json_decref(doc);
    return NULL;
  }
  return doc;
}
