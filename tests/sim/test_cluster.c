/* Cluster presets and files; compute profiles. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "placement/pl_cluster.h"
#include "placement/pl_error.h"
#include "placement/pl_memory.h"
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

/* A cluster file with one number replaced (key = "intra.bandwidth_GBps"
 * style, value as JSON text). */
static const char *cluster_with(const char *key, const char *value) {
  static char text[1024];
  const char *v[8] = {"2", "8", "80", "1", "450", "2", "50", "5"};
  const char *o = "1";
  static const char *const keys[] = {"nodes", "gpus_per_node", "gpu.hbm_gib",
                                     "gpu.compute_scale", "intra.bandwidth_GBps",
                                     "intra.latency_us", "inter.bandwidth_GBps",
                                     "inter.latency_us"};
  for (int i = 0; i < 8; i++)
    if (strcmp(key, keys[i]) == 0)
      v[i] = value;
  if (strcmp(key, "inter.oversubscription") == 0)
    o = value;
  snprintf(text, sizeof(text),
           "{\"nodes\": %s, \"gpus_per_node\": %s, \"gpu\": {\"profile\": \"h100\", "
           "\"hbm_gib\": %s, \"compute_scale\": %s}, \"intra\": {\"bandwidth_GBps\": %s, "
           "\"latency_us\": %s}, \"inter\": {\"bandwidth_GBps\": %s, \"latency_us\": %s, "
           "\"oversubscription\": %s}}",
           v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], o);
  return write_tmp("range.json", text);
}

Test(cluster, every_number_outside_its_physical_range_is_refused_naming_key_and_range) {
  static const struct {
    const char *key, *value, *range;
  } bad[] = {
      {"inter.oversubscription", "1e300", "between 1 and 1000"},
      {"inter.oversubscription", "1000.5", "between 1 and 1000"},
      {"inter.oversubscription", "0.5", "between 1 and 1000"},
      {"intra.bandwidth_GBps", "1e-300", "between 0.001 and 100000"},
      {"intra.bandwidth_GBps", "4.9e-324", "between 0.001 and 100000"},
      {"intra.bandwidth_GBps", "0", "between 0.001 and 100000"},
      {"inter.bandwidth_GBps", "1e300", "between 0.001 and 100000"},
      {"intra.latency_us", "1e300", "between 0 and 1e+06"},
      {"inter.latency_us", "-1", "between 0 and 1e+06"},
      {"gpu.hbm_gib", "1e300", "between 0.001 and 1e+06"},
      {"gpu.hbm_gib", "1e-300", "between 0.001 and 1e+06"},
      {"gpu.compute_scale", "1e-300", "between 0.001 and 1000"},
      {"gpu.compute_scale", "1e300", "between 0.001 and 1000"},
  };
  sim_cluster c;
  sim_errbuf e;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *path = cluster_with(bad[i].key, bad[i].value);
    cr_assert_eq(sim_cluster_load(path, &c, &e), SIM_ERANGE, "%s = %s", bad[i].key,
                 bad[i].value);
    cr_assert(strstr(e.msg, bad[i].key) && strstr(e.msg, bad[i].range), "%s = %s: '%s'",
              bad[i].key, bad[i].value, e.msg);
    unlink(path);
  }
  /* the counts: named with their range too */
  const char *path = cluster_with("nodes", "70000");
  cr_assert_eq(sim_cluster_load(path, &c, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "'nodes'") && strstr(e.msg, "between 1 and 65536"), "%s", e.msg);
  cr_assert_eq(sim_cluster_preset("dgx-h100", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_resize(&c, -3, 0, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "nodes must be between 1 and 65536 (got -3)"), "%s", e.msg);
  cr_assert_eq(sim_cluster_resize(&c, 0, 70000, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "gpus_per_node must be between 1 and 65536"), "%s", e.msg);
  unlink(path);
}

/* The optional string keys: a string is kept, any other JSON type is
 * refused naming the key (never printed as "(null)" or dropped silently). */
