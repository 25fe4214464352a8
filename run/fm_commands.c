/*
 * fm_commands.c - the table of commands (fm_commands.h): summaries and the
 * prose of every --help. The text is byte for byte what each command has
 * printed since its release; the flag entries between usage and tail come
 * from the CLI's flag rows and run/fm_keys.h.
 */
#include "run/fm_commands.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "flexmoe_config.h"
#include "run/fm_json.h"
#include "traces/tr_gen.h"

static const fm_command table[] = {
    {.name = "",
     .summary = "the flexmoe command",
     .usage = "flexmoe " FLEXMOE_VERSION " - which MoE expert placement policy makes training "
              "fastest on\n"
              "your cluster: a trace-driven simulator, a GPU runtime that checks it, and a\n"
              "results database.\n\n"
              "usage: flexmoe COMMAND [options]   (flexmoe COMMAND --help for each)\n\n"
              "commands:\n",
     .tail = "\nexample:\n  flexmoe sim --trace traces/samples/gpt-l6-e32-top2-aux-200.npy "
             "--cluster dgx-h100 --nodes 2\n"},
    {.name = "sim",
     .summary = "simulate policies on a routing trace and a modelled cluster",
     .usage = "usage: flexmoe sim --trace T [--cluster PRESET|FILE.json] [--gpus G] [--nodes N]\n"
              "                   [--gpus-per-node G] [--policy SPEC]... [--engine analytic|des]\n"
              "                   [--iterations A:B] [--seed S] [--d-model D] [--d-ff F]\n"
              "                   [--top-k K] [--tokens-per-gpu T] [--slots S] [--profile F.json]\n"
              "                   [--network hose|exact] [--threads N] [--db FILE | --no-db]\n"
              "                   [--strict] [--allow-empty] [--format table|json]\n"
              "\n"
              "Simulates MoE training on a routing trace with each placement policy and\n"
              "prints the comparison: mean iteration time, effective time (iteration\n"
              "time / (1 - dropped share of token slots): a policy that drops tokens\n"
              "pays for the work it skips), speedup over static in effective time, load\n"
              "balance (max/mean GPU load, worst layer) p50/p90, bytes migrated, tokens\n"
              "dropped, and the time breakdown. Each run goes into the results database.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe sim --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
             "      --cluster dgx-h100 --nodes 2 --policy static --policy capacity --engine des\n"},
    {.name = "sweep",
     .summary = "run a grid of policies x cluster sizes x traces x seeds",
     .usage =
         "usage: flexmoe sweep --trace T [--trace T2 ...] [--policy SPEC ...]\n"
         "                     [--cluster PRESET|FILE.json ...] --gpus 8,16,... | --nodes 1,2,...\n"
         "                     [--seeds 1,2] [--engine analytic|des] [--iterations A:B]\n"
         "                     [--gpus-per-node G] [--d-model D] [--d-ff F] [--top-k K]\n"
         "                     [--tokens-per-gpu T] [--slots S] [--profile FILE.json]\n"
         "                     [--plan-moves] [--jobs J] [--db FILE] [--lock-wait S]\n"
         "                     [--strict] [--allow-empty] [--quiet]\n"
         "\n"
         "Simulates every point of the grid traces x clusters x GPU counts x seeds x\n"
         "policies and stores each as one run (one transaction) in the database.\n"
         "Points already complete in the database are skipped, so an interrupted\n"
         "sweep resumes. Compare the results with `flexmoe report`. --trace,\n"
         "--policy and --cluster repeat; the policies default to static capacity\n"
         "fastermoe smartmoe eplb flexmoe oracle.\n"
         "\n",
     .tail = "\n"
             "Under MPI, `mpirun -n K flexmoe sweep ...` shares the grid over K ranks;\n"
             "rank 0 alone writes the database.\n"
             "\n"
             "example:\n"
             "  flexmoe sweep --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
             "      --cluster dgx-h100 --gpus 8,16,32,64,128,256,512,1024 --jobs 2\n"
             "  flexmoe report --db flexmoe.db\n"},
    {.name = "report",
     .summary = "print the runs stored in a results database",
     .usage = "usage: flexmoe report [--db FILE] [--format table|csv|json] [--kind sim|gpu]\n"
              "                      [--runs]\n"
              "\n"
              "Prints the runs stored in a results database: per configuration (trace,\n"
              "cluster, engine, iterations, seed, model shape and any other parameter\n"
              "that differs between runs: the header of each block) and number of GPUs,\n"
              "each policy's mean and effective iteration time, its speedup over\n"
              "`static` and its distance to the `oracle` lower bound (when those runs\n"
              "exist, in effective time), and the mean time breakdown per iteration.\n"
              "Runs of different configurations are never compared.\n"
              "\n",
     .tail = "\n"
             "columns: mean_ms = mean iteration time; eff_ms = mean_ms / (1 - dropped)\n"
             "(time per iteration of useful work; inf if every slot is dropped);\n"
             "speedup = static / policy and vs_oracle = policy / oracle - 1, both in\n"
             "eff_ms (vs_oracle only for dropless policies: the oracle processes every\n"
             "token); compute, a2a (dispatch + combine), allreduce (replica\n"
             "gradients), migr (expert moves), other: mean ms per iteration; balance =\n"
             "mean over iterations of max/mean GPU load; dropped = share of token\n"
             "slots dropped. eff_ms prices dropping as lost throughput only, not its\n"
             "effect on model quality.\n"
             "\n"
             "example:\n"
             "  flexmoe sweep --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
             "      --policy static --policy flexmoe --policy oracle --cluster dgx-h100 \\\n"
             "      --gpus 8,64 --db flexmoe.db\n"
             "  flexmoe report --db flexmoe.db --format table\n"},
    {.name = "trace",
     .summary = "inspect, import, generate, fit and rescale routing traces",
     .usage = "usage: flexmoe trace SUBCOMMAND [options]   (flexmoe trace SUBCOMMAND --help)\n"
              "\n"
              "Routing traces: counts[iteration][layer][rank][expert] of token slots, as\n"
              ".npy (+ .json sidecar) or long CSV (iteration,layer,rank,expert,tokens).\n"
              "\n"
              "subcommands:\n",
     .tail = "\nexample:\n  flexmoe trace info traces/samples/gpt-l6-e32-top2-aux-200.npy\n"},
    {.name = "trace info",
     .summary = "shape, metadata, tokens, skew and change per layer",
     .usage = "usage: flexmoe trace info FILE [--iterations A:B] [--format table|json]\n"
              "                          [--max-memory SIZE]\n"
              "\n"
              "What a routing trace holds: shape, dtype, model metadata from the .json sidecar,\n"
              "token slots per (iteration, layer), and per layer the expert max/mean load (median\n"
              "and p90 over iterations) and the step-to-step change (mean L1 distance between\n"
              "consecutive normalised load distributions, 0..2).\n"
              "FILE: .npy ([I,L,R,E] or [I,L,E]; int32, int64, uint16) or long CSV.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace info traces/samples/gpt-l6-e32-top2-aux-200.npy\n"},
    {.name = "trace stats",
     .summary = "skew, fluctuation, hot-expert persistence, rank variation",
     .usage = "usage: flexmoe trace stats FILE [--iterations A:B] [--format table|json]\n"
              "                           [--max-memory SIZE]\n"
              "\n"
              "Per layer: skew (expert max/mean load median and p90, Gini, normalised entropy),\n"
              "fluctuation (L1 distance between normalised load distributions at lags 1, 10 and\n"
              "100 iterations), persistence of the hot experts (share of the E/8 most loaded\n"
              "experts still among them 1 and 10 iterations later), and per-rank variation (L1\n"
              "distance of each rank's distribution from the layer's; CV of rank totals), and\n"
              "the distribution of the per-iteration lag-1 change (median, p90, p99): compare a\n"
              "real trace and one generated from its fit.\n"
              "Streams through the file: a trace larger than memory works.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace stats traces/samples/gpt-l6-e32-top2-aux-200.npy --format json\n"},
    {.name = "trace gen",
     .summary = "generate a synthetic trace (patterns or a fitted model), seeded",
     .usage =
         "usage: flexmoe trace gen (--pattern NAME | --fit FIT.json) --iterations N -o OUT.npy\n"
         "                         [--seed S] [--layers L] [--ranks R] [--experts E]\n"
         "                         [--tokens T] [--top-k K] [--max-memory SIZE]\n"
         "                         [model options]\n"
         "\n"
         "Generates a synthetic routing trace (.npy + .json sidecar), seeded: the same\n"
         "options and seed give the same file, byte for byte. Logits per expert =\n"
         "profile x scale + hot set + bursts + AR(1) fluctuation + per-rank noise;\n"
         "each rank draws tokens x top-k slots as a multinomial over softmax(logits).\n"
         "Sizes default to 4 layers, 8 ranks, 16 experts, 1024 tokens, top-2 (with --fit:\n"
         "the fit's). Model options (--dist to --ragged) adjust the pattern or the fit.\n"
         "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace gen --pattern hot-experts --layers 2 --experts 16 --iterations 50 "
             "--seed 7 "
             "-o hot.npy\n"},
    {.name = "trace fit",
     .summary = "fit the generator's model to a trace (-> FIT.json)",
     .usage = "usage: flexmoe trace fit FILE -o FIT.json [--iterations A:B] [--seed S]\n"
              "                         [--format table|json] [--max-memory SIZE]\n"
              "\n"
              "Estimates the generator's model from a trace, per layer: the base popularity\n"
              "profile (log mean share of each expert); the burst regimes of the per-iteration\n"
              "change (a two-state Markov-switching model of the log lag-1 change, fitted by\n"
              "maximum likelihood); then the profile scale, the AR(1) fluctuation of the logits,\n"
              "the spread of its steps and the per-rank noise, calibrated by simulation so the\n"
              "generated trace has the original's expert max/mean load median, median and p90\n"
              "of the lag-1 L1 change, L1 change at lag 10, and rank divergence. 'flexmoe trace\n"
              "gen --fit FIT.json' then makes longer or larger traces with the same statistics.\n"
              "Prints target vs fitted and the model. FIT.json is version 2 (version 1 files\n"
              "are still read, without bursts).\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace fit traces/samples/gpt-l6-e32-top2-aux-200.npy -o fit.json\n"},
    {.name = "trace rescale",
     .summary = "map a trace onto G GPUs and another token count, seeded",
     .usage = "usage: flexmoe trace rescale FILE --gpus G [--tokens-per-gpu T] [--seed S]\n"
              "                             [--iterations A:B] [--max-memory SIZE] -o OUT.npy\n"
              "\n"
              "Rescales a trace recorded on R ranks to G GPUs: GPU g takes the routing\n"
              "distribution of source rank g mod R at the same (iteration, layer), scaled to\n"
              "T tokens x top-k slots, drawn as a seeded multinomial (each GPU's total is\n"
              "exact; skew and fluctuation are preserved; the same seed gives the same file).\n"
              "With G = R and no --tokens-per-gpu the counts are copied. Streams slice by\n"
              "slice: neither trace is held in memory.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace rescale traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 64 "
             "--tokens-per-gpu 4096 --seed 1 -o g64.npy\n"},
    {.name = "trace import",
     .summary = "CSV, other axis orders, per-token expert ids -> .npy",
     .usage = "usage: flexmoe trace import FILE.csv|FILE.npy -o OUT.npy [--axes ORDER]\n"
              "                            [--expert-ids [--experts E]] [--iterations A:B]\n"
              "                            [--top-k K] [--d-model D] [--d-ff F]\n"
              "                            [--tokens-per-rank T] [--bytes-per-elem B]\n"
              "                            [--strict] [--max-memory SIZE]\n"
              "\n"
              "Converts a trace into flexmoe's .npy (+ .json sidecar), streaming:\n"
              "  long CSV with header iteration,layer,rank,expert,tokens (missing cells are 0,\n"
              "  repeated cells add up; dimensions = largest index + 1);\n"
              "  .npy [I,L,R,E] or [I,L,E] (e.g. to cut an --iterations excerpt);\n"
              "  .npy with another axis order: --axes names the file's axes in order, e.g.\n"
              "  --axes layer,iteration,expert,rank or --axes LIER (rank may be absent);\n"
              "  per-token expert ids (--expert-ids): a .npy [I, L, R, T, k] (or [I, L, T, k])\n"
              "  of expert ids, -1 = dropped slot; counts per (iteration, layer, rank, expert);\n"
              "  E = --experts or the largest id + 1; the sidecar gets top_k = k, tokens = T.\n"
              "A CSV is read into memory (I x L x R x E int64 counts from its largest indices);\n"
              "the other inputs are mapped and stream one slice at a time. The written trace\n"
              "is checked: empty ranks or iterations and ids that look 1-based are warnings\n"
              "on stderr; --strict makes them errors (nothing kept).\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe trace import routing.csv --top-k 2 --d-model 1024 --d-ff 4096 \\\n"
             "      --tokens-per-rank 4096 -o routing.npy\n"},
    {.name = "place",
     .summary = "print a policy's placement plan for a trace",
     .usage =
         "usage: flexmoe place --trace T [--gpus N] [--nodes M] [--gpus-per-node K] [--slots S]\n"
         "                     [--policy NAME[:key=value,...]] [--iteration I] [--layer L]\n"
         "                     [--cluster PRESET|FILE.json] [--d-model D] [--d-ff F]\n"
         "                     [--top-k K] [--tokens-per-gpu T] [--seed S]\n"
         "                     [--temporaries] [--strict] [--format table|json]\n"
         "\n"
         "Runs a placement policy over a routing trace (rescaled to N GPUs) up to\n"
         "iteration I and prints the placement it uses there: each expert's GPUs,\n"
         "each GPU's load after routing iteration I, the balance (max/mean GPU\n"
         "load) and the moves of that iteration's plan, for layer L or all layers.\n"
         "A framework can take the JSON plan as is.\n"
         "\n",
     .tail =
         "\n"
         "example:\n"
         "  flexmoe place --trace traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 8 \\\n"
         "      --slots 6 --policy flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0\n"},
    {.name = "policies",
     .summary = "list placement policies and their parameters",
     .usage = "usage: flexmoe policies [--format table|json]\n"
              "\n"
              "Lists the placement policies and their parameters with defaults. A policy\n"
              "is given to sim, place, sweep, run and validate as NAME or\n"
              "NAME:key=value,key=value (unknown keys are refused).\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe policies\n"
             "  flexmoe place --trace traces/samples/gpt-l6-e32-top2-aux-200.npy --gpus 8 \\\n"
             "      --policy flexmoe:threshold=1.2,horizon=50,slots=6\n"},
    {.name = "clusters",
     .summary = "list cluster presets with their numbers",
     .usage = "usage: flexmoe clusters [--gpus N] [--nodes N] [--gpus-per-node G]\n"
              "                        [--format table|json] [PRESET|FILE.json ...]\n"
              "\n"
              "Lists the cluster presets (or the named presets / cluster files) with their\n"
              "numbers: GPUs, compute profile, HBM, intra-node link, NIC, switch. Bandwidths\n"
              "are GB/s per direction, latencies microseconds. h200-green-N works for any\n"
              "N in 1..16 (one H200 split into N SM partitions). The JSON of one cluster\n"
              "is a cluster file: flexmoe clusters NAME --format json > FILE.json.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe clusters\n"
             "  flexmoe clusters --format json dgx-h100 h200-green-4\n"},
    {.name = "net",
     .summary = "finish times of a traffic matrix on a cluster",
     .usage = "usage: flexmoe net --flows FLOWS.csv [--cluster PRESET|FILE.json] [--gpus N]\n"
              "                   [--nodes N] [--gpus-per-node G] [--format table|json]\n"
              "\n"
              "Finish time of every flow of a traffic matrix on a modelled cluster, and the\n"
              "makespan. All flows start at time 0 and share the links (per-GPU NVLink/PCIe\n"
              "in and out, NICs, switch uplinks with oversubscription) by max-min fair\n"
              "sharing, recomputed whenever a flow ends; a flow takes its path's latency\n"
              "plus its bytes at its share of the bandwidth.\n"
              "\n",
     .tail = "\n"
             "example:\n"
             "  printf 'src_gpu,dst_gpu,bytes\\n0,1,1000000000\\n0,8,1000000000\\n' > f.csv\n"
             "  flexmoe net --cluster dgx-h100 --nodes 2 --flows f.csv\n"},
    {.name = "run",
     .summary = "replay a trace with a policy on the runtime (cpu, cuda, nccl)",
     .usage =
         "usage: flexmoe run --backend cpu|cuda|nccl --trace T --policy SPEC [--policy SPEC]...\n"
         "                   [--partitions N] [--ranks N] [--device D] [--iterations A:B] [--seed "
         "S]\n"
         "                   [--d-model D] [--d-ff F] [--top-k K] [--tokens-per-gpu T] [--slots "
         "S]\n"
         "                   [--profile FILE.json] [--check] [--db FILE | --no-db]\n"
         "                   [--format table|json]\n"
         "\n"
         "Replays the trace on a runtime backend: tokens generated from the seed and routed\n"
         "as the trace says (GPU g replays trace rank g mod R), dispatch, expert FFN forward\n"
         "and backward, combine, replica gradient all-reduce, and the policy's plans applied\n"
         "by really moving expert parameters and optimizer state. Per-phase times are\n"
         "measured (CUDA events on GPUs, the clock on cpu); input generation is not timed.\n"
         "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe run --backend cpu --ranks 4 --trace "
             "traces/samples/gpt-l6-e32-top2-aux-200.npy \\\n"
             "      --iterations 0:5 --d-model 64 --d-ff 128 --tokens-per-gpu 256 --policy static "
             "--check\n"},
    {.name = "calibrate",
     .summary = "measure a GPU and store a compute profile",
     .usage =
         "usage: flexmoe calibrate --backend cuda|cpu [--partitions N] [--ranks N] [--device D]\n"
         "                         [--d-model D] [--d-ff F] [--reps R] [--name NAME]\n"
         "                         [--db FILE | --no-db] [--out profile.json]\n"
         "                         [--format table|json]\n"
         "\n"
         "Measures the backend the way the runtime uses it: expert FFN forward and backward\n"
         "(bf16 cuBLAS GEMMs on GPUs) at 16..16384 tokens on every rank at once, a uniform\n"
         "dispatch all-to-all (permute, copies, regroup) at several sizes fitted as\n"
         "latency + bytes / bandwidth per rank, and the launch overhead of tiny kernels.\n"
         "Writes the simulator's profile JSON (--out P.json) and a cluster JSON beside it\n"
         "(P.cluster.json: one node of the ranks, the measured exchange numbers), and\n"
         "stores both in the database as profiles NAME and NAME.cluster (--db).\n"
         "\n",
     .tail = "\n"
             "example:\n"
             "  flexmoe calibrate --backend cuda --partitions 4 --d-model 1024 --d-ff 4096 \\\n"
             "      --out h200-green-4.json --db flexmoe.db\n"},
    {.name = "validate",
     .summary = "compare the runtime's measurements with the simulator",
     .usage =
         "usage: flexmoe validate --backend cpu|cuda|nccl --trace T [--policy SPEC]...\n"
         "                        [--partitions N] [--ranks N] [--iterations A:B] [--seed S]\n"
         "                        [--d-model D] [--d-ff F] [--top-k K] [--tokens-per-gpu T]\n"
         "                        [--slots S] [--profile P.json] [--engine analytic|des|cost]\n"
         "                        [--db FILE | --no-db] [--format table|json]\n"
         "\n"
         "Runs each policy twice on the same configuration: on the runtime backend\n"
         "(measured) and through the simulator with the calibrated profile of that\n"
         "backend (predicted), and prints predicted vs measured per phase with the\n"
         "relative error (predicted - measured) / measured. Without --profile the backend\n"
         "is calibrated first (as flexmoe calibrate), on the ranks the replay uses.\n"
         "Policies default to static, flexmoe, flexmoe:background=0 and eplb (those this\n"
         "build has). Every policy is validated at its defaults: background moves overlap\n"
         "the iteration on the runtime as in the simulator (docs/runtime.md, \"Background\n"
         "moves\"). Every policy is predicted before any is measured, so a configuration\n"
         "the simulator refuses fails at once. --ranks: at most the trace's ranks (cpu: a\n"
         "warning above the machine's cores). With --db both runs of every policy and the\n"
         "validations are stored once all are done (nothing for a validation that fails);\n"
         "--no-db (the default) stores nothing. An error is n/a where a phase was not\n"
         "measured; two phases both under a microsecond agree (0.0%).\n"
         "\n",
     .tail =
         "\n"
         "JSON: {\"runs\": [{\"policy\", \"predicted_ms\", \"measured_ms\", \"error\", "
         "\"phases\"}],\n"
         "       \"median_abs_error\", \"p95_abs_error\", \"ranking_agrees\", \"predictor\"}\n"
         "median_abs_error: over policies, of the mean iteration time; p95_abs_error: over\n"
         "policies x phases taking >= 5% of the iteration.\n"
         "\n"
         "example:\n"
         "  flexmoe validate --backend cuda --partitions 4 --trace gpt-l6-e32-top2-aux-200.npy \\\n"
         "      --iterations 0:50 --d-model 1024 --d-ff 4096 --policy static \\\n"
         "      --policy flexmoe --policy flexmoe:background=0 --policy eplb \\\n"
         "      --profile h200-green-4.json --db flexmoe.db --format json\n"},
    {.name = NULL}};

