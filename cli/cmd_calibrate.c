/*
 * cmd_calibrate.c - flexmoe calibrate: measure a backend (expert FFN time vs
 * tokens for the model shape, exchange bandwidth between ranks, launch
 * overhead) and store it as a compute profile: in the database
 * (st_profile_put: NAME = the simulator's profile JSON, NAME.cluster = the
 * cluster JSON) and/or as files (--out P.json and P.cluster.json).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_profile.h"
#include "runtime/rt_calib.h"
#include "store/st_store.h"

static const char help_head[] =
    "usage: flexmoe calibrate --backend cuda|cpu [--partitions N] [--ranks N] [--device D]\n"
    "                         [--d-model D] [--d-ff F] [--reps R] [--name NAME]\n"
    "                         [--db FILE | --no-db] [--out profile.json]\n"
    "                         [--format table|json]\n"
    "\n"
    "Measures the backend the way the runtime uses it: expert FFN forward and backward\n"
    "(bf16 cuBLAS GEMMs on GPUs) at 16..16384 tokens on every rank at once, a uniform\n"
    "dispatch all-to-all (permute, copies, regroup) at several sizes fitted as\n"
    "latency + bytes / bandwidth per rank, and the launch overhead of tiny kernels.\n"
    "Writes the simulator's profile JSON (--out P.json) and a cluster JSON beside it\n"
    "(P.cluster.json: one node of the ranks, the measured exchange numbers), and\n"
    "stores both in the database as profiles NAME and NAME.cluster (--db).\n"
    "\n";
static const char help_tail[] =
    "\n"
    "example:\n"
    "  flexmoe calibrate --backend cuda --partitions 4 --d-model 1024 --d-ff 4096 \\\n"
    "      --out h200-green-4.json --db flexmoe.db\n";

/* What flexmoe calibrate's flags say (0 = the backend's default). */
typedef struct {
  const char *backend, *name, *db_path, *out_path;
  int partitions, ranks, device, d, f, reps, fmt, no_db;
} calib_args;

/* argv into *a (the flag table), then the combinations checked; CLI_OK,
 * CLI_HELP after --help, or CLI_EUSAGE with one message printed. */