Test(cluster, optional_string_keys_of_another_type_are_refused_naming_the_key) {
  static const char *const fmt =
      "{%s\"nodes\": 2, \"gpus_per_node\": 8, \"gpu\": {\"profile\": \"h100\", "
      "\"hbm_gib\": 80}, \"intra\": {\"bandwidth_GBps\": 450, \"latency_us\": 2}, "
      "\"inter\": {\"bandwidth_GBps\": 50, \"latency_us\": 5, \"oversubscription\": 1}}";
  char text[1024];
  sim_cluster c;
  sim_errbuf e;
  snprintf(text, sizeof(text), fmt, "\"name\": \"x\", \"description\": \"two DGX\", ");
  const char *path = write_tmp("strkeys.json", text);
  cr_assert_eq(sim_cluster_load(path, &c, &e), SIM_OK, "%s", e.msg);
  cr_assert_str_eq(c.name, "x");
  cr_assert_str_eq(c.description, "two DGX");
  unlink(path);
  static const char *const keys[] = {"name", "description"};
  static const char *const values[] = {"5", "1.5", "true", "null", "[\"a\"]", "{}"};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
      char kv[64];
      snprintf(kv, sizeof(kv), "\"%s\": %s, ", keys[k], values[i]);
      snprintf(text, sizeof(text), fmt, kv);
      path = write_tmp("strkeys.json", text);
      cr_assert_eq(sim_cluster_load(path, &c, &e), SIM_EKEY, "%s%s", kv, e.msg);
      char want[64];
      snprintf(want, sizeof(want), "key '%s' must be a string", keys[k]);
      cr_assert(strstr(e.msg, want) && strstr(e.msg, path), "%s: '%s'", kv, e.msg);
      unlink(path);
    }
}

/* The GPU-count limits are inclusive at 65,536: as nodes of one GPU, as
 * GPUs of one node, and one past either end is refused naming the count. */
