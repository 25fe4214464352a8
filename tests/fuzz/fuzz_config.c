/*
 * fuzz_config.c - libFuzzer targets of the configuration readers (one
 * source, FUZZ_WHAT picks): a cluster JSON file (then checked, resized and
 * printed as the simulator does), a compute profile JSON file (then scaled
 * to a model shape), and a policy spec (created on a small environment,
 * planned and routed for two iterations, its parameters looked up).
 */
#include <stdint.h>

#include "fuzz_io.h"
#include "placement/pl_policy.h"
#include "sim/sim_cluster.h"
#include "sim/sim_profile.h"

#define FUZZ_CLUSTER 1
#define FUZZ_PROFILE 2
#define FUZZ_SPEC 3

#if FUZZ_WHAT == FUZZ_SPEC
static const double tok[] = {16, 256, 4096};
static const double us[] = {27, 37, 332};

static void run_spec(const char *spec) {
  pl_env env = PL_ENV_INIT;
  env.layers = 2;
  env.experts = 8;
  env.cluster = (pl_cluster){.gpus = 4, .gpus_per_node = 2, .slots = 4, .intra_Bps = 450e9,
                             .intra_lat_s = 2e-6, .inter_Bps = 50e9, .inter_lat_s = 5e-6,
                             .oversub = 1.0};
  env.model = (pl_model){.d_model = 256, .d_ff = 512, .top_k = 2, .bytes_per_elem = 2,
                         .optimizer_bytes_per_param = 12.0};
  env.profile = (pl_profile){.npoints = 3, .tokens = tok, .us = us, .bwd_ratio = 2.0,
                             .nonmoe_us = 10.0};
  env.seed = 1;
  char err[256], buf[64];
  pl_policy_param(spec, "slots", buf, sizeof(buf));
  pl_policy *p = NULL;
  if (pl_policy_create(&p, spec, &env, err, sizeof(err)) != 0)
    return;
  int64_t counts[4 * 8];
  for (int i = 0; i < 4 * 8; i++)
    counts[i] = (i * 37) % 100;
  pl_plan plan;
  pl_plan_init(&plan);
  pl_routing r;
  if (pl_routing_init(&r, 4, 8, 0) == 0) {
    for (int it = 0; it < 3; it++)
      for (int l = 0; l < 2; l++)
        if (pl_policy_plan(p, it, l, counts, &plan) || pl_policy_route_serving(p, l, counts, &r) ||
            pl_policy_observe(p, it, l, counts))
          abort(); /* a policy that was created must run */
    pl_routing_fini(&r);
  }
  pl_plan_fini(&plan);
  pl_policy_destroy(p);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sim_errbuf err;
#if FUZZ_WHAT == FUZZ_CLUSTER
  sim_cluster c;
  if (sim_cluster_load(fuzz_file("c.json", data, size), &c, &err) == 0 &&
      sim_cluster_check(&c, &err) == 0) {
    char buf[2048];
    sim_cluster_json(&c, buf, sizeof(buf));
    sim_cluster_resize(&c, 2, 4, &err);
  }
#elif FUZZ_WHAT == FUZZ_PROFILE
  sim_profile p;
  if (sim_profile_load(fuzz_file("p.json", data, size), &p, &err) == 0) {
    sim_pl_profile q;
    sim_profile_for_shape(&p, 1024, 4096, 2048, 1.0, &q);
  }
#else
  (void)err;
  char *spec = fuzz_string(data, size);
  run_spec(spec);
  free(spec);
#endif
  return 0;
}
