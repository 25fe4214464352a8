/* What the CLI's subcommands used to compute themselves and now call in
 * the run library (issue 15: cli/ only parses and prints): strict value
 * parsing, the trace generator's model options, clusters sized and flows
 * run on them, sweep sizes in nodes, the runs of a comparison, the
 * replay's check verdict. Each against hand cases and the sentences the
 * CLI prints. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "placement/pl_policy.h"
#include "run/fm_cluster.h"
#include "run/fm_error.h"
#include "run/fm_parse.h"
#include "run/fm_replay.h"
#include "run/fm_sim_json.h"
#include "run/fm_sweep.h"
#include "run/fm_trace.h"

/* A memory size: bytes or K/M/G/T; anything else names the flag and the
 * accepted forms, the output untouched. */
Test(fm_parse, sizes_take_a_unit_or_bytes) {
  char em[256] = "";
  uint64_t v = 7;
  cr_assert_eq(fm_parse_size("--max-memory", "512M", &v, em, sizeof em), FM_OK);
  cr_assert_eq(v, UINT64_C(512) << 20);
  cr_assert_eq(fm_parse_size("--max-memory", "4Q", &v, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--max-memory: '4Q' is not a size between 1 byte and 1 EiB (bytes, or a "
                       "number with K, M, G or T: 512M, 4G)");
  cr_assert_eq(v, UINT64_C(512) << 20);
  cr_assert_eq(fm_parse_size("--max-memory", NULL, &v, em, sizeof em), FM_EUSAGE);
}

Test(fm_parse, integers_are_whole_decimal_and_in_range) {
  char em[256] = "";
  long v = 7;
  cr_assert_eq(fm_parse_long("--n", "42", 1, 64, &v, em, sizeof em), FM_OK);
  cr_assert_eq(v, 42);
  const char *bad[] = {"", " 4", "+4", "4x", "0x10", "4.0", NULL};
  for (int i = 0; bad[i]; i++) {
    cr_assert_eq(fm_parse_long("--n", bad[i], 1, 64, &v, em, sizeof em), FM_EUSAGE, "%s", bad[i]);
    cr_assert_eq(v, 42); /* untouched on error */
  }
  cr_assert_str_eq(em, "--n: '4.0' is not an integer between 1 and 64");
  cr_assert_eq(fm_parse_long("--n", "65", 1, 64, &v, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--n: 65 is out of range: must be between 1 and 64");
  cr_assert_eq(fm_parse_long("--n", "99999999999999999999", 1, LONG_MAX, &v, em, sizeof em),
               FM_EUSAGE); /* overflow is out of range, not a wrapped value */
  cr_assert(strstr(em, "is out of range") != NULL);
}

Test(fm_parse, numbers_refuse_nan_overflow_and_trailing_bytes) {
  char em[256];
  double d = 1;
  cr_assert_eq(fm_parse_double("--x", "0.25", 0, 1, &d, em, sizeof em), FM_OK);
  cr_assert_float_eq(d, 0.25, 1e-15);
  cr_assert_eq(fm_parse_double("--x", "nan", 0, 1, &d, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--x: 'nan' is not a number between 0 and 1");
  cr_assert_eq(fm_parse_double("--x", "1e999", 0, 1e300, &d, em, sizeof em), FM_EUSAGE);
  cr_assert_eq(fm_parse_double("--x", "0.5s", 0, 1, &d, em, sizeof em), FM_EUSAGE);
  cr_assert_float_eq(d, 0.25, 1e-15);
}

Test(fm_parse, ranges_lists_and_pairs) {
  char em[256];
  int64_t a = 9, b = 9;
  cr_assert_eq(fm_parse_range("--it", "10:", &a, &b, em, sizeof em), FM_OK);
  cr_assert(a == 10 && b == -1);
  cr_assert_eq(fm_parse_range("--it", ":5", &a, &b, em, sizeof em), FM_OK);
  cr_assert(a == 0 && b == 5);
  cr_assert_eq(fm_parse_range("--it", "5:5", &a, &b, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--it: empty range '5:5'");
  cr_assert_eq(fm_parse_range("--it", "5", &a, &b, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--it: '5' is not a range A:B");
  long v[4];
  int n = 0;
  cr_assert_eq(fm_parse_list("--gpus", "8,16,64", 1, 1024, v, 4, &n, em, sizeof em), FM_OK);
  cr_assert(n == 3 && v[0] == 8 && v[1] == 16 && v[2] == 64);
  cr_assert_eq(fm_parse_list("--gpus", "8,", 1, 1024, v, 4, &n, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--gpus: malformed list '8,'");
  cr_assert_eq(fm_parse_list("--gpus", "1,2,3,4,5", 1, 1024, v, 4, &n, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--gpus: more than 4 values");
  double x = 0, y = 3;
  cr_assert_eq(fm_parse_pair("--hot", "2", 0, 16, &x, -20, 20, &y, em, sizeof em), FM_OK);
  cr_assert(x == 2 && y == 3); /* no ':' part: the second keeps its value */
  cr_assert_eq(fm_parse_pair("--hot", "2:1.5", 0, 16, &x, -20, 20, &y, em, sizeof em), FM_OK);
  cr_assert_float_eq(y, 1.5, 1e-15);
  cr_assert_eq(fm_parse_pair("--r", "2:1", 0, 16, &x, 0, 0, NULL, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--r: '2:1' takes no ':' part");
}

/* The model options on top of a pattern: each sets its own parameters; the
 * first error stops with the flag's sentence. */
Test(fm_trace_gen, model_options_set_their_parameters) {
  char out[] = "/tmp/fm_face_genXXXXXX";
  int fd = mkstemp(out);
  cr_assert(fd >= 0);
  close(fd);
  fm_trace_gen_config cfg = {.pattern = "balanced", .out = out, .iterations = 4, .seed = 1,
                             .layers = -1, .ranks = -1, .experts = -1, .tokens_per_rank = -1,
                             .top_k = -1};
  fm_trace_gen g;
  char em[512];
  cr_assert_eq(fm_trace_gen_prepare(&cfg, &g, em, sizeof em), FM_OK, "%s", em);
  const char *text[FM_GEN_NOPTS] = {[FM_GEN_DIST] = "zipf:1.2", [FM_GEN_DRIFT] = "0.1:0.9",
                                    [FM_GEN_HOT] = "2:1.5", [FM_GEN_ROTATE] = "5"};
  cr_assert_eq(fm_trace_gen_options(&g, text, em, sizeof em), FM_OK, "%s", em);
  cr_assert_eq(g.gen.dist, TR_DIST_ZIPF);
  cr_assert_float_eq(g.gen.dist_param, 1.2, 1e-12);
  cr_assert_float_eq(g.gen.innov1, 0.1, 1e-12);
  cr_assert_float_eq(g.gen.phi1, 0.9, 1e-12);
  cr_assert(g.gen.hot == 2 && g.gen.rotate_period == 5);
  const char *bad[FM_GEN_NOPTS] = {[FM_GEN_DRIFT] = "0.1:7", [FM_GEN_BURST] = "x"};
  cr_assert_eq(fm_trace_gen_options(&g, bad, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--drift: 7 is out of range: must be between 0 and 1");
  const char *dist[FM_GEN_NOPTS] = {[FM_GEN_DIST] = "pareto"};
  cr_assert_eq(fm_trace_gen_options(&g, dist, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--dist: 'pareto' is not one of uniform zipf lognormal dirichlet");
  fm_trace_gen_fini(&g);
  remove(out);
}

Test(fm_cluster, opened_resized_and_flows_finish) {
  sim_cluster cl;
  char em[512];
  cr_assert_eq(fm_cluster_open("dgx-h100", 16, 0, 0, &cl, em, sizeof em), FM_OK, "%s", em);
  cr_assert(cl.nodes == 2 && cl.gpus_per_node == 8);
  cr_assert_eq(fm_cluster_open("no-such-cluster", 0, 0, 0, &cl, em, sizeof em), FM_EFAIL);
  cr_assert_eq(fm_cluster_open("dgx-h100", 12, 0, 0, &cl, em, sizeof em), FM_EUSAGE);
  char path[] = "/tmp/fm_face_flowsXXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("src_gpu,dst_gpu,bytes\n0,1,1000000000\n0,8,1000000000\n", f);
  fclose(f);
  fm_net_result r;
  cr_assert_eq(fm_net_run("dgx-h100", path, 0, 2, 0, &r, em, sizeof em), FM_OK, "%s", em);
  cr_assert_eq(r.nflows, 2);
  /* the inter-node flow is the slower one and sets the makespan */
  cr_assert_gt(r.flows[1].finish_ns, r.flows[0].finish_ns);
  cr_assert_eq(r.makespan_ns, r.flows[1].finish_ns);
  fm_net_result_fini(&r);
  remove(path);
}

Test(fm_sweep, sizes_in_nodes_need_one_gpus_per_node) {
  long nodes[] = {1, 4}, sizes[2] = {0, 0};
  char em[512];
  const char *one[] = {"dgx-h100"};
  cr_assert_eq(fm_sweep_sizes_of_nodes(one, 1, 0, nodes, 2, sizes, em, sizeof em), FM_OK);
  cr_assert(sizes[0] == 8 && sizes[1] == 32);
  cr_assert_eq(fm_sweep_sizes_of_nodes(one, 1, 2, nodes, 2, sizes, em, sizeof em), FM_OK);
  cr_assert(sizes[0] == 2 && sizes[1] == 8);
  const char *two[] = {"dgx-h100", "h200-green-4"};
  cr_assert_eq(fm_sweep_sizes_of_nodes(two, 2, 0, nodes, 2, sizes, em, sizeof em), FM_EUSAGE);
  cr_assert(strstr(em, "GPUs per node; give --gpus, or --gpus-per-node") != NULL, "%s", em);
}

Test(fm_sim, compare_adds_static_as_the_reference) {
  int reg = 0;
  for (const pl_policy_ops *const *r = pl_policy_registry(); *r; r++)
    reg++;
  const char *a[] = {"flexmoe", "eplb"}, *b[] = {"static", "flexmoe"};
  cr_assert_eq(fm_sim_compare_runs(a, 2), 3);
  cr_assert_eq(fm_sim_compare_runs(b, 2), 2);
  cr_assert_eq(fm_sim_compare_runs(NULL, 0), reg);
}

Test(fm_replay, check_verdict_uses_the_backend_tolerance) {
  fm_replay_config cpu = FM_REPLAY_CONFIG_INIT, gpu = FM_REPLAY_CONFIG_INIT;
  gpu.backend = "cuda";
  fm_replay_output o;
  memset(&o, 0, sizeof o);
  cr_assert(fm_replay_check_ok(&cpu, &o)); /* not checked */
  o.checked = 1;
  o.check.out_err = 1e-3;
  cr_assert(!fm_replay_check_ok(&cpu, &o));
  cr_assert(fm_replay_check_ok(&gpu, &o));
  o.check.tokens_missing = 1;
  cr_assert(!fm_replay_check_ok(&gpu, &o));
}
