/*
 * cmd_run.c - flexmoe run: replay a trace with a placement policy on a
 * runtime backend (real expert FFNs, real exchange, real migrations) and
 * record the measured iterations as runs of kind "gpu".
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_replay.h"
#include "run/fm_profile.h"


/* "name:key=value,..." -> "name" for table columns (JSON keeps the spec). */
static const char *short_name(const char *spec, char *buf, size_t len) {
  size_t n = strcspn(spec, ":");
  snprintf(buf, len, "%.*s", (int)n, spec);
  return buf;
}

static const char *const help =
    "usage: flexmoe run --backend cpu|cuda|nccl --trace T --policy SPEC [--policy SPEC]...\n"
    "                   [--partitions N] [--ranks N] [--device D] [--iterations A:B] [--seed S]\n"
    "                   [--d-model D] [--d-ff F] [--top-k K] [--tokens-per-gpu T] [--slots S]\n"
    "                   [--profile FILE.json] [--check] [--db FILE] [--format table|json]\n"
    "\n"
    "Replays the trace on a runtime backend: tokens generated from the seed and routed\n"
    "as the trace says (GPU g replays trace rank g mod R), dispatch, expert FFN forward\n"
    "and backward, combine, replica gradient all-reduce, and the policy's plans applied\n"
    "by really moving expert parameters and optimizer state. Per-phase times are\n"
    "measured (CUDA events on GPUs, the clock on cpu); input generation is not timed.\n"
    "\n"
    "  --backend B        cpu (reference, ranks are threads), cuda (one process: GPUs,\n"
    "                     or --partitions N SM partitions of one GPU), nccl (under mpirun,\n"
    "                     one process per GPU)\n"
    "  --ranks N          ranks (cpu: default the trace's ranks; cuda: GPUs, default 1;\n"
    "                     nccl: default the MPI world size)\n"
    "  --partitions N     cuda: N green-context SM partitions of one GPU as N ranks\n"
    "  --policy SPEC      placement policy (flexmoe policies); repeat to run several\n"
    "  --iterations A:B   iterations [A, B) of the trace (default all)\n"
    "  --d-model/--d-ff/--top-k  model shape (default: the trace's sidecar)\n"
    "  --tokens-per-gpu T tokens each rank routes per layer (default: its own count)\n"
    "  --slots S          expert slots per rank per layer (default ceil(1.5 E / G))\n"
    "  --profile FILE     calibrated profile (flexmoe calibrate --out) for the policies'\n"
    "                     cost model; its .cluster.json sibling gives the exchange numbers\n"
    "  --check            compare the last iteration with a single-device reference and\n"
    "                     verify every replica's parameter checksum (small shapes)\n"
    "  --db FILE          record each run (kind gpu) in the results database\n"
    "\n"
    "example:\n"
    "  flexmoe run --backend cpu --ranks 4 --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
    "      --iterations 0:5 --d-model 64 --d-ff 128 --tokens-per-gpu 256 --policy static --check\n";

