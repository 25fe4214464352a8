/* run/fm_place.h called directly: the placement of the CLI's recorded
 * cases (tests/run/golden), routing that conserves the rescaled tokens, the
 * placement's slot and replica invariants, and its usage errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_place.h"
#include "traces/tr_rescale.h"
#include "traces/tr_trace.h"

#define SAMPLE "traces/samples/gpt-l6-e32-top2-aux-200.npy"

static void to_root(void) {
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  cr_assert_eq(chdir(root), 0);
}

/* `flexmoe place --trace SAMPLE --gpus 8 --slots 6 --policy
 * flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0` (golden
 * place.out). */
static fm_place_config golden_config(void) {
  return (fm_place_config){.trace = SAMPLE, .policy = "flexmoe:threshold=1.2,horizon=50",
                           .cluster = "dgx-h100", .gpus = 8, .slots = 6, .iteration = 120,
                           .layer = 0, .seed = 0};
}

Test(fm_place, loads_are_the_cli_output_and_routing_conserves_tokens, .init = to_root) {
  fm_place_config c = golden_config();
  fm_place_result r;
  char em[1024];
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert(strncmp(r.policy, "flexmoe:threshold=1.2,horizon=50,", 33) == 0, "%s", r.policy);
  cr_assert(r.gpus == 8 && r.gpus_per_node == 8 && r.slots == 6);
  cr_assert(r.iteration == 120 && r.layer0 == 0 && r.nlayers == 1);
  /* the CLI's recorded table: GPU loads after routing */
  static const int64_t want[8] = {3969, 4603, 4434, 3344, 4250, 4504, 4003, 3661};
  const fm_place_layer *lo = &r.layers[0];
  int64_t sum = 0, max = 0;
  for (int g = 0; g < 8; g++) {
    cr_assert_eq(lo->gpu_load[g], want[g], "GPU %d", g);
    sum += lo->gpu_load[g];
    max = lo->gpu_load[g] > max ? lo->gpu_load[g] : max;
  }
  /* independent: routed + dropped = the rescaled counts of (120, 0) */
  tr_trace t;
  tr_error err;
  int64_t counts[8 * 32], total = 0;
  cr_assert_eq(tr_open(&t, SAMPLE, &err), 0, "%s", err.msg);
  cr_assert_eq(tr_rescale_slice(&t, 120, 0, 8, 0, 0, counts), 0);
  tr_close(&t);
  for (int i = 0; i < 8 * 32; i++)
    total += counts[i];
  cr_assert_eq(sum + lo->dropped, total);
  cr_assert_float_eq(lo->balance, (double)max / ((double)sum / 8), 1e-12);
  /* every expert has a replica; no GPU hosts more than its slots */
  const pl_placement *p = &lo->placement;
  for (int e = 0; e < p->experts; e++)
    cr_assert_geq(p->nrep[e], 1, "expert %d", e);
  for (int g = 0; g < p->gpus; g++)
    cr_assert_leq(p->nhost[g], r.slots, "GPU %d", g);
  fm_place_result_fini(&r);
}

Test(fm_place, document_is_the_cli_output, .init = to_root) {
  fm_place_config c = {.trace = SAMPLE, .policy = "eplb", .cluster = "dgx-h100", .gpus = 16,
                       .iteration = 40, .layer = -1, .seed = 3};
  fm_place_result r;
  char em[1024];
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_eq(r.nlayers, 6);
  json_t *doc = fm_place_doc(&r);
  cr_assert_not_null(doc);
  char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  json_decref(doc);
  FILE *f = fopen("tests/run/golden/place-json-eplb-it40.out", "rb");
  cr_assert_not_null(f);
  static char want[1 << 20];
  size_t n = fread(want, 1, sizeof(want) - 1, f);
  fclose(f);
  want[n] = '\0';
  size_t k = strlen(text);
  cr_assert(strncmp(text, want, k) == 0 && strcmp(want + k, "\n") == 0,
            "the document differs from the CLI's recorded output");
  free(text);
  fm_place_result_fini(&r);
}

