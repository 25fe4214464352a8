/*
 * test_fm_keys.c - the table of configuration keys (run/fm_keys.h): its
 * invariants, the one range check every face makes, the help lines the CLI
 * prints and the JSON the Python package lists.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_api.h"
#include "run/fm_error.h"
#include "run/fm_keys.h"
#include "sim/sim_cluster.h"
#include "traces/tr_trace.h"

/* Names are unique, flags unique within each command (a scope bit); the
 * configuration keys (sim, sweep) come first and compose their help, the
 * other commands' keys are named "COMMAND.key" and write theirs whole. */
Test(fm_keys, flags_and_names_are_unique_and_ranges_ordered) {
  for (int i = 0; i < FM_NKEYS; i++) {
    const fm_key *a = fm_key_of(i);
    cr_assert(strncmp(a->flag, "--", 2) == 0, "%s", a->flag);
    cr_assert(a->help[0] && a->name[0] && a->def[0], "key %d", i);
    cr_assert(a->lo <= a->hi, "%s: %lld > %lld", a->name, (long long)a->lo, (long long)a->hi);
    cr_assert(a->scope != 0, "%s has no scope", a->name);
    cr_assert_eq(!!(a->scope & FM_KS_BOTH), !a->whole, "%s", a->name);
    cr_assert_eq(a->whole, strchr(a->name, '.') != NULL, "%s", a->name);
    cr_assert_eq(fm_key_by_name(a->name), i);
    for (int j = 0; j < i; j++) {
      if (a->scope & fm_key_of(j)->scope)
        cr_assert_str_neq(a->flag, fm_key_of(j)->flag);
      cr_assert_str_neq(a->name, fm_key_of(j)->name);
    }
  }
  cr_assert_eq(fm_key_by_name("dmodel"), -1);
}

/* The trace tools' ranges are the trace library's physical limits, the
 * cluster sizes the simulator's. */
Test(fm_keys, trace_keys_take_the_trace_limits) {
  const struct {
    fm_key_id key;
    tr_limit_id lim;
  } same[] = {{FM_KEY_GEN_ITERATIONS, TR_LIM_ITERATIONS}, {FM_KEY_GEN_LAYERS, TR_LIM_LAYERS},
              {FM_KEY_GEN_RANKS, TR_LIM_RANKS},           {FM_KEY_GEN_EXPERTS, TR_LIM_EXPERTS},
              {FM_KEY_GEN_TOKENS, TR_LIM_TOKENS_PER_RANK}, {FM_KEY_GEN_TOP_K, TR_LIM_TOP_K},
              {FM_KEY_GEN_D_MODEL, TR_LIM_D_MODEL},       {FM_KEY_GEN_D_FF, TR_LIM_D_FF},
              {FM_KEY_RESCALE_GPUS, TR_LIM_RANKS},
              {FM_KEY_RESCALE_TOKENS_PER_GPU, TR_LIM_TOKENS_PER_RANK},
              {FM_KEY_IMPORT_EXPERTS, TR_LIM_EXPERTS},    {FM_KEY_IMPORT_TOP_K, TR_LIM_TOP_K},
              {FM_KEY_IMPORT_D_MODEL, TR_LIM_D_MODEL},    {FM_KEY_IMPORT_D_FF, TR_LIM_D_FF},
              {FM_KEY_IMPORT_TOKENS_PER_RANK, TR_LIM_TOKENS_PER_RANK},
              {FM_KEY_IMPORT_BYTES_PER_ELEM, TR_LIM_BYTES_PER_ELEM}};
  const fm_key_id gpus[] = {FM_KEY_PLACE_GPUS, FM_KEY_PLACE_NODES, FM_KEY_NET_GPUS,
                            FM_KEY_NET_NODES, FM_KEY_CLUSTERS_GPUS, FM_KEY_CLUSTERS_GPUS_PER_NODE};
  for (size_t i = 0; i < sizeof gpus / sizeof gpus[0]; i++)
    cr_assert_eq(fm_key_of(gpus[i])->hi, SIM_MAX_GPUS, "%s", fm_key_of(gpus[i])->name);
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    const fm_key *k = fm_key_of(same[i].key);
    cr_assert_eq(k->hi, tr_limits[same[i].lim].hi, "%s", k->name);
    if (same[i].key != FM_KEY_GEN_TOKENS) /* 0 tokens: a trace that routes nothing */
      cr_assert_eq(k->lo, tr_limits[same[i].lim].lo, "%s", k->name);
  }
}