/* c's --help tail into buf (NUL-terminated, cut at len): trace gen's
 * starts with the generator's patterns ("  NAME  HELP", traces/tr_gen.h),
 * the others are their row's. */
static const char *tail_text(const fm_command *c, char *buf, size_t len) {
  if (strcmp(c->name, "trace gen") != 0)
    return c->tail;
  char list[2048] = "";
  for (int i = 0; tr_gen_patterns[i]; i++) {
    char line[160];
    snprintf(line, sizeof(line), "  %-19s %s\n", tr_gen_patterns[i], tr_gen_pattern_help[i]);
    strncat(list, line, sizeof(list) - strlen(list) - 1);
  }
  snprintf(buf, len, "\npatterns:\n%s%s", list, c->tail);
  return buf;
}

void fm_command_tail_print(const fm_command *c, FILE *out) {
  char buf[4096];
  fputs(tail_text(c, buf, sizeof buf), out);
}

const fm_command *fm_command_of(const char *name) {
  for (const fm_command *c = table; name && c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

/* The word of c's name under menu (after "menu "), or NULL when c is not
 * one of menu's commands. */
static const char *word_under(const fm_command *c, const char *menu) {
  size_t n = strlen(menu);
  const char *w = c->name;
  if (n) {
    if (strncmp(w, menu, n) != 0 || w[n] != ' ')
      return NULL;
    w += n + 1;
  }
  return w[0] && !strchr(w, ' ') ? w : NULL;
}

const fm_command *fm_command_in_menu(const char *menu, int i) {
  for (const fm_command *c = table; c->name; c++)
    if (word_under(c, menu) && i-- == 0)
      return c;
  return NULL;
}

void fm_command_menu_print(const char *menu, FILE *out) {
  const fm_command *m = fm_command_of(menu), *c;
  assert(m);
  int width = 0;
  for (int i = 0; (c = fm_command_in_menu(menu, i)); i++)
    if ((int)strlen(word_under(c, menu)) > width)
      width = (int)strlen(word_under(c, menu));
  fputs(m->usage, out);
  for (int i = 0; (c = fm_command_in_menu(menu, i)); i++)
    fprintf(out, "  %-*s %s\n", width + 1, word_under(c, menu), c->summary);
  fputs(m->tail, out);
}

char *fm_commands_json_text(void) {
  json_t *list = json_array();
  int bad = !list;
  char buf[4096];
  for (const fm_command *c = table; c->name && !bad; c++)
    bad |= json_array_append_new(
        list, json_pack("{s:o, s:o, s:o, s:o}", "name", fm_json_string(c->name), "summary",
                        fm_json_string(c->summary), "usage", fm_json_string(c->usage), "tail",
                        fm_json_string(tail_text(c, buf, sizeof buf))));
  char *text = bad ? NULL : json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(list);
  return text;
}
