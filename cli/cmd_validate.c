/*
 * cmd_validate.c - flexmoe validate: the same configuration (trace,
 * policy, ranks, model, seed) through the runtime (measured) and through
 * the simulator with the calibrated profile (predicted); both stored, and
 * predicted vs measured shown per phase and per policy with the errors.
 *
 * Predictor: the simulator's runner (fm_sim_compute, run/fm_sim.c) with
 * the calibrated profile and its cluster file, engine analytic or des; or,
 * with --engine cost, the placement library's cost model alone
 * (pl_cost_layer + pl_cost_moves_us: the numbers the planners reason with).
 * Errors are (predicted - measured) / measured. median_abs_error is the
 * median over policies of |error| of the mean iteration time; p95_abs_error
 * the 95th percentile over policies x phases of |error| of the phases that
 * take at least 5% of the measured iteration (smaller phases are a few
 * microseconds, where a relative error means little), the iteration time
 * included.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "run/fm_profile.h"
#include "run/fm_replay.h"
#include "runtime/rt_calib.h"
#include "placement/pl_error.h"
#include "placement/pl_policy.h"
#include "sim/sim_profile.h"
#include "run/fm_sim.h"


/* "name:key=value,..." -> "name" for table columns (JSON keeps the spec). */
static const char *short_name(const char *spec, char *buf, size_t len) {
  size_t n = strcspn(spec, ":");
  snprintf(buf, len, "%.*s", (int)n, spec);
  return buf;
}

static const char *const help =
    "usage: flexmoe validate --backend cpu|cuda|nccl --trace T [--policy SPEC]...\n"
    "                        [--partitions N] [--ranks N] [--iterations A:B] [--seed S]\n"
    "                        [--d-model D] [--d-ff F] [--tokens-per-gpu T] [--slots S]\n"
    "                        [--profile P.json] [--engine analytic|des|cost] [--db FILE]\n"
    "                        [--format table|json]\n"
    "\n"
    "Runs each policy twice on the same configuration: on the runtime backend\n"
    "(measured) and through the simulator with the calibrated profile of that\n"
    "backend (predicted), and prints predicted vs measured per phase with the\n"
    "relative error (predicted - measured) / measured. Without --profile the backend\n"
    "is calibrated first (as flexmoe calibrate). Policies default to static,\n"
    "flexmoe:background=0 and eplb:background=0 (those this build has). A policy that\n"
    "moves experts in the background is refused: the runtime migrates between\n"
    "iterations, blocking, and every re-planning policy (smartmoe, eplb, flexmoe)\n"
    "defaults to background=1, so give them background=0.\n"
    "With --db both runs and the validation are stored.\n"
    "--engine: the simulator's analytic (default) or discrete-event engine, or 'cost':\n"
    "the placement library's cost model alone, as the planners see the run.\n"
    "\n"
    "JSON: {\"runs\": [{\"policy\", \"predicted_ms\", \"measured_ms\", \"error\", \"phases\"}],\n"
    "       \"median_abs_error\", \"p95_abs_error\", \"ranking_agrees\", \"predictor\"}\n"
    "median_abs_error: over policies, of the mean iteration time; p95_abs_error: over\n"
    "policies x phases taking >= 5% of the iteration.\n"
    "\n"
    "example:\n"
    "  flexmoe validate --backend cuda --partitions 4 --trace gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --iterations 0:50 --d-model 1024 --d-ff 4096 --policy static \\\n"
    "      --policy flexmoe:background=0 --policy eplb:background=0 \\\n"
    "      --profile h200-green-4.json --db flexmoe.db --format json\n";

typedef struct vrun {
  char policy[PL_SPEC_MAX + 1];
  double pred[RT_PH_COUNT + 1], meas[RT_PH_COUNT + 1]; /* [RT_PH_COUNT] = time */
  int64_t pred_id, meas_id;
} vrun;

/* phases compared: compute, all-to-all (dispatch + combine), allreduce, migration */
enum { V_COMPUTE, V_ALLTOALL, V_ALLREDUCE, V_MIGRATION, V_OTHER, V_TIME, V_N };
static const char *const vnames[V_N] = {"compute", "alltoall", "allreduce", "migration", "other",
                                        "time"};

