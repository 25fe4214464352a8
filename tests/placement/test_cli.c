/*
 * `flexmoe policies` and `flexmoe place` as a user meets them: the JSON keys
 * of DESIGN.md, invariants of the printed plan, determinism, and one clear
 * message with a non-zero exit for each bad input.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[1 << 20], err[1 << 16];

/* Runs `flexmoe ARGS`, capturing stdout and stderr; returns the exit code. */
static int run(const char *args) {
  const char *bin = getenv("FLEXMOE_BIN");
  const char *src = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert(bin && src, "FLEXMOE_BIN / FLEXMOE_SOURCE_ROOT not set");
  char errpath[] = "/tmp/flexmoe-pl-cli-XXXXXX";
  int fd = mkstemp(errpath);
  cr_assert_geq(fd, 0);
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "cd '%s' && '%s' %s 2>'%s'", src, bin, args, errpath);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, sizeof(out) - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  FILE *e = fdopen(fd, "r");
  n = fread(err, 1, sizeof(err) - 1, e);
  err[n] = '\0';
  fclose(e);
  unlink(errpath);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define SAMPLE "--trace traces/samples/gpt-l6-e32-top2-aux-200.npy"

/* stderr is exactly one line starting "flexmoe place: " and containing what. */
static void one_line(const char *cmd, const char *what) {
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "flexmoe %s: ", cmd);
  cr_assert_eq(strncmp(err, prefix, strlen(prefix)), 0, "stderr: %s", err);
  cr_assert(strstr(err, what), "stderr does not name '%s': %s", what, err);
  cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
  cr_assert_str_eq(out, "", "stdout not empty on error");
}

Test(cli, policies_lists_every_policy_with_parameters_as_json) {
  cr_assert_eq(run("policies --format json"), 0, "%s", err);
  json_error_t je;
  json_t *root = json_loads(out, 0, &je);
  cr_assert_not_null(root, "not JSON: %s", je.text);
  json_t *list = json_object_get(root, "policies");
  cr_assert(json_is_array(list));
  const char *want[] = {"static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"};
  cr_assert_eq(json_array_size(list), 7);
  for (size_t i = 0; i < 7; i++) {
    json_t *p = json_array_get(list, i);
    cr_assert_str_eq(json_string_value(json_object_get(p, "name")), want[i]);
    cr_assert(json_is_array(json_object_get(p, "parameters")));
  }
  json_t *fx = json_array_get(list, 5);
  int found = 0;
  json_t *pp;
  size_t k;
  json_array_foreach(json_object_get(fx, "parameters"), k, pp)
    if (!strcmp(json_string_value(json_object_get(pp, "key")), "threshold")) {
      found = 1;
      cr_assert_str_eq(json_string_value(json_object_get(pp, "default")), "1.1");
    }
  cr_assert(found, "flexmoe lists its threshold");
  /* one migration protocol: every re-planning policy lists `background`
   * with the same default, the others do not have it */
  for (size_t i = 0; i < 7; i++) {
    json_t *p = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(p, "name")), *def = NULL;
    json_array_foreach(json_object_get(p, "parameters"), k, pp)
      if (!strcmp(json_string_value(json_object_get(pp, "key")), "background"))
        def = json_string_value(json_object_get(pp, "default"));
    int replans = !strcmp(name, "smartmoe") || !strcmp(name, "eplb") || !strcmp(name, "flexmoe");
    if (replans)
      cr_assert(def && !strcmp(def, "1"), "%s: background default %s", name, def ? def : "missing");
    else if (strcmp(name, "fastermoe")) /* its own file, not yet on the protocol */
      cr_assert_null(def, "%s has a background parameter", name);
  }
  json_decref(root);
  cr_assert_eq(run("policies"), 0);
  cr_assert(strstr(out, "eplb") && strstr(out, "mode=auto"));
  cr_assert(strstr(out, "smartmoe") && strstr(out, "period=10"));
}