/* A number as help writes it: decimal, "2^K" or "2^K-1"; *end after it. */
static int64_t help_number(const char *s, const char **end) {
  char *e;
  int64_t v = strtoll(s, &e, 10);
  if (e[0] == '^') {
    int64_t k = strtoll(e + 1, &e, 10);
    v = k >= 63 ? INT64_MAX : INT64_C(1) << k; /* 2^63 only as 2^63-1 */
    if (e[0] == '-' && e[1] >= '0' && e[1] <= '9') {
      int64_t d = strtoll(e + 1, &e, 10);
      v = k >= 63 ? INT64_MAX - (d - 1) : v - d;
    }
  }
  *end = e;
  return v;
}

/* A sentence written whole that states its integer range ("1..4096", not
 * an ellipsis) states the row's: the words a user reads and the numbers the
 * check applies agree. */
Test(fm_keys, whole_help_states_the_rows_range) {
  int stated = 0;
  for (int i = 0; i < FM_NKEYS; i++) {
    const fm_key *k = fm_key_of(i);
    if (!k->whole || (k->type != FM_KT_INT && k->type != FM_KT_INT_LIST))
      continue;
    for (const char *r = strstr(k->help, ".."); r; r = strstr(r + 2, "..")) {
      const char *a = r;
      while (a > k->help && (a[-1] == '^' || (a[-1] >= '0' && a[-1] <= '9')))
        a--;
      if (a == r || r[2] < '0' || r[2] > '9')
        continue; /* "... to N nodes" */
      const char *e;
      int64_t lo = help_number(a, &e), hi = help_number(r + 2, &e);
      cr_assert_eq(lo, k->lo, "%s: help says %lld..., row %lld", k->name, (long long)lo,
                   (long long)k->lo);
      cr_assert_eq(hi, k->hi, "%s: help says ...%lld, row %lld", k->name, (long long)hi,
                   (long long)k->hi);
      stated++;
    }
  }
  cr_assert_geq(stated, 5, "only %d ranges stated", stated);
}

/* A key whose help is written whole prints it as written, wrapped, under
 * the flag given ("-o, --output") or its own. */
Test(fm_keys, whole_help_is_printed_as_written) {
  char buf[512];
  fm_key_help(FM_KEY_RUN_DEVICE, NULL, 22, buf, sizeof buf);
  cr_assert_str_eq(buf, "  --device D          CUDA device, 0..1024 (default 0)\n");
  fm_key_help(FM_KEY_GEN_OUTPUT, "-o, --output", 22, buf, sizeof buf);
  cr_assert_str_eq(buf, "  -o, --output OUT.npy\n"
                        "                      the generated trace (required)\n");
  fm_key_help(FM_KEY_TOP_K, NULL, 22, buf, sizeof buf);
  cr_assert_str_eq(buf, "  --top-k K           experts per token, 1 to 64 experts (default: the "
                        "trace's\n                      sidecar)\n");
}

