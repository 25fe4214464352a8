/* The shared sim runner: pack/unpack round trip, config keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simrun.h"

static const char *sample(void) {
  static char p[1024];
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  snprintf(p, sizeof(p), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy", root);
  return p;
}

Test(simrun, pack_unpack_gives_back_the_same_output) {
  cli_sim_config c = CLI_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = "flexmoe";
  c.engine = "des";
  c.nodes = 2;
  c.it_end = 30;
  char err[512];
  cli_sim_output *o = NULL, *back = NULL;
  cr_assert_eq(cli_sim_compute(&c, &o, err, sizeof(err)), 0, "%s", err);
  void *buf = NULL, *buf2 = NULL;
  size_t len = 0, len2 = 0;
  cr_assert_eq(cli_sim_pack(o, &buf, &len), 0);
  cr_assert_eq(cli_sim_unpack(buf, len, &back), 0);
  cr_assert_eq(cli_sim_pack(back, &buf2, &len2), 0);
  cr_assert_eq(len, len2);
  cr_assert_eq(memcmp(buf, buf2, len), 0);
  cr_assert_eq(memcmp(cli_sim_summary_of(o), cli_sim_summary_of(back), sizeof(cli_sim_summary)), 0);
  cr_assert_eq(cli_sim_summary_of(back)->iterations, 30);
  /* a truncated image is refused */
  cli_sim_output *bad = NULL;
  cr_assert_neq(cli_sim_unpack(buf, len - 1, &bad), 0);
  cr_assert_null(bad);
  free(buf);
  free(buf2);
  cli_sim_output_free(o);
  cli_sim_output_free(back);
}

Test(simrun, config_key_is_stable_and_tells_configurations_apart) {
  cli_sim_config c = CLI_SIM_CONFIG_INIT;
  c.trace_path = sample();
  c.policy = "capacity";
  char a[128], b[128], d[128], err[512];
  cr_assert_eq(cli_sim_config_key(&c, a, sizeof(a), err, sizeof(err)), 0, "%s", err);
  c.policy = "capacity:cf=1.0,drop=1"; /* the defaults, spelled out: same config */
  cr_assert_eq(cli_sim_config_key(&c, b, sizeof(b), err, sizeof(err)), 0, "%s", err);
  cr_assert_str_eq(a, b);
  c.nodes = 2;
  cr_assert_eq(cli_sim_config_key(&c, d, sizeof(d), err, sizeof(err)), 0, "%s", err);
  cr_assert_str_neq(a, d);
  c.policy = "nosuch";
  cr_assert_neq(cli_sim_config_key(&c, d, sizeof(d), err, sizeof(err)), 0);
  cr_assert(strstr(err, "nosuch"), "%s", err);
}