static void fold(const double *ph, double time, double *v) {
  v[V_COMPUTE] = ph[RT_PH_COMPUTE];
  v[V_ALLTOALL] = ph[RT_PH_DISPATCH] + ph[RT_PH_COMBINE];
  v[V_ALLREDUCE] = ph[RT_PH_ALLREDUCE];
  v[V_MIGRATION] = ph[RT_PH_MIGRATION];
  v[V_OTHER] = ph[RT_PH_LOCAL];
  v[V_TIME] = time;
}

static double rel(double p, double m) { return m != 0 ? (p - m) / m : (p == 0 ? 0 : NAN); }

/* Whether policy `spec` moves experts in the background: it has a
 * `background` parameter whose value, as given in the spec or by default,
 * is not 0. The runtime migrates between iterations, blocking, and serves
 * from the new placement at once, while the simulator overlaps background
 * moves with the iteration and serves from the old placement meanwhile: a
 * prediction of the one would be compared with a measurement of the other.
 * A policy without the parameter, or a spec the policy library rejects, is
 * left to the library's own error later. */
static int moves_in_background(const char *spec) {
  char v[PL_VALUE_MAX + 1];
  long b;
  if (pl_policy_param(spec, "background", v, sizeof v) != PL_OK || cli_text_long(v, &b))
    return 0; /* not an integer: the library names the value later */
  return b != 0;
}