int cmd_run(int argc, char **argv) {
  static const struct option opts[] = {
      {"backend", required_argument, 0, 'b'}, {"trace", required_argument, 0, 't'},
      {"policy", required_argument, 0, 'p'}, {"partitions", required_argument, 0, 'P'},
      {"ranks", required_argument, 0, 'r'}, {"device", required_argument, 0, 'D'},
      {"iterations", required_argument, 0, 'i'}, {"seed", required_argument, 0, 's'},
      {"d-model", required_argument, 0, 'd'}, {"d-ff", required_argument, 0, 'f'},
      {"top-k", required_argument, 0, 'k'}, {"tokens-per-gpu", required_argument, 0, 'T'},
      {"slots", required_argument, 0, 'S'}, {"profile", required_argument, 0, 'R'},
      {"check", no_argument, 0, 'c'}, {"db", required_argument, 0, 'B'},
      {"format", required_argument, 0, 'F'}, {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  fm_replay_config cfg = FM_REPLAY_CONFIG_INIT;
  const char *policies[64];
  int npol = 0, fmt = CLI_FMT_TABLE, rc;
  const char *db_path = NULL, *profile_path = NULL;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      if (npol == 64) return cli_fail(CLI_EUSAGE, "run", "--policy: at most 64");
      policies[npol++] = optarg;
      break;
    case 'R': profile_path = optarg; break;
    case 'c': cfg.check = 1; break;
    case 'B': db_path = optarg; break;
    case 'F':
      if ((rc = cli_parse_format("run", optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))) return rc;
      break;
    case 'h': cli_help(help); return CLI_OK;
    default:
      if ((rc = cli_replay_option("run", c, optarg, &cfg)) == 0)
        return cli_bad_option("run", argv[optind - 1]);
      if (rc < 0)
        return -rc;
      break;
    }
  }
  if (optind < argc) return cli_fail(CLI_EUSAGE, "run", "unexpected argument '%s'", argv[optind]);
  if (!cfg.trace_path) return cli_fail(CLI_EUSAGE, "run", "--trace is required");
  if (npol == 0) return cli_fail(CLI_EUSAGE, "run", "--policy is required");
  if (cfg.partitions > 0 && strcmp(cfg.backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, "run", "--partitions needs --backend cuda");
  char em[1024] = "";
  fm_profile prof;
  if (profile_path) {
    if (fm_profile_load(profile_path, &prof, em, sizeof em)) return cli_fail(CLI_EFAIL, "run", "%s", em);
    cfg.profile_path = profile_path;
    if (prof.exchange_GBps > 0) {
      cfg.exchange_GBps = prof.exchange_GBps;
      cfg.exchange_lat_us = prof.exchange_latency_us;
    }
  }
  st_db *db = NULL;
  if (db_path) {
    if (st_open(&db, db_path, ST_WRITE, em, sizeof em)) return cli_fail(CLI_EFAIL, "run", "%s", em);
  }
  json_t *runs = json_array();
  int json_bad = !runs; /* a value that could not be built fails the JSON output */
  int out = CLI_OK, owner = 1;
  int header = 0;
  for (int p = 0; p < npol && out == CLI_OK; p++) {
    cfg.policy = policies[p];
    fm_replay_output *o = NULL;
    if ((rc = fm_replay_compute(&cfg, &o, em, sizeof em))) {
      out = cli_fail(rc, "run", "%s", em);
      break;
    }
    owner = o->owner;
    int64_t run_id = 0;
    if (db && owner && (rc = fm_replay_record(db, o, &run_id, em, sizeof em))) {
      out = cli_fail(rc, "run", "%s: %s", db_path, em);
      fm_replay_output_free(o);
      break;
    }
    int check_ok = 1;
    if (o->checked) {
      double tol = strcmp(cfg.backend, "cpu") == 0 ? 1e-5 : 2e-2;
      check_ok = o->check.out_err <= tol && o->check.din_err <= tol && o->check.grad_err <= tol &&
                 o->check.tokens_missing == 0 && o->check.checksum_mismatches == 0;
    }
    if (fmt == CLI_FMT_TABLE && owner) {
      char sn[64];
      if (!header++)
        printf("%-12s %6s %9s %9s %9s %9s %9s %9s %9s %8s %10s\n", "policy", "iters", "mean_ms",
               "dispatch", "compute", "combine", "local", "allreduce", "migration", "balance",
               "moved_MiB");
      printf("%-12s %6" PRId64 " %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %8.3f %10.1f\n",
             short_name(o->policy, sn, sizeof sn),
             o->iterations, o->mean_iteration_ms, o->phase_ms[RT_PH_DISPATCH],
             o->phase_ms[RT_PH_COMPUTE], o->phase_ms[RT_PH_COMBINE], o->phase_ms[RT_PH_LOCAL],
             o->phase_ms[RT_PH_ALLREDUCE],
             o->phase_ms[RT_PH_MIGRATION], o->balance_p50, (double)o->migrated_bytes / 1048576.0);
      if (o->checked)
        printf("  check: out %.2e din %.2e grad %.2e (rel. L2), %" PRId64 " tokens, %" PRId64
               " missing, %d replicas, %d checksum mismatches: %s\n",
               o->check.out_err, o->check.din_err, o->check.grad_err, o->check.tokens_checked,
               o->check.tokens_missing, o->check.replicas_checked, o->check.checksum_mismatches,
               check_ok ? "ok" : "FAILED");
    }
    json_t *bd = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}",
                           "dispatch", fm_json_number(o->phase_ms[RT_PH_DISPATCH]),
                           "compute", fm_json_number(o->phase_ms[RT_PH_COMPUTE]),
                           "combine", fm_json_number(o->phase_ms[RT_PH_COMBINE]),
                           "local", fm_json_number(o->phase_ms[RT_PH_LOCAL]),
                           "allreduce", fm_json_number(o->phase_ms[RT_PH_ALLREDUCE]),
                           "migration", fm_json_number(o->phase_ms[RT_PH_MIGRATION]));
    json_t *r = json_pack("{s:o, s:o, s:o, s:o, s:i, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I}",
                          "policy", fm_json_string(o->policy), "backend",
                          fm_json_string(o->backend), "cluster", fm_json_string(o->cluster),
                          "device", fm_json_string(o->device), "gpus", o->gpus, "iterations",
                          (json_int_t)o->iterations, "mean_iteration_ms",
                          fm_json_number(o->mean_iteration_ms), "breakdown_ms", bd,
                          "balance_p50", fm_json_number(o->balance_p50), "balance_p90",
                          fm_json_number(o->balance_p90), "migrated_bytes",
                          (json_int_t)o->migrated_bytes, "dropped_tokens",
                          (json_int_t)o->dropped_tokens, "alltoall_bytes",
                          (json_int_t)o->bytes_alltoall);
    int64_t slots = 0; /* token slots routed, for the effective time */
    for (int64_t i = 0; i < o->iterations; i++)
      slots += o->rows[i].tokens_total;
    json_bad |= json_object_set_new(r, "effective_iteration_ms",
                                    fm_json_number(st_effective_ms(o->mean_iteration_ms,
                                                                    o->dropped_tokens, slots)));
    json_bad |= json_object_set_new(r, "nonmoe_us", fm_json_number(o->nonmoe_us));
    if (db) json_bad |= json_object_set_new(r, "run_id", json_integer(run_id));
    if (o->checked)
      json_bad |= json_object_set_new(
          r, "check",
          json_pack("{s:o, s:o, s:o, s:I, s:I, s:i, s:i, s:b}", "out_err",
                    fm_json_number(o->check.out_err), "din_err",
                    fm_json_number(o->check.din_err), "grad_err",
                    fm_json_number(o->check.grad_err), "tokens",
                    (json_int_t)o->check.tokens_checked, "tokens_missing",
                    (json_int_t)o->check.tokens_missing, "replicas", o->check.replicas_checked,
                    "checksum_mismatches", o->check.checksum_mismatches, "ok", check_ok));
    json_bad |= json_array_append_new(runs, r);
    fm_replay_output_free(o);
    if (!check_ok) out = cli_fail(CLI_EFAIL, "run", "--check: results depend on the placement or tokens were lost (see above)");
  }
  if (out == CLI_OK && fmt == CLI_FMT_JSON && owner)
    out = cli_json_print("run", json_bad ? NULL : json_pack("{s:O}", "runs", runs),
                         JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(runs);
  if (db) st_close(db);
  return out;
}