Test(fm_keys, the_range_check_names_the_key_as_the_face_spells_it) {
  char em[256] = "";
  cr_assert_eq(fm_key_check(FM_KEY_TOP_K, FM_NAME_FLAG, 64, em, sizeof em), FM_OK);
  cr_assert_eq(fm_key_check(FM_KEY_TOP_K, FM_NAME_FLAG, 65, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "--top-k: 65 is out of range: must be between 1 and 64");
  cr_assert_eq(fm_key_check(FM_KEY_TOP_K, FM_NAME_JSON, 0, em, sizeof em), FM_EUSAGE);
  cr_assert_str_eq(em, "top_k: 0 is out of range: must be between 1 and 64");
  cr_assert_eq(fm_key_check(FM_KEY_LOCK_WAIT, FM_NAME_JSON, 0, em, sizeof em), FM_OK);
  cr_assert_str_eq(fm_key_name(FM_KEY_POLICY, FM_NAME_JSON), "policies");
  cr_assert_str_eq(fm_key_name(FM_KEY_POLICY, FM_NAME_FLAG), "--policy");
}

Test(fm_keys, choices_are_whole_words) {
  cr_assert(fm_key_choice_ok(FM_KEY_ENGINE, "des"));
  cr_assert(fm_key_choice_ok(FM_KEY_ENGINE, "analytic"));
  cr_assert_not(fm_key_choice_ok(FM_KEY_ENGINE, "de"));
  cr_assert_not(fm_key_choice_ok(FM_KEY_ENGINE, "des|"));
  cr_assert_not(fm_key_choice_ok(FM_KEY_ENGINE, ""));
  cr_assert_not(fm_key_choice_ok(FM_KEY_NETWORK, "analytic"));
}

/* A word that is not a choice is refused with the choices listed, named as
 * the face spells the key, and the output left alone; a choice is taken. */
Test(fm_keys, a_bad_choice_lists_every_choice) {
  char em[256] = "";
  const char *out = "unset";
  cr_assert_eq(fm_key_parse_choice(FM_KEY_VALIDATE_ENGINE, FM_NAME_FLAG, "fast", &out, em,
                                   sizeof em),
               FM_EUSAGE);
  cr_assert_str_eq(em, "--engine: 'fast' is not analytic, des or cost");
  cr_assert_str_eq(out, "unset");
  cr_assert_eq(fm_key_parse_choice(FM_KEY_ENGINE, FM_NAME_JSON, NULL, &out, em, sizeof em),
               FM_EUSAGE);
  cr_assert_str_eq(em, "engine: '' is not analytic or des");
  cr_assert_eq(fm_key_parse_choice(FM_KEY_VALIDATE_ENGINE, FM_NAME_JSON, "cost", &out, em,
                                   sizeof em),
               FM_OK);
  cr_assert_str_eq(out, "cost");
}

/* Every key of a scope has a help line and no other key has one. */
Test(fm_keys, help_lists_the_keys_of_its_scope_with_their_ranges) {
  char text[8192], *buf = text + 1; /* text: a newline, then the lines */
  text[0] = '\n';
  size_t n = fm_keys_help(FM_KS_SWEEP, 22, buf, sizeof text - 1);
  cr_assert(n > 0 && n < sizeof text - 1);
  cr_assert_eq(fm_keys_help(FM_KS_SWEEP, 22, NULL, 0), n, "the length needed is the same");
  for (int i = 0; i < FM_NKEYS; i++) {
    char head[64];
    if (fm_key_of(i)->whole)
      continue; /* another command's key: its flag may be a sweep key's too */
    snprintf(head, sizeof head, "\n  %s ", fm_key_of(i)->flag);
    int in = strstr(text, head) != NULL;
    cr_assert_eq(in, (fm_key_of(i)->scope & FM_KS_SWEEP) != 0, "%s", fm_key_of(i)->flag);
  }
  cr_assert(strstr(buf, "1 to 256 processes (default: 1)"), "%s", buf);
  for (const char *l = buf; *l; l = strchr(l, '\n') + 1)
    cr_assert_leq((size_t)(strchr(l, '\n') - l), 78, "line too long: %.90s", l);
}

Test(fm_keys, json_lists_every_key_with_its_range) {
  char *text = fm_keys_json();
  cr_assert_not_null(text);
  json_error_t e;
  json_t *list = json_loads(text, 0, &e);
  cr_assert(json_is_array(list), "%s", e.text);
  cr_assert_eq(json_array_size(list), FM_NKEYS);
  json_t *k = json_array_get(list, FM_KEY_D_FF);
  cr_assert_str_eq(json_string_value(json_object_get(k, "name")), "d_ff");
  cr_assert_eq(json_integer_value(json_object_get(k, "max")), 1 << 22);
  k = json_array_get(list, FM_KEY_ENGINE);
  cr_assert(json_is_null(json_object_get(k, "min")));
  cr_assert_str_eq(json_string_value(json_array_get(json_object_get(k, "choices"), 1)), "des");
  json_decref(list);
  fm_free(text);
}

/* "Did you mean" (fm_nearest): slips of one or two letters find the word,
 * a prefix finds its word, unrelated words find none (issue 18 item 9). */
Test(fm_keys, nearest_finds_slips_and_nothing_for_other_words) {
  const char *flags[] = {"trace", "policy", "gpus", "gpus-per-node", "iterations", "seed"};
  cr_assert_str_eq(fm_nearest("polcy", flags, 6), "policy");
  cr_assert_str_eq(fm_nearest("pollicy", flags, 6), "policy");
  cr_assert_str_eq(fm_nearest("itertaions", flags, 6), "iterations"); /* a swap is one */
  cr_assert_str_eq(fm_nearest("trcae", flags, 6), "trace");
  cr_assert_str_eq(fm_nearest("gpus-per", flags, 6), "gpus-per-node"); /* a prefix */
  cr_assert_str_eq(fm_nearest("gpu", flags, 6), "gpus");
  cr_assert_null(fm_nearest("frobnicate", flags, 6));
  cr_assert_null(fm_nearest("x", flags, 6));
  cr_assert_null(fm_nearest("", flags, 6));
  cr_assert_null(fm_nearest(NULL, flags, 6));
}