int cmd_validate(int argc, char **argv) {
  static const struct option opts[] = {
      {"backend", required_argument, 0, 'b'}, {"trace", required_argument, 0, 't'},
      {"policy", required_argument, 0, 'p'}, {"partitions", required_argument, 0, 'P'},
      {"ranks", required_argument, 0, 'r'}, {"device", required_argument, 0, 'D'},
      {"iterations", required_argument, 0, 'i'}, {"seed", required_argument, 0, 's'},
      {"d-model", required_argument, 0, 'd'}, {"d-ff", required_argument, 0, 'f'},
      {"tokens-per-gpu", required_argument, 0, 'T'}, {"slots", required_argument, 0, 'S'},
      {"profile", required_argument, 0, 'R'}, {"engine", required_argument, 0, 'e'},
      {"db", required_argument, 0, 'B'}, {"format", required_argument, 0, 'F'},
      {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fm_replay_config cfg = FM_REPLAY_CONFIG_INIT;
  cfg.backend = NULL;
  const char *policies[64], *db_path = NULL, *profile_path = NULL, *engine = "analytic";
  int npol = 0, fmt = CLI_FMT_TABLE, rc;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      if (npol == 64) return cli_fail(CLI_EUSAGE, "validate", "--policy: at most 64");
      policies[npol++] = optarg;
      break;
    case 'R': profile_path = optarg; break;
    case 'e':
      if (strcmp(optarg, "analytic") && strcmp(optarg, "des") && strcmp(optarg, "cost"))
        return cli_fail(CLI_EUSAGE, "validate", "--engine: '%s' is not analytic, des or cost", optarg);
      engine = optarg;
      break;
    case 'B': db_path = optarg; break;
    case 'F':
      if ((rc = cli_parse_format("validate", optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))) return rc;
      break;
    case 'h': cli_help(help); return CLI_OK;
    default:
      if ((rc = cli_replay_option("validate", c, optarg, &cfg)) == 0)
        return cli_bad_option("validate", argv[optind - 1]);
      if (rc < 0)
        return -rc;
      break;
    }
  }
  if (optind < argc) return cli_fail(CLI_EUSAGE, "validate", "unexpected argument '%s'", argv[optind]);
  if (!cfg.backend) return cli_fail(CLI_EUSAGE, "validate", "--backend is required (cpu, cuda or nccl)");
  if (!cfg.trace_path) return cli_fail(CLI_EUSAGE, "validate", "--trace is required");
  if (cfg.partitions > 0 && strcmp(cfg.backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, "validate", "--partitions needs --backend cuda");
  if (npol == 0) {
    static const char *const defaults[][2] = {
        {"static", "static"},
        {"flexmoe", "flexmoe:background=0"},
        {"eplb", "eplb:background=0"}};
    for (int i = 0; i < 3; i++)
      if (pl_policy_find(defaults[i][0])) policies[npol++] = defaults[i][1];
  }
  for (int p = 0; p < npol; p++)
    if (moves_in_background(policies[p]))
      return cli_fail(CLI_EUSAGE, "validate",
                      "policy '%s' moves experts in the background, which the runtime does not do "
                      "(it migrates between iterations, blocking): its prediction would describe "
                      "another run; set background=0",
                      policies[p]);
  char em[1024] = "";
  /* 1. the calibrated profile: given, or measured now */
  fm_profile prof;
  char tmpdir[64] = "", tmpprof[128] = "";
  if (!profile_path) {
    rt_backend_config bc = {cfg.partitions ? cfg.partitions : (cfg.ranks ? cfg.ranks : 4),
                            cfg.partitions, cfg.device, 300.0, 0};
    if (strcmp(cfg.backend, "nccl") == 0)
      return cli_fail(CLI_EUSAGE, "validate", "--backend nccl needs --profile (calibrate with cuda)");
    rt_backend *b = NULL;
    if (rt_backend_create(&b, cfg.backend, &bc, em, sizeof em))
      return cli_fail(CLI_EFAIL, "validate", "%s", em);
    rt_calib_config cc;
    rt_calib_result res;
    int d = cfg.d_model ? cfg.d_model : 0, f = cfg.d_ff ? cfg.d_ff : 0;
    if (!d || !f) {
      rt_backend_destroy(b);
      return cli_fail(CLI_EUSAGE, "validate", "without --profile, give --d-model and --d-ff to calibrate");
    }
    rt_calib_defaults(&cc, b, d, f);
    if (rt_calibrate(b, &cc, &res, em, sizeof em)) {
      rt_backend_destroy(b);
      return cli_fail(CLI_EFAIL, "validate", "calibration: %s", em);
    }
    memset(&prof, 0, sizeof prof);
    snprintf(prof.name, sizeof prof.name, "%s-%d-validate", cfg.backend, b->ranks);
    snprintf(prof.device, sizeof prof.device, "%s", b->ops->describe(b));
    prof.d_model = d;
    prof.d_ff = f;
    prof.npoints = res.ntokens;
    for (int i = 0; i < res.ntokens; i++) {
      prof.tok[i] = (double)res.tokens[i];
      prof.us[i] = res.fwd_us[i];
    }
    prof.pl.bwd_ratio = res.bwd_ratio;
    prof.exchange_GBps = res.exchange_GBps;
    prof.exchange_latency_us = res.exchange_latency_us;
    prof.local_lat_us = res.local_lat_us;
    prof.local_us_per_row = res.local_us_per_row;
    prof.launch_us = res.launch_us;
    prof.gpus = b->ranks;
    rt_backend_destroy(b);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/flexmoe-validate-XXXXXX");
    if (!mkdtemp(tmpdir)) return cli_fail(CLI_EFAIL, "validate", "cannot make a temporary directory");
    snprintf(tmpprof, sizeof tmpprof, "%s/profile.json", tmpdir);
    if (fm_profile_save(&prof, tmpprof, em, sizeof em)) return cli_fail(CLI_EFAIL, "validate", "%s", em);
    profile_path = tmpprof;
  }
  if (fm_profile_load(profile_path, &prof, em, sizeof em)) return cli_fail(CLI_EFAIL, "validate", "%s", em);
  if (prof.exchange_GBps <= 0)
    return cli_fail(CLI_EFAIL, "validate",
                    "%s: no exchange bandwidth (no .cluster.json beside it, or a zero bandwidth in it; "
                    "write both with flexmoe calibrate --out)", profile_path);
  char cluster_path[1024];
  fm_profile_cluster_path(profile_path, cluster_path, sizeof cluster_path);
  cfg.profile_path = profile_path;
  cfg.exchange_GBps = prof.exchange_GBps;
  cfg.exchange_lat_us = prof.exchange_latency_us;
  int use_sim = strcmp(engine, "cost") != 0;
  st_db *db = NULL;
  if (db_path) {
    if (st_open(&db, db_path, ST_WRITE, em, sizeof em)) return cli_fail(CLI_EFAIL, "validate", "%s", em);
  }
  vrun *vr = calloc((size_t)npol, sizeof *vr);
  int out = vr ? CLI_OK : cli_fail(CLI_EFAIL, "validate", "out of memory");
  int owner = 1;
  for (int p = 0; p < npol && out == CLI_OK; p++) {
    cfg.policy = policies[p];
    cfg.predict = 0;
    fm_replay_output *m = NULL;
    if ((rc = fm_replay_compute(&cfg, &m, em, sizeof em))) {
      out = cli_fail(rc, "validate", "%s", em);
      break;
    }
    owner = m->owner;
    snprintf(vr[p].policy, sizeof vr[p].policy, "%s", m->policy);
    fold(m->phase_ms, m->mean_iteration_ms, vr[p].meas);
    if (db && owner && (rc = fm_replay_record(db, m, &vr[p].meas_id, em, sizeof em))) {
      out = cli_fail(rc, "validate", "%s: %s", db_path, em);
      fm_replay_output_free(m);
      break;
    }
    int gpus = m->gpus, slots = m->slots, d = m->d_model, f = m->d_ff, k = m->top_k;
    int64_t a = m->it_begin, bnd = m->it_end;
    int64_t tokens_per_gpu = m->tokens_per_gpu;
    fm_replay_output_free(m);
    if (!owner) continue;
    if (use_sim) {
      fm_sim_config sc = FM_SIM_CONFIG_INIT;
      sc.trace_path = cfg.trace_path;
      sc.cluster = cluster_path;
      sc.policy = policies[p];
      sc.engine = engine;
      sc.it_begin = a;
      sc.it_end = bnd;
      sc.seed = cfg.seed;
      sc.d_model = d;
      sc.d_ff = f;
      sc.top_k = k;
      sc.tokens_per_gpu = cfg.tokens_per_gpu;
      sc.profile_path = profile_path;
      sc.slots = slots;
      (void)gpus;
      /* The simulator reads the same profile with its non-MoE factor set to
       * the runtime's local token movement (fm_profile.h), as the runtime's
       * own policy environment did. */
      char simprof[1100] = "";
      sim_profile sp;
      if ((rc = fm_profile_for_sim(profile_path, d, f, k, (double)tokens_per_gpu, &sp, em, sizeof em))) {
        out = cli_fail(rc, "validate", "%s", em);
        break;
      }
      if (sp.nonmoe_factor > 0) {
        sim_errbuf se;
        snprintf(simprof, sizeof simprof, "%s.sim-%d.json", profile_path, (int)getpid());
        if (sim_profile_save(&sp, simprof, &se) == 0) sc.profile_path = simprof;
        else simprof[0] = 0;
      }
      fm_sim_output *so = NULL;
      rc = fm_sim_compute(&sc, &so, em, sizeof em);
      if (simprof[0]) unlink(simprof);
      if (rc) {
        out = cli_fail(rc, "validate", "simulator: %s", em);
        break;
      }
      const fm_sim_summary *s = fm_sim_summary_of(so);
      vr[p].pred[V_COMPUTE] = s->compute_ms;
      vr[p].pred[V_ALLTOALL] = s->alltoall_ms;
      vr[p].pred[V_ALLREDUCE] = s->allreduce_ms;
      vr[p].pred[V_MIGRATION] = s->migration_ms;
      vr[p].pred[V_OTHER] = s->other_ms;
      vr[p].pred[V_TIME] = s->mean_iteration_ms;
      if (db && (rc = fm_sim_record(db, so, &vr[p].pred_id, em, sizeof em))) {
        fm_sim_output_free(so);
        out = cli_fail(rc, "validate", "%s: %s", db_path, em);
        break;
      }
      fm_sim_output_free(so);
    } else {
      fm_replay_config pc = cfg;
      pc.predict = 1;
      pc.ranks = gpus;
      pc.partitions = 0;
      pc.quiet = 1;
      fm_replay_output *po = NULL;
      if ((rc = fm_replay_compute(&pc, &po, em, sizeof em))) {
        out = cli_fail(rc, "validate", "prediction: %s", em);
        break;
      }
      fold(po->phase_ms, po->mean_iteration_ms, vr[p].pred);
      fm_replay_output_free(po);
    }
    if (db && vr[p].pred_id) {
      st_validation_row row = {vr[p].pred_id, vr[p].meas_id,
                                 rel(vr[p].pred[V_TIME], vr[p].meas[V_TIME]),
                                 rel(vr[p].pred[V_COMPUTE], vr[p].meas[V_COMPUTE]),
                                 rel(vr[p].pred[V_ALLTOALL], vr[p].meas[V_ALLTOALL]),
                                 rel(vr[p].pred[V_ALLREDUCE], vr[p].meas[V_ALLREDUCE]),
                                 rel(vr[p].pred[V_MIGRATION], vr[p].meas[V_MIGRATION]),
                                 rel(vr[p].pred[V_OTHER], vr[p].meas[V_OTHER]), NULL};
      int64_t vid;
      if ((rc = st_validation_add(db, &row, &vid))) {
        out = cli_fail(CLI_EFAIL, "validate", "%s: cannot store the validation", db_path);
        break;
      }
    }
  }
  if (db) st_close(db);
  if (tmpprof[0]) {
    char cp[1024];
    fm_profile_cluster_path(tmpprof, cp, sizeof cp);
    unlink(tmpprof);
    unlink(cp);
    rmdir(tmpdir);
  }
  if (out != CLI_OK || !owner) {
    free(vr);
    return out;
  }
  /* statistics */
  double tim[64], all[64 * V_N];
  int nt = 0, na = 0;
  for (int p = 0; p < npol; p++) {
    double e = rel(vr[p].pred[V_TIME], vr[p].meas[V_TIME]);
    tim[nt++] = fabs(e);
    for (int q = 0; q < V_N; q++)
      if (vr[p].meas[q] >= 0.05 * vr[p].meas[V_TIME] && vr[p].meas[q] > 0)
        all[na++] = fabs(rel(vr[p].pred[q], vr[p].meas[q]));
  }
  double med = fm_percentile_of(tim, nt, 0.5), p95 = fm_percentile_of(all, na, 0.95);
  int agrees = 1;
  for (int p = 0; p < npol; p++)
    for (int q = 0; q < npol; q++)
      if ((vr[p].meas[V_TIME] < vr[q].meas[V_TIME]) != (vr[p].pred[V_TIME] < vr[q].pred[V_TIME]))
        agrees = 0;
  char predictor[64];
  snprintf(predictor, sizeof predictor, "%s", use_sim ? (strcmp(engine, "des") == 0 ? "simulator (des)" : "simulator (analytic)")
                                                      : "placement cost model");
  if (fmt == CLI_FMT_JSON) {
    /* an error that is not defined (a phase not measured: 0 ms) is null,
     * never a number JSON cannot hold or a made-up 0 */
    json_t *runs = json_array();
    int bad = !runs;
    for (int p = 0; p < npol && !bad; p++) {
      json_t *ph = json_object();
      for (int q = 0; q < V_TIME; q++)
        bad |= json_object_set_new(
            ph, vnames[q],
            json_pack("{s:o, s:o, s:o}", "predicted_ms", fm_json_number(vr[p].pred[q]),
                      "measured_ms", fm_json_number(vr[p].meas[q]), "error",
                      fm_json_number(rel(vr[p].pred[q], vr[p].meas[q]))));
      bad |= json_array_append_new(
          runs, json_pack("{s:o, s:o, s:o, s:o, s:o}", "policy", fm_json_string(vr[p].policy),
                          "predicted_ms", fm_json_number(vr[p].pred[V_TIME]), "measured_ms",
                          fm_json_number(vr[p].meas[V_TIME]), "error",
                          fm_json_number(rel(vr[p].pred[V_TIME], vr[p].meas[V_TIME])),
                          "phases", ph));
    }
    json_t *doc = json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o}", "runs", runs,
                            "median_abs_error", fm_json_number(med), "p95_abs_error",
                            fm_json_number(p95), "ranking_agrees", agrees, "predictor",
                            fm_json_string(predictor), "profile",
                            fm_json_string(profile_path == tmpprof ? "calibrated now"
                                                                    : profile_path),
                            "backend", fm_json_string(cfg.backend));
    if (bad) {
      json_decref(doc);
      doc = NULL;
    }
    int prc = cli_json_print("validate", doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (prc) {
      free(vr);
      return prc;
    }
  } else {
    printf("validate: backend %s, predictor: %s\n", cfg.backend, predictor);
    printf("%-12s %-10s %12s %12s %9s\n", "policy", "phase", "predicted_ms", "measured_ms", "error");
    for (int p = 0; p < npol; p++)
      for (int q = V_N - 1; q >= 0; q--) {
        double e = rel(vr[p].pred[q], vr[p].meas[q]);
        char sn[64];
        printf("%-12s %-10s %12.3f %12.3f %8.1f%%\n", q == V_TIME ? short_name(vr[p].policy, sn, sizeof sn) : "", vnames[q],
               vr[p].pred[q], vr[p].meas[q], isnan(e) ? 0.0 : 100.0 * e);
      }
    printf("median |error| of iteration time %.1f%%, p95 |error| over phases %.1f%%, ranking %s\n",
           100 * med, 100 * p95, agrees ? "agrees" : "DIFFERS");
  }
  free(vr);
  return CLI_OK;
}
