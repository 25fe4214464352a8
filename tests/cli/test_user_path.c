/*
 * The user's path (issue 18 items 2, 4, 7, 8, 9): every mistake a new user
 * made gets a message that says what to do, suspicious traces are named
 * before any work, the size flags mean the same in every command, and long
 * work shows progress. Each test runs the command a user types (bash in the
 * source root, $FLEXMOE_BIN for flexmoe) and checks the exit code and the
 * words of the message a user relies on.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRACE "traces/samples/gpt-l6-e32-top2-aux-200.npy"

static char out[1 << 16], err[1 << 16];
static char dir[64]; /* a scratch directory of this test, $D in commands */

static void slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "cannot read %s", path);
  size_t n = fread(buf, 1, len - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* Runs the bash command fmt (printf-style; $F is flexmoe, $D the scratch
 * directory) in the source root; stdout into out, stderr into err; returns
 * the exit status (-1 when killed by a signal). */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/flexmoe-path-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
  }
  char body[4096], cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd,
           "cd \"$FLEXMOE_SOURCE_ROOT\" && F=\"$FLEXMOE_BIN\" D='%s' && "
           "( %s ) >'%s/out' 2>'%s/err'",
           dir, body, dir, dir);
  int status = system(cmd);
  char path[128];
  snprintf(path, sizeof path, "%s/out", dir);
  slurp(path, out, sizeof out);
  snprintf(path, sizeof path, "%s/err", dir);
  slurp(path, err, sizeof err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void cleanup(void) {
  if (dir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
  }
}

TestSuite(user_path, .fini = cleanup);

#define HAS(buf, text) cr_assert(strstr(buf, text), "missing \"%s\" in:\n%s", text, buf)

/* ---- flags (item 8, 9) ---- */

Test(user_path, an_abbreviated_flag_is_refused_with_the_full_name) {
  /* getopt_long took --gpus for --gpus-per-node */
  cr_assert_eq(sh("$F sim --trace " TRACE " --gpus-per 16 --no-db"), 2);
  HAS(err, "write the option in full: --gpus-per-node");
}

Test(user_path, a_single_value_flag_given_twice_is_refused) {
  cr_assert_eq(sh("$F sim --trace a.npy --trace " TRACE " --no-db"), 2);
  HAS(err, "--trace given twice ('a.npy' and '" TRACE "')");
  cr_assert_eq(sh("$F sweep --trace " TRACE " --gpus 8 --gpus 16 --db $D/x.db"), 2);
  HAS(err, "--gpus given twice");
  /* --policy repeats to compare */
  cr_assert_eq(sh("$F sim --trace " TRACE " --iterations 0:2 --policy static --policy eplb "
                  "--no-db"), 0, "%s", err);
}

Test(user_path, a_misspelt_flag_gets_did_you_mean) {
  cr_assert_eq(sh("$F sim --trace " TRACE " --polcy static --no-db"), 2);
  HAS(err, "unknown option '--polcy': did you mean --policy?");
  cr_assert_eq(sh("$F place --trace " TRACE " --iteraton 5"), 2);
  HAS(err, "did you mean --iteration?");
}

Test(user_path, policy_mistakes_name_the_range_the_values_or_the_word_meant) {
  cr_assert_eq(sh("$F sim --trace " TRACE " --policy flexmoe:threshold=0.9 --no-db"), 2);
  HAS(err, "threshold=0.9");
  HAS(err, "1 to 1000000");
  cr_assert_eq(sh("$F sim --trace " TRACE " --policy flexmoe:predictor=ema --no-db"), 2);
  HAS(err, "last, ewma, window or auto");
  cr_assert_eq(sh("$F sim --trace " TRACE " --policy flexmoe:treshold=1.2 --no-db"), 2);
  HAS(err, "no parameter 'treshold' (did you mean 'threshold'?)");
  cr_assert_eq(sh("$F sim --trace " TRACE " --policy flexmo --no-db"), 2);
  HAS(err, "unknown policy 'flexmo' (did you mean 'flexmoe'?)");
  HAS(err, "static, capacity, fastermoe, smartmoe, eplb, flexmoe, oracle");
}

Test(user_path, an_unknown_gpu_profile_points_to_the_profile_flag) {
  cr_assert_eq(sh("printf '%%s' '{\"name\": \"b\", \"nodes\": 4, \"gpus_per_node\": 1, "
                  "\"gpu\": {\"profile\": \"b200\", \"hbm_gib\": 141}, \"intra\": "
                  "{\"bandwidth_GBps\": 450, \"latency_us\": 2}, \"inter\": "
                  "{\"bandwidth_GBps\": 50, \"latency_us\": 5, \"oversubscription\": 1.0}}' "
                  "> $D/b200.json && $F sim --trace " TRACE " --cluster $D/b200.json --no-db"),
               1, "%s", err);
  HAS(err, "no built-in compute profile for GPU 'b200'");
  HAS(err, "--profile F.json");
}

/* ---- one vocabulary of sizes (item 8) ---- */

Test(user_path, gpus_and_nodes_mean_the_same_in_every_command) {
  cr_assert_eq(sh("$F sim --trace " TRACE " --gpus 16 --iterations 0:2 --policy static --no-db "
                  "--format json"), 0, "%s", err);
  HAS(out, "\"gpus\": 16");
  cr_assert_eq(sh("$F sim --trace " TRACE " --nodes 2 --iterations 0:2 --policy static --no-db "
                  "--format json"), 0, "%s", err);
  HAS(out, "\"gpus\": 16");
  cr_assert_eq(sh("$F place --trace " TRACE " --nodes 2 --layer 0 --format json"), 0, "%s", err);
  HAS(out, "\"gpus\": 16");
  cr_assert_eq(sh("$F sweep --trace " TRACE " --nodes 1,2 --policy static --iterations 0:2 "
                  "--db $D/n.db --quiet"), 0, "%s", err);
  HAS(out, "2 grid points (1 trace x 1 cluster x 2 sizes");
  cr_assert_eq(sh("$F report --db $D/n.db --format csv"), 0, "%s", err);
  HAS(out, ",16,");
}

Test(user_path, size_flags_that_disagree_are_refused_naming_them) {
  cr_assert_eq(sh("$F sim --trace " TRACE " --gpus 16 --nodes 4 --gpus-per-node 8 --no-db"), 2);
  HAS(err, "--gpus 16 is not --nodes 4 x --gpus-per-node 8 = 32");
  cr_assert_eq(sh("$F sim --trace " TRACE " --gpus 12 --no-db"), 2);
  HAS(err, "--gpus 12 is not a whole number of nodes of 8 GPUs");
  cr_assert_eq(sh("$F sweep --trace " TRACE " --gpus 8 --nodes 1 --db $D/x.db"), 2);
  HAS(err, "--gpus or --nodes, not both");
}

Test(user_path, place_takes_its_size_from_a_cluster_file) {
  cr_assert_eq(sh("$F clusters dgx-a100 --nodes 2 --gpus-per-node 2 --format json > $D/c.json && "
                  "$F place --trace " TRACE " --cluster $D/c.json --layer 0"), 0, "%s", err);
  HAS(out, "4 GPUs (2 per node)");
}

Test(user_path, clusters_json_output_loads_back_as_a_cluster) {
  cr_assert_eq(sh("$F clusters dgx-a100 --nodes 2 --format json > $D/a.json && "
                  "$F sim --trace " TRACE " --cluster $D/a.json --iterations 0:2 --policy static "
                  "--no-db"), 0, "%s", err);
  HAS(out, "cluster dgx-a100 (16 GPUs)");
  cr_assert_eq(sh("$F clusters --format json > $D/all.json && "
                  "$F sim --trace " TRACE " --cluster $D/all.json --no-db"), 1);
  HAS(err, "holds 4 clusters; a cluster file holds one");
}

/* ---- traces (items 2, 4) ---- */

/* A CSV whose ranks are numbered from 1, with iteration 2 missing. */
#define CSV_1BASED                                                                          \
  "printf 'iteration,layer,rank,expert,tokens\\n0,0,1,0,5\\n0,0,1,1,3\\n0,0,2,2,7\\n0,0,2,3,1\\n" \
  "1,0,1,0,2\\n1,0,2,3,9\\n3,0,1,1,4\\n3,0,2,2,4\\n' > $D/r.csv"

Test(user_path, import_sets_the_sidecar_fields_a_command_asks_for) {
  cr_assert_eq(sh(CSV_1BASED " && $F trace import $D/r.csv --top-k 2 --d-model 64 --d-ff 128 "
                  "--tokens-per-rank 8 -o $D/r.npy && $F trace info $D/r.npy"), 0, "%s", err);
  HAS(out, "top_k 2, d_model 64, d_ff 128, bytes/elem -, tokens/rank 8");
  cr_assert_eq(sh(CSV_1BASED " && $F trace import $D/r.csv --top-k 9 -o $D/k.npy; "
                  "echo rc=$?; ls $D/k.npy"), 2);
  HAS(err, "top_k 9 is out of range: it must be between 1 and 4");
  HAS(out, "rc=2");
}

Test(user_path, validate_takes_the_top_k_its_message_asks_for) {
  cr_assert_eq(sh("$F validate --backend cpu --trace " TRACE " --top-k 0"), 2);
  HAS(err, "--top-k: 0 is out of range");
}

Test(user_path, suspicious_traces_are_named_on_import_and_on_every_read) {
  cr_assert_eq(sh(CSV_1BASED " && $F trace import $D/r.csv -o $D/r.npy"), 0, "%s", err);
  HAS(err, "flexmoe trace import: warning: ");
  HAS(err, "rank 0 is empty and ranks 1 to 2 are not: the rank ids look 1-based");
  HAS(err, "1 iteration without a token slot (the first: 2)");
  cr_assert_eq(sh("$F sim --trace $D/r.npy --top-k 2 --d-model 64 --d-ff 128 --tokens-per-gpu "
                  "16 --policy static --no-db"), 0, "%s", err);
  HAS(err, "flexmoe sim: warning: ");
  HAS(err, "rank ids look 1-based");
  cr_assert_eq(sh("$F place --trace $D/r.npy --gpus 2 --top-k 2 --d-model 64 --d-ff 128 "
                  "--tokens-per-gpu 16 --slots 4"), 0, "%s", err);
  HAS(err, "3 ranks, this run uses 2 (GPU g replays rank g): rank 2 is not used");
}

Test(user_path, strict_turns_trace_warnings_into_errors) {
  cr_assert_eq(sh(CSV_1BASED " && $F trace import $D/r.csv --strict -o $D/s.npy; "
                  "r=$?; test ! -e $D/s.npy && test ! -e $D/s.json && exit $r"), 1, "%s", err);
  HAS(err, "look 1-based (ids start at 0: subtract 1 and import again) (--strict)");
  cr_assert_eq(sh("$F sim --trace " TRACE " --strict --iterations 0:2 --policy static --no-db"), 0,
               "a clean trace passes --strict: %s", err);
  cr_assert_eq(err[0], '\0', "a clean trace warned: %s", err);
}

Test(user_path, sim_refuses_an_all_zero_trace_unless_asked) {
  const char *mk = "printf 'iteration,layer,rank,expert,tokens\\n0,0,0,0,0\\n1,0,1,3,0\\n' > $D/z.csv"
                   " && $F trace import $D/z.csv --top-k 1 --d-model 64 --d-ff 128 "
                   "--tokens-per-rank 16 -o $D/z.npy";
  cr_assert_eq(sh("%s && $F sim --trace $D/z.npy --policy static --no-db", mk), 1);
  HAS(err, "every count is 0: nothing was routed");
  HAS(err, "--allow-empty");
  cr_assert_eq(sh("%s && $F sim --trace $D/z.npy --policy static --no-db --allow-empty", mk), 0,
               "%s", err);
}

Test(user_path, run_says_which_ranks_of_the_trace_it_leaves_out) {
  cr_assert_eq(sh("$F run --backend cpu --ranks 3 --trace " TRACE " --iterations 0:1 --d-model 16 "
                  "--d-ff 32 --tokens-per-gpu 64 --policy static"), 0, "%s", err);
  HAS(err, "8 ranks, this run uses 3 (GPU g replays rank g): ranks 3 to 7 are not used");
}

/* ---- long work (item 7) ---- */

Test(user_path, a_long_sim_shows_progress_with_an_eta_only_on_a_terminal) {
  cr_assert_eq(sh("FLEXMOE_PROGRESS=always $F sim --trace " TRACE " --iterations 0:5 "
                  "--policy static --policy eplb --no-db"), 0, "%s", err);
  HAS(err, "flexmoe sim: static (1/2), iteration 1/5");
  HAS(err, "eta");
  cr_assert_eq(sh("$F sim --trace " TRACE " --iterations 0:5 --policy static --no-db"), 0);
  cr_assert_eq(err[0], '\0', "progress on a file: %s", err);
}

Test(user_path, an_interrupted_sweep_says_what_is_stored_and_how_to_resume, .timeout = 120) {
  int rc = sh("$F sweep --trace " TRACE " --gpus 8,16,32,64,128,256,512,1024 --jobs 2 "
              "--db $D/i.db --quiet & p=$!; sleep 2; kill -INT $p; wait $p");
  cr_assert_eq(rc, 130, "exit %d: %s", rc, err);
  HAS(err, "flexmoe sweep: interrupted: ");
  HAS(err, "are stored in ");
  HAS(err, "The same command resumes where it stopped:\n  flexmoe sweep --trace " TRACE
           " --gpus 8,16,32,64,128,256,512,1024 --jobs 2 --db ");
}