Test(cluster, exactly_65536_gpus_are_accepted_either_way_and_one_more_is_refused) {
  sim_cluster c;
  sim_errbuf e;
  cr_assert_eq(sim_cluster_preset("dgx-h100", &c, &e), SIM_OK);
  cr_assert_eq(sim_cluster_resize(&c, 65536, 1, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(c.nodes, 65536);
  cr_assert_eq(sim_cluster_gpus(&c), 65536);
  cr_assert_eq(sim_cluster_check(&c, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(sim_cluster_resize(&c, 1, 65536, &e), SIM_OK, "%s", e.msg);
  cr_assert_eq(sim_cluster_gpus(&c), 65536);
  sim_cluster big = c;
  big.nodes = 65537;
  big.gpus_per_node = 1;
  cr_assert_eq(sim_cluster_check(&big, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "nodes must be between 1 and 65536 (got 65537)"), "%s", e.msg);
  cr_assert_eq(sim_cluster_resize(&c, 65537, 1, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "nodes must be between 1 and 65536 (got 65537)"), "%s", e.msg);
  cr_assert_eq(sim_cluster_resize(&c, 1, 65537, &e), SIM_ERANGE);
  cr_assert(strstr(e.msg, "gpus_per_node must be between 1 and 65536 (got 65537)"), "%s", e.msg);
  cr_assert_eq(sim_cluster_gpus(&c), 65536, "a refused resize leaves the cluster as it was");
}

/* A resize's own arguments are range-checked before any cluster rule, so
 * the error names the argument that is out of range: also on a
 * green-context preset, whose one-node rule a bad count would otherwise
 * hide behind. */
Test(cluster, a_resize_argument_out_of_range_is_named_before_the_clusters_rules) {
  static const char *const presets[] = {"dgx-h100", "pcie-a100", "h200-green-4"};
  static const int bad[] = {-1, -65536, 65537, 1 << 30};
  sim_cluster c;
  sim_errbuf e;
  char want[128];
  for (size_t p = 0; p < 3; p++)
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      cr_assert_eq(sim_cluster_preset(presets[p], &c, &e), SIM_OK);
      sim_cluster before = c;
      cr_assert_eq(sim_cluster_resize(&c, 2, bad[i], &e), SIM_ERANGE);
      snprintf(want, sizeof(want), "gpus_per_node must be between 1 and 65536 (got %d)", bad[i]);
      cr_assert(strstr(e.msg, want), "%s, 2 x %d: '%s'", presets[p], bad[i], e.msg);
      cr_assert_eq(sim_cluster_resize(&c, bad[i], 2, &e), SIM_ERANGE);
      snprintf(want, sizeof(want), "nodes must be between 1 and 65536 (got %d)", bad[i]);
      cr_assert(strstr(e.msg, want), "%s, %d x 2: '%s'", presets[p], bad[i], e.msg);
      cr_assert_eq(memcmp(&c, &before, sizeof(c)), 0, "%s: a refused resize changed it",
                   presets[p]);
    }
}

Test(cluster, the_ends_of_every_range_are_accepted_and_give_a_valid_planner_view) {
  static const struct {
    const char *key, *value;
  } ok[] = {
      {"inter.oversubscription", "1000"}, {"inter.oversubscription", "1"},
      {"intra.bandwidth_GBps", "0.001"},  {"intra.bandwidth_GBps", "100000"},
      {"inter.bandwidth_GBps", "0.001"},  {"intra.latency_us", "0"},
      {"inter.latency_us", "1000000"},    {"gpu.hbm_gib", "0.001"},
      {"gpu.hbm_gib", "1000000"},         {"gpu.compute_scale", "0.001"},
      {"gpu.compute_scale", "1000"},
  };
  sim_cluster c;
  sim_errbuf e;
  pl_cluster pc;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    const char *path = cluster_with(ok[i].key, ok[i].value);
    cr_assert_eq(sim_cluster_load(path, &c, &e), SIM_OK, "%s = %s: %s", ok[i].key, ok[i].value,
                 e.msg);
    sim_cluster_to_pl(&c, 4, &pc);
    cr_assert_eq(pl_cluster_check(&pc), 0, "%s = %s", ok[i].key, ok[i].value);
    unlink(path);
  }
  /* the narrowest link there is: one 1 MB/s NIC per node shared by 65,536
   * GPUs behind a 1000x oversubscribed switch */
  cr_assert_eq(sim_cluster_preset("pcie-a100", &c, &e), SIM_OK);
  c.inter_GBps = SIM_BW_MIN_GBPS;
  c.oversub = SIM_OVERSUB_MAX;
  cr_assert_eq(sim_cluster_resize(&c, 1, SIM_MAX_GPUS, &e), SIM_OK, "%s", e.msg);
  sim_cluster_to_pl(&c, 1, &pc);
  cr_assert_eq(pl_cluster_check(&pc), 0);
}

Test(cluster, planner_view_refuses_nan_infinite_and_extreme_links) {
  pl_cluster ok = {.gpus = 16, .gpus_per_node = 8, .slots = 2, .intra_Bps = 450e9,
                   .intra_lat_s = 2e-6, .inter_Bps = 50e9, .inter_lat_s = 5e-6, .oversub = 1};
  cr_assert_eq(pl_cluster_check(&ok), 0);
  double bad[] = {NAN, INFINITY, -INFINITY, 1e300, 1e-300, 0};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    pl_cluster c = ok;
    c.intra_Bps = bad[i];
    cr_assert_neq(pl_cluster_check(&c), 0, "intra_Bps %g", bad[i]);
    c = ok;
    c.inter_Bps = bad[i];
    cr_assert_neq(pl_cluster_check(&c), 0, "inter_Bps %g", bad[i]);
    c = ok;
    c.oversub = bad[i];
    cr_assert_neq(pl_cluster_check(&c), 0, "oversub %g", bad[i]);
  }
  double bad_lat[] = {NAN, INFINITY, 1.5, -1e-300};
  for (size_t i = 0; i < sizeof(bad_lat) / sizeof(bad_lat[0]); i++) {
    pl_cluster c = ok;
    c.inter_lat_s = bad_lat[i];
    cr_assert_neq(pl_cluster_check(&c), 0, "inter_lat_s %g", bad_lat[i]);
    c = ok;
    c.intra_lat_s = bad_lat[i];
    cr_assert_neq(pl_cluster_check(&c), 0, "intra_lat_s %g", bad_lat[i]);
  }
}

/* Finding: hbm_gib 1e300 became inf bytes, inf - inf / 2 a NaN, and the
 * NaN was cast to an int. Slots from memory: a hand case, then every
 * non-finite or hostile input is an error and *slots is never touched. */
Test(memory, slots_from_hbm_are_exact_and_nan_or_infinite_memory_is_an_error) {
  pl_model m = {.d_model = 1024, .d_ff = 4096, .top_k = 2, .bytes_per_elem = 2,
                .optimizer_bytes_per_param = 12};
  /* a replica: 2 x 1024 x 4096 params x (2 + 12 + 2) bytes = 128 MiB */
  double replica = 2.0 * 1024 * 4096 * 16;
  int slots = -7;
  cr_assert_eq(pl_slots_from_memory(&m, 10.5 * replica, 0, 64, 8, &slots), PL_OK);
  cr_assert_eq(slots, 10);
  cr_assert_eq(pl_slots_from_memory(&m, 1e6 * 1073741824.0, 5e5 * 1073741824.0, 64, 8, &slots),
               PL_OK);
  cr_assert_eq(slots, 64, "capped at the experts");
  cr_assert_eq(pl_slots_from_memory(&m, 7.9 * replica, 0, 64, 8, &slots), PL_ESLOTS);
  cr_assert_eq(pl_slots_from_memory(&m, replica, 2 * replica, 64, 8, &slots), PL_ESLOTS,
               "reserve above the memory");
  slots = -7;
  double hbm[] = {NAN, INFINITY, -INFINITY, 1e300 * 1073741824.0, 0, -1};
  for (size_t i = 0; i < sizeof(hbm) / sizeof(hbm[0]); i++) {
    cr_assert_eq(pl_slots_from_memory(&m, hbm[i], 0.5 * hbm[i], 64, 8, &slots), PL_EINVAL,
                 "hbm %g", hbm[i]);
    if (hbm[i] != 0) /* a reserve of 0 is fine */
      cr_assert_eq(pl_slots_from_memory(&m, 80e9, hbm[i], 64, 8, &slots), PL_EINVAL,
                   "reserve %g", hbm[i]);
  }
  m.optimizer_bytes_per_param = NAN;
  cr_assert_eq(pl_slots_from_memory(&m, 80e9, 0, 64, 8, &slots), PL_EINVAL);
  cr_assert_eq(slots, -7, "untouched on error");
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

/* A profile file's numbers have physical ranges too: a backward ratio of
 * 1e300 or a time of 1e300 us made every later time infinite. The error
 * names the key and the range; the ends of the ranges load. */
Test(profile, numbers_outside_their_ranges_are_refused_naming_key_and_range) {
  static const struct {
    const char *bwd, *nonmoe, *tokens, *us, *msg;
  } cases[] = {
      {"1e300", "1.3", "16", "5", "'bwd_ratio' must be a number between 0.01 and 100"},
      {"0.001", "1.3", "16", "5", "'bwd_ratio' must be a number between 0.01 and 100"},
      {"2", "1e300", "16", "5", "'nonmoe_factor' must be a number between 0 and 100"},
      {"2", "1.3", "1e300", "5", "shapes[0].tokens must be between 1 and 1.09951e+12"},
      {"2", "1.3", "0.5", "5", "shapes[0].tokens must be between 1 and 1.09951e+12"},
      {"2", "1.3", "16", "1e300", "shapes[0].us[0] must be a time between 0 and 1e+09 us"},
      {"100", "100", "1099511627776", "1e9", NULL},
      {"0.01", "0", "1", "0", NULL},
  };
  sim_profile p;
  sim_errbuf e;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[512];
    snprintf(text, sizeof(text),
             "{\"name\": \"x\", \"bwd_ratio\": %s, \"nonmoe_factor\": %s, \"shapes\": "
             "[{\"d_model\": 8, \"d_ff\": 8, \"tokens\": [%s], \"us\": [%s]}]}",
             cases[i].bwd, cases[i].nonmoe, cases[i].tokens, cases[i].us);
    const char *path = write_tmp("rangeprof.json", text);
    int rc = sim_profile_load(path, &p, &e);
    if (!cases[i].msg) {
      cr_assert_eq(rc, SIM_OK, "case %zu: %s", i, e.msg);
    } else {
      cr_assert_eq(rc, SIM_ERANGE, "case %zu", i);
      cr_assert(strstr(e.msg, cases[i].msg), "case %zu: '%s'", i, e.msg);
    }
    unlink(path);
  }
}