Test(cli, place_json_has_design_keys_and_a_valid_plan) {
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --slots 6 --policy flexmoe --iteration 60 "
                   "--format json"), 0, "%s", err);
  json_error_t je;
  json_t *root = json_loads(out, 0, &je);
  cr_assert_not_null(root, "not JSON: %s", je.text);
  cr_assert(strstr(json_string_value(json_object_get(root, "policy")), "flexmoe:threshold="));
  cr_assert_eq(json_integer_value(json_object_get(root, "gpus")), 8);
  cr_assert_eq(json_integer_value(json_object_get(root, "slots_per_gpu")), 6);
  json_t *layers = json_object_get(root, "layers");
  cr_assert_eq(json_array_size(layers), 6);
  size_t i;
  json_t *l;
  json_array_foreach(layers, i, l) {
    cr_assert_eq(json_integer_value(json_object_get(l, "layer")), (json_int_t)i);
    json_t *experts = json_object_get(l, "experts"), *ex;
    cr_assert_eq(json_array_size(experts), 32);
    int per_gpu[8] = {0};
    size_t e;
    json_array_foreach(experts, e, ex) {
      cr_assert_eq(json_integer_value(json_object_get(ex, "expert")), (json_int_t)e);
      json_t *gpus = json_object_get(ex, "gpus"), *g;
      cr_assert_geq(json_array_size(gpus), 1, "expert without a replica");
      size_t j;
      json_array_foreach(gpus, j, g) per_gpu[json_integer_value(g)]++;
    }
    for (int g = 0; g < 8; g++)
      cr_assert_leq(per_gpu[g], 6);
    json_t *load = json_object_get(l, "gpu_load"), *v;
    json_int_t sum = 0, max = 0;
    size_t j;
    json_array_foreach(load, j, v) {
      sum += json_integer_value(v);
      if (json_integer_value(v) > max)
        max = json_integer_value(v);
    }
    cr_assert_eq(sum, 8 * 4096, "tokens conserved");
    cr_assert_float_eq(json_real_value(json_object_get(l, "balance")), (double)max * 8 / sum, 1e-5);
    cr_assert(json_is_array(json_object_get(l, "moves")));
  }
  json_decref(root);
}

Test(cli, place_is_deterministic_and_shows_one_layer_on_request) {
  static char first[1 << 20];
  cr_assert_eq(run("place " SAMPLE " --gpus 16 --gpus-per-node 8 --slots 4 --policy eplb:period=10 "
                   "--iteration 45 --format json"), 0, "%s", err);
  strcpy(first, out);
  cr_assert_eq(run("place " SAMPLE " --gpus 16 --gpus-per-node 8 --slots 4 --policy eplb:period=10 "
                   "--iteration 45 --format json"), 0);
  cr_assert_str_eq(out, first);
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --policy static --layer 3 --iteration 5"), 0, "%s", err);
  cr_assert(strstr(out, "layer 3: balance"));
  cr_assert_null(strstr(out, "layer 2:"));
}

Test(cli, place_refuses_unknown_policies_and_parameters) {
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --policy teleport"), 2);
  one_line("place", "teleport");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --policy flexmoe:speed=3"), 2);
  one_line("place", "speed");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --policy eplb:mode=diagonal"), 2);
  one_line("place", "eplb");
}

Test(cli, place_refuses_too_few_slots_and_unmappable_gpu_counts) {
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --slots 3"), 1);
  one_line("place", "fewer expert slots than experts");
  cr_assert_eq(run("place " SAMPLE " --gpus 12 --gpus-per-node 8"), 2);
  one_line("place", "--gpus 12");
  cr_assert_eq(run("place " SAMPLE " --gpus 1000000"), 2);
  one_line("place", "--gpus");
  cr_assert_eq(run("place " SAMPLE " --gpus 0"), 2);
  one_line("place", "--gpus");
}

Test(cli, place_refuses_bad_files_iterations_and_flags) {
  cr_assert_eq(run("place --trace /nonexistent/t.npy --gpus 8"), 1);
  one_line("place", "/nonexistent/t.npy");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --iteration 200"), 2);
  one_line("place", "--iteration 200");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --layer 6"), 2);
  one_line("place", "--layer 6");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --frobnicate"), 2);
  one_line("place", "--frobnicate");
  cr_assert_eq(run("place --gpus 8"), 2);
  one_line("place", "--trace");
  cr_assert_eq(run("place " SAMPLE " --gpus 8 --format xml"), 2);
  one_line("place", "xml");
  cr_assert_eq(run("place --help"), 0);
  cr_assert(strstr(out, "example"));
}
