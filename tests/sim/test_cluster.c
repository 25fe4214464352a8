/* Cluster presets and files; compute profiles. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim/sim_cluster.h"
#include "sim/sim_error.h"
#include "sim/sim_profile.h"

static const char *write_tmp(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof(path), "/tmp/flexmoe-test-%d-%s", (int)getpid(), name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

Test(cluster, presets_carry_the_design_numbers) {
  sim_cluster c;
  sim_errbuf e;
  cr_assert_eq(sim_cluster_preset("dgx-a100", &c, &e), SIM_OK);
  cr_assert_eq(c.gpus_per_node, 8);
  cr_assert_float_eq(c.intra_GBps, 300, 1e-12);
  cr_assert_float_eq(c.inter_GBps * 8, 200.0, 1e-12, "8 x 200 Gb/s = 8 x 25 GB/s");
  cr_assert_eq(sim_cluster_preset("dgx-h100", &c, &e), SIM_OK);
  cr_assert_float_eq(c.intra_GBps, 450, 1e-12);
  cr_assert_float_eq(c.inter_GBps, 50, 1e-12);
  cr_assert_eq(sim_cluster_preset("h200-green-4", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_gpus(&c), 4);
  cr_assert_float_eq(c.compute_scale, 132.0 / 32 * 1.02, 1e-12);
  cr_assert_eq(sim_cluster_preset("pcie-a100", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_preset("dgx-b300", &c, &e), SIM_ENOENT);
  cr_assert(strstr(e.msg, "dgx-b300") != NULL);
}

Test(cluster, resize_and_planner_view) {
  sim_cluster c;
  sim_errbuf e;
  pl_cluster pc;
  cr_assert_eq(sim_cluster_preset("pcie-a100", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_resize(&c, 4, 0, &e), SIM_OK);
  cr_assert_eq(sim_cluster_gpus(&c), 32);
  sim_cluster_to_pl(&c, 2, &pc);
  cr_assert_eq(pl_cluster_check(&pc), 0);
  cr_assert_float_eq(pc.inter_Bps, 25e9 / 8, 1, "one NIC per node: each GPU gets 1/8");
  cr_assert_eq(sim_cluster_preset("h200-green-4", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_resize(&c, 2, 0, &e), SIM_ERANGE, "one GPU has one node");
  cr_assert_eq(sim_cluster_preset("dgx-h100", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_resize(&c, 10000, 8, &e), SIM_ERANGE);
}

Test(cluster, json_file_round_trips_and_bad_keys_are_named) {
  sim_cluster c, d;
  sim_errbuf e;
  const char *ok = write_tmp("star16.json",
                             "{\"name\": \"star16\", \"nodes\": 16, \"gpus_per_node\": 1, "
                             "\"gpu\": {\"profile\": \"h200\", \"hbm_gib\": 141}, "
                             "\"intra\": {\"bandwidth_GBps\": 450, \"latency_us\": 2}, "
                             "\"inter\": {\"bandwidth_GBps\": 50, \"latency_us\": 5, "
                             "\"oversubscription\": 1.0}}");
  cr_assert_eq(sim_cluster_resolve(ok, &c, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(sim_cluster_gpus(&c), 16);
  cr_assert_str_eq(c.name, "star16");
  char buf[2048];
  cr_assert_gt(sim_cluster_json(&c, buf, sizeof(buf)), 0);
  const char *again = write_tmp("again.json", buf);
  cr_assert_eq(sim_cluster_load(again, &d, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);

  const char *typo = write_tmp("typo.json",
                               "{\"nodes\": 2, \"gpus_per_node\": 8, \"gpu\": {\"profile\": "
                               "\"h100\", \"hbm_gib\": 80}, \"intra\": {\"bandwidth_GBps\": 450, "
                               "\"latency_us\": 2}, \"inter\": {\"bandwith_GBps\": 50, "
                               "\"latency_us\": 5, \"oversubscription\": 1}}");
  cr_assert_eq(sim_cluster_load(typo, &c, &e), SIM_EKEY);
  cr_assert(strstr(e.msg, "inter.bandwith_GBps") && strstr(e.msg, typo), "%s", e.msg);

  const char *neg = write_tmp("neg.json",
                              "{\"nodes\": 2, \"gpus_per_node\": 8, \"gpu\": {\"profile\": "
                              "\"h100\", \"hbm_gib\": 80}, \"intra\": {\"bandwidth_GBps\": -4, "
                              "\"latency_us\": 2}, \"inter\": {\"bandwidth_GBps\": 50, "
                              "\"latency_us\": 5, \"oversubscription\": 1}}");
  cr_assert_eq(sim_cluster_load(neg, &c, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "intra.bandwidth_GBps"), "%s", e.msg);

  const char *broken = write_tmp("broken.json", "{\"nodes\": 2,\n  \"gpus_per_node\": }");
  cr_assert_eq(sim_cluster_load(broken, &c, &e), SIM_EFORMAT);
  cr_assert(strstr(e.msg, ":2:"), "line number in '%s'", e.msg);
  unlink(ok);
  unlink(again);
  unlink(typo);
  unlink(neg);
  unlink(broken);
}

Test(profile, h200_is_the_calibration_table_and_other_shapes_scale_by_flops) {
  sim_profile p;
  sim_pl_profile out;
  cr_assert_eq(sim_profile_builtin("h200", &p, NULL), SIM_OK);
  cr_assert_eq(sim_profile_for_shape(&p, 2048, 8192, 1024, 1.0, &out), SIM_OK);
  cr_assert_float_eq(pl_ffn_us(&out.pl, 1024), 93.27, 1e-9);
  cr_assert_float_eq(pl_ffn_us(&out.pl, 4096), 332.14, 1e-9);
  /* 3/4 of the FLOPs of 2048x8192 (the nearest shape): 3/4 of its time */
  cr_assert_eq(sim_profile_for_shape(&p, 2048, 6144, 1024, 1.0, &out), SIM_OK);
  cr_assert_eq(out.shape_index, 1);
  cr_assert_float_eq(pl_ffn_us(&out.pl, 4096), 332.14 * 0.75, 1e-9);
  /* A100: same curve, 989/312 slower; partitions: times compute_scale */
  cr_assert_eq(sim_profile_builtin("a100", &p, NULL), SIM_OK);
  cr_assert_eq(sim_profile_for_shape(&p, 2048, 8192, 1024, 2.0, &out), SIM_OK);
  cr_assert_float_eq(pl_ffn_us(&out.pl, 4096), 332.14 * 989.0 / 312.0 * 2.0, 1e-6);
  cr_assert_gt(out.pl.nonmoe_us, 0);
}

Test(profile, json_round_trip_and_errors_name_the_key) {
  sim_profile p, q;
  sim_errbuf e;
  cr_assert_eq(sim_profile_builtin("h100", &p, NULL), SIM_OK);
  char path[256];
  snprintf(path, sizeof(path), "/tmp/flexmoe-test-%d-prof.json", (int)getpid());
  cr_assert_eq(sim_profile_save(&p, path, &e), SIM_OK);
  cr_assert_eq(sim_profile_load(path, &q, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(q.nshapes, 3);
  cr_assert_float_eq(q.shapes[1].us[3], 93.27, 1e-9);
  unlink(path);
  const char *bad = write_tmp("badprof.json",
                              "{\"name\": \"x\", \"bwd_ratio\": 2, \"shapes\": [{\"d_model\": 8, "
                              "\"d_ff\": 8, \"tokens\": [16, 8], \"us\": [1, 2]}]}");
  cr_assert_eq(sim_profile_load(bad, &q, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "shapes[0].tokens"), "%s", e.msg);
  unlink(bad);
}
