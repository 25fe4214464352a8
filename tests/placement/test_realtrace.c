/*
 * The invariants of every policy (pl_check.h) on real routing: the bundled
 * sample trace (traces/samples/, an excerpt of a real GPT-MoE training run)
 * at its own 8 ranks and rescaled to 16 and 64 GPUs, and the full real
 * traces of ../shared/traces/real when present (skipped otherwise).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "../require.h"
#include "pl_check.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

static const char *const specs[] = {
    "static", "capacity", "fastermoe", "smartmoe:period=5", "eplb:period=5",
    "eplb:mode=hierarchical,period=4", "flexmoe", "flexmoe:predictor=ewma,horizon=10",
    "oracle", NULL};

/* Loads iterations [it0, it0 + n) of a trace rescaled to G GPUs. */
static int load_trace(const char *path, int64_t it0, int n, int G, chk_loads *l) {
  tr_trace t;
  tr_error err;
  if (tr_open(&t, path, &err) != 0)
    return -1;
  *l = (chk_loads){n, t.layers, G, t.experts, NULL};
  l->c = calloc((size_t)n * t.layers * G * t.experts, sizeof(int64_t));
  cr_assert_not_null(l->c);
  for (int i = 0; i < n; i++)
    for (int ly = 0; ly < t.layers; ly++)
      cr_assert_eq(tr_rescale_slice(&t, it0 + i, ly, G, 0, 1,
                                    l->c + ((size_t)i * t.layers + ly) * G * t.experts),
                   0);
  tr_close(&t);
  return 0;
}

static void run_all(const chk_loads *l, int gpn, int slots) {
  pl_env env = chk_env(l->layers, l->experts, l->gpus, gpn, slots);
  int changes = 0;
  for (int i = 0; specs[i]; i++)
    changes += chk_run_policy(specs[i], &env, l);
  cr_assert_gt(changes, 0, "no policy ever changed its placement");
}

Test(realtrace, every_policy_keeps_the_invariants_on_the_bundled_sample) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy",
           getenv("FLEXMOE_SOURCE_ROOT"));
  const int gpus[] = {8, 16, 64}, slots[] = {6, 4, 2};
  for (int k = 0; k < 3; k++) {
    chk_loads l;
    cr_assert_eq(load_trace(path, 100, 12, gpus[k], &l), 0, "cannot read %s", path);
    run_all(&l, 8, slots[k]);
    chk_loads_free(&l);
  }
}

Test(realtrace, every_policy_keeps_the_invariants_on_the_full_real_traces) {
  const char *names[] = {"gpt-l6-e32-top2-aux.npy", "gpt-l6-e32-top2-noaux.npy"};
  int found = 0;
  for (int k = 0; k < 2; k++) {
    char path[1024];
    const char *up[] = {"..", "../.."}; /* a worktree sits one level deeper */
    FILE *f = NULL;
    for (int u = 0; u < 2 && !f; u++) {
      snprintf(path, sizeof(path), "%s/%s/shared/traces/real/%s",
               getenv("FLEXMOE_SOURCE_ROOT"), up[u], names[k]);
      f = fopen(path, "rb");
    }
    if (!f)
      continue;
    fclose(f);
    found++;
    chk_loads l;
    cr_assert_eq(load_trace(path, 500, 8, 32, &l), 0, "cannot read %s", path);
    run_all(&l, 8, 3);
    chk_loads_free(&l);
  }
  if (!found)
    fm_skip("real-traces", "../shared/traces/real not present");
}