static int calib_parse(int argc, char **argv, calib_args *a) {
  const cli_opt opts[] = {
      {.flag = "--backend", .kind = CLI_O_STR, .to = &a->backend, .key = -1, .arg = "B",
       .help = "cuda (GPUs, or --partitions N SM partitions of one GPU) or cpu"},
      {.flag = "--partitions", .kind = CLI_O_INT, .to = &a->partitions, .key = -1, .lo = 1,
       .hi = 64, .arg = "N", .help = "cuda: measure N green-context SM partitions of one GPU"},
      {.flag = "--ranks", .kind = CLI_O_INT, .to = &a->ranks, .key = -1, .lo = 1, .hi = 64,
       .arg = "N", .help = "ranks, 1..64 (default: the partitions, 2 on cpu, else 1)"},
      {.flag = "--device", .kind = CLI_O_INT, .to = &a->device, .key = -1, .lo = 0, .hi = 1024,
       .arg = "D", .help = "CUDA device, 0..1024 (default 0)"},
      {.flag = "--d-model", .kind = CLI_O_INT, .to = &a->d, .key = -1, .lo = 8, .hi = 1 << 16,
       .arg = "D", .help = "expert shape: model width, 8..65536, a multiple of 8 (default 2048)"},
      {.flag = "--d-ff", .kind = CLI_O_INT, .to = &a->f, .key = -1, .lo = 8, .hi = 1 << 18,
       .arg = "F", .help = "expert FFN width, 8..262144, a multiple of 8 (default 8192)"},
      {.flag = "--reps", .kind = CLI_O_INT, .to = &a->reps, .key = -1, .lo = 1, .hi = 100000,
       .arg = "R", .help = "timed repetitions per point (default 20 on GPUs, 5 on cpu)"},
      {.flag = "--name", .kind = CLI_O_STR, .to = &a->name, .key = -1, .arg = "NAME",
       .help = "profile name (default h200-green-N, cuda-N or cpu-N)"},
      {.kind = CLI_O_STR, .to = &a->db_path, .key = FM_KEY_DB,
       .help = "store the profile as NAME and NAME.cluster in the database (default: none)"},
      {.flag = "--no-db", .kind = CLI_O_BOOL, .to = &a->no_db, .key = -1,
       .help = "store nothing (the default; as --db '')"},
      {.flag = "--out", .kind = CLI_O_STR, .to = &a->out_path, .key = -1, .arg = "P.json",
       .help = "write the profile to P.json and P.cluster.json"},
      CLI_FORMAT_ROW(&a->fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_opts("calibrate", argc, argv, opts, help_head, help_tail);
  if (rc) return rc;
  if (a->no_db || (a->db_path && !a->db_path[0])) a->db_path = NULL;
  if (optind < argc) return cli_fail(CLI_EUSAGE, "calibrate", "unexpected argument '%s'", argv[optind]);
  if (!a->backend) return cli_fail(CLI_EUSAGE, "calibrate", "--backend is required (cuda or cpu)");
  if (a->d % 8 || a->f % 8) return cli_fail(CLI_EUSAGE, "calibrate", "--d-model/--d-ff must be multiples of 8");
  if (a->partitions > 0 && strcmp(a->backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, "calibrate", "--partitions needs --backend cuda");
  if (strcmp(a->backend, "nccl") == 0)
    return cli_fail(CLI_EUSAGE, "calibrate", "--backend nccl: calibrate with cuda (same kernels) and run nccl with that profile");
  return CLI_OK;
}

/* The measurements res on backend b as the simulator's profile *p (whose
 * pl arrays point into *p itself: fill it in place, never copy it). */
static void calib_profile(const calib_args *a, const rt_backend *b, const rt_calib_result *res,
                          fm_profile *p) {
  char name[sizeof p->name];
  if (a->name) snprintf(name, sizeof name, "%s", a->name);
  else if (a->partitions) snprintf(name, sizeof name, "h200-green-%d", a->partitions);
  else snprintf(name, sizeof name, "%s-%d", a->backend, b->ranks);
  fm_profile_from_calib(res, b, name, a->d, a->f, p);
}

/* The profile written to --out and stored as NAME and NAME.cluster with
 * --db, each only when asked for; CLI_OK or CLI_EFAIL with one message. */
static int calib_save(const calib_args *a, const fm_profile *p) {
  char em[1024] = "";
  if (a->out_path && fm_profile_save(p, a->out_path, em, sizeof em))
    return cli_fail(CLI_EFAIL, "calibrate", "--out %s", em);
  if (!a->db_path)
    return CLI_OK;
  st_db *db = NULL;
  if (st_open(&db, a->db_path, ST_WRITE, em, sizeof em)) return cli_fail(CLI_EFAIL, "calibrate", "%s", em);
  char *pj = NULL, *cj = NULL, cname[96];
  int rc = fm_profile_json(p, &pj, &cj);
  snprintf(cname, sizeof cname, "%s.cluster", p->name);
  if (!rc) rc = st_profile_put(db, p->name, pj) || st_profile_put(db, cname, cj);
  free(pj);
  free(cj);
  st_close(db);
  if (rc) return cli_fail(CLI_EFAIL, "calibrate", "%s: cannot store the profile", a->db_path);
  return CLI_OK;
}

/* The measurements as one JSON document on stdout (G ranks); CLI_OK or
 * CLI_EFAIL when it cannot be built. */
static int calib_print_json(const calib_args *a, const fm_profile *p, const rt_calib_result *res,
                            int G) {
  int d = a->d, f = a->f;
  json_t *pts = json_array(), *xs = json_array();
  for (int i = 0; i < res->ntokens; i++) {
    double fl = 4.0 * (double)res->tokens[i] * d * f;
    json_array_append_new(pts, json_pack("{s:I, s:o, s:o, s:o}", "tokens", (json_int_t)res->tokens[i],
                                         "fwd_us", fm_json_number(res->fwd_us[i]), "bwd_us",
                                         fm_json_number(res->bwd_us[i]), "fwd_tflops",
                                         fm_json_number(fl / res->fwd_us[i] * 1e-6)));
  }
  for (int i = 0; i < res->nsizes; i++)
    json_array_append_new(xs, json_pack("{s:o, s:o}", "bytes_per_rank", fm_json_number(res->x_bytes[i]),
                                        "us", fm_json_number(res->x_us[i])));
  json_t *doc = json_pack("{s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                          "name", fm_json_string(p->name), "backend", fm_json_string(a->backend),
                          "device", fm_json_string(p->device), "ranks", G, "d_model", d, "d_ff", f,
                          "ffn", pts, "bwd_ratio", fm_json_number(res->bwd_ratio), "exchange", xs,
                          "exchange_GBps", fm_json_number(res->exchange_GBps),
                          "exchange_latency_us", fm_json_number(res->exchange_latency_us),
                          "local_latency_us", fm_json_number(res->local_lat_us),
                          "local_us_per_row", fm_json_number(res->local_us_per_row), "launch_us",
                          fm_json_number(res->launch_us));
  return cli_json_print("calibrate", doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

/* The measurements as tables on stdout (G ranks), and the files written. */
static void calib_print_table(const calib_args *a, const fm_profile *p, const rt_calib_result *res,
                              int G) {
  int d = a->d, f = a->f;
  printf("calibrate: %s (%s), %d ranks, d_model %d, d_ff %d\n", p->name, p->device, G, d, f);
  printf("%8s %12s %12s %10s %12s\n", "tokens", "fwd_us", "bwd_us", "bwd/fwd", "fwd_GFLOP/s");
  for (int i = 0; i < res->ntokens; i++) {
    double fl = 4.0 * (double)res->tokens[i] * d * f;
    printf("%8" PRId64 " %12.2f %12.2f %10.2f %12.1f\n", res->tokens[i], res->fwd_us[i], res->bwd_us[i],
           res->bwd_us[i] / res->fwd_us[i], fl / res->fwd_us[i] * 1e-3);
  }
  printf("bwd_ratio %.3f (points >= 256 tokens)\n", res->bwd_ratio);
  printf("%14s %12s\n", "bytes/rank", "alltoall_us");
  for (int i = 0; i < res->nsizes; i++) printf("%14.0f %12.2f\n", res->x_bytes[i], res->x_us[i]);
  printf("exchange %.1f GB/s per rank, latency %.2f us; local token movement %.2f us + %.4f us/row;"
         " launch %.2f us per kernel\n",
         res->exchange_GBps, res->exchange_latency_us, res->local_lat_us, res->local_us_per_row,
         res->launch_us);
  if (a->out_path) {
    char cpath[1024];
    fm_profile_cluster_path(a->out_path, cpath, sizeof cpath);
    printf("wrote %s, %s and the .runtime.json beside them\n", a->out_path, cpath);
  }
}

/* flexmoe calibrate ARGS: measures the backend, saves the profile where
 * asked and prints the measurements; CLI_OK, CLI_EUSAGE for a bad command
 * line, CLI_EFAIL (one message printed) for a backend, file or store error. */
int cmd_calibrate(int argc, char **argv) {
  calib_args a = {.d = 2048, .f = 8192, .fmt = CLI_FMT_TABLE};
  int rc = calib_parse(argc, argv, &a);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  rt_backend_config bc = {
      .ranks = a.ranks ? a.ranks : (a.partitions ? a.partitions : (strcmp(a.backend, "cpu") == 0 ? 2 : 1)),
      .partitions = a.partitions, .device = a.device, .timeout_s = 300.0, .direct = 0};
  char err[1024] = "";
  rt_backend *b = NULL;
  if ((rc = rt_backend_create(&b, a.backend, &bc, err, sizeof err)))
    return cli_fail(CLI_EFAIL, "calibrate", "%s", err);
  rt_calib_config cc;
  rt_calib_defaults(&cc, b, a.d, a.f);
  if (a.reps) cc.reps = a.reps;
  rt_calib_result res;
  if (rt_calibrate(b, &cc, &res, err, sizeof err)) {
    rt_backend_destroy(b);
    return cli_fail(CLI_EFAIL, "calibrate", "%s", err);
  }
  fm_profile p;
  calib_profile(&a, b, &res, &p);
  int G = b->ranks;
  rt_backend_destroy(b);
  if ((rc = calib_save(&a, &p)))
    return rc;
  if (a.fmt == CLI_FMT_JSON)
    return calib_print_json(&a, &p, &res, G);
  calib_print_table(&a, &p, &res, G);
  return CLI_OK;
}