Test(fm_place, iteration_layer_and_policy_errors_are_usage_errors, .init = to_root) {
  fm_place_config c = golden_config();
  fm_place_result r;
  char em[1024];
  c.iteration = 999;
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "--iteration 999: " SAMPLE " has iterations 0..199");
  fm_place_result_fini(&r);
  c = golden_config();
  c.layer = 6;
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "--layer 6: " SAMPLE " has layers 0..5");
  fm_place_result_fini(&r);
  c = golden_config();
  c.policy = "nope";
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_EUSAGE);
  cr_assert_str_eq(em, "--policy: unknown policy 'nope'; the policies: static, capacity, fastermoe, smartmoe, eplb, flexmoe, oracle (see 'flexmoe policies')");
  fm_place_result_fini(&r);
  c = golden_config();
  c.slots = 1;
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_EFAIL);
  cr_assert_str_eq(em, "fewer expert slots than experts: 8 GPUs x 1 slots < 32 experts");
  fm_place_result_fini(&r);
}

/* --temporaries (issue 17): the shown iteration's temporaries, decided once
 * every layer is planned as the simulator does; flexmoe makes some at 16
 * GPUs, each a copy to a GPU without one from another GPU, the same when
 * one layer is shown; none for static; the JSON has them only when asked. */
Test(fm_place, temporaries_are_shown_only_when_asked, .init = to_root) {
  fm_place_config c = {.trace = SAMPLE, .policy = "flexmoe", .cluster = "dgx-h100", .gpus = 16,
                       .iteration = 120, .layer = -1, .seed = 0, .temporaries = 1};
  fm_place_result r, one, st, off;
  char em[1024];
  cr_assert_eq(fm_place_run(&c, &r, em, sizeof(em)), FM_OK, "%s", em);
  int made = 0;
  for (int i = 0; i < r.nlayers; i++) {
    const fm_place_layer *lo = &r.layers[i];
    for (int k = 0; k < lo->ntemps; k++) {
      const pl_temp *t = &lo->temps[k];
      cr_assert(t->expert >= 0 && t->expert < 32 && t->from != t->to, "layer %d", i);
      cr_assert(t->from >= 0 && t->from < 16 && t->to >= 0 && t->to < 16);
      for (int j = 0; j < k; j++)
        cr_assert(lo->temps[j].expert != t->expert || lo->temps[j].to != t->to,
                  "two copies of expert %d on GPU %d", t->expert, t->to);
    }
    made += lo->ntemps;
  }
  cr_assert_gt(made, 0, "the test needs temporaries");
  c.layer = 2;
  cr_assert_eq(fm_place_run(&c, &one, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_eq(one.layers[0].ntemps, r.layers[2].ntemps);
  cr_assert_eq(memcmp(one.layers[0].temps, r.layers[2].temps,
                      sizeof(pl_temp) * (size_t)one.layers[0].ntemps), 0);
  json_t *doc = fm_place_doc(&one);
  json_t *temps = json_object_get(json_array_get(json_object_get(doc, "layers"), 0), "temporaries");
  cr_assert_eq(json_array_size(temps), (size_t)one.layers[0].ntemps);
  json_decref(doc);
  c.policy = "static";
  cr_assert_eq(fm_place_run(&c, &st, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_eq(st.layers[0].ntemps, 0);
  c.policy = "flexmoe";
  c.temporaries = 0;
  cr_assert_eq(fm_place_run(&c, &off, em, sizeof(em)), FM_OK, "%s", em);
  cr_assert_null(off.layers[0].temps);
  doc = fm_place_doc(&off);
  cr_assert_null(json_object_get(json_array_get(json_object_get(doc, "layers"), 0), "temporaries"));
  json_decref(doc);
  fm_place_result_fini(&r);
  fm_place_result_fini(&one);
  fm_place_result_fini(&st);
  fm_place_result_fini(&off);
}
