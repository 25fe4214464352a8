/*
 * fm_keys.h - the one table of configuration keys: every key of a
 * simulation (`flexmoe sim`, fm_simulate_json, flexmoe.simulate) and of a
 * sweep (`flexmoe sweep`, fm_sweep_json, flexmoe.sweep), with its CLI flag,
 * its JSON / Python name, type, range, default, unit and help text.
 *
 * The faces read this table instead of keeping copies: the CLI's flag
 * parsers take their ranges from it and print its help lines; the JSON
 * entry points (run/fm_api.c) check a request's keys and ranges against it;
 * the simulator's resolve steps check the model numbers against the same
 * ranges (the values may also come from the trace's sidecar); the Python
 * package lists it (flexmoe.keys(), from fm_keys_json). An error names the
 * key the way its face spells it: the flag for the CLI ("--top-k"), the
 * JSON name for JSON and Python ("top_k"): fm_key_name.
 *
 * The table also holds the other commands' keys (run, validate,
 * calibrate, place, the trace tools: FM_REPLAY_KEYS and the lists after
 * it), so each of the CLI's flag rows is a reference to a key.
 *
 * Invariants: one row per key; names unique, flags unique within each
 * scope bit; lo <= hi for the
 * numeric types; a key's default lies in its range or means "resolved
 * later" (0 for nodes, model numbers and slots: from the preset, the trace
 * or the HBM). The table is only appended to; ids are not stored anywhere.
 * Owned by the run library authors (run/fm_keys.c).
 */
#ifndef FLEXMOE_RUN_FM_KEYS_H
#define FLEXMOE_RUN_FM_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* What a key's value is. */
typedef enum fm_key_type {
  FM_KT_PATH,     /* a file path */
  FM_KT_STRING,   /* a name or a file (cluster: preset or .json) */
  FM_KT_CHOICE,   /* one of the words of `choices` ("analytic|des") */
  FM_KT_INT,      /* an integer in [lo, hi] */
  FM_KT_INT_LIST, /* integers in [lo, hi]: "8,16" on the CLI, a list in JSON */
  FM_KT_SPECS,    /* policy specs: the flag repeated, a list in JSON */
  FM_KT_RANGE,    /* iterations [A, B): "A:B" on the CLI, "A:B" or [A, B] in JSON */
  FM_KT_BOOL,     /* a flag without value; true/false in JSON */
  FM_KT_SIZE      /* a memory size: bytes, or a number with K, M, G or T (512M, 4G) */
} fm_key_type;

/* Which configurations take a key (a bit mask): a simulation and a sweep
 * (also through JSON and Python), then the other commands' own keys (the
 * CLI's; their JSON names are "COMMAND.key"). */
enum {
  FM_KS_SIM = 1,
  FM_KS_SWEEP = 2,
  FM_KS_BOTH = 3,
  FM_KS_RUN = 4,        /* flexmoe run */
  FM_KS_VALIDATE = 8,   /* flexmoe validate */
  FM_KS_REPLAY = FM_KS_RUN | FM_KS_VALIDATE, /* one runtime replay */
  FM_KS_CALIBRATE = 16, /* flexmoe calibrate */
  FM_KS_PLACE = 32,     /* flexmoe place */
  FM_KS_INFO = 64,      /* flexmoe trace info and trace stats */
  FM_KS_GEN = 128,      /* flexmoe trace gen */
  FM_KS_FIT = 256,      /* flexmoe trace fit */
  FM_KS_RESCALE = 512,  /* flexmoe trace rescale */
  FM_KS_IMPORT = 1024,  /* flexmoe trace import */
  FM_KS_TRACE = FM_KS_INFO | FM_KS_GEN | FM_KS_FIT | FM_KS_RESCALE | FM_KS_IMPORT,
  FM_KS_NET = 2048,     /* flexmoe net */
  FM_KS_CLUSTERS = 4096 /* flexmoe clusters */
};

#define FM_KEY_INT64_MAX INT64_C(9223372036854775807)

/*
 * X(ID, FLAG, NAME, TYPE, LO, HI, DEFAULT, CHOICES, ARG, UNIT, SCOPE, HELP)
 *   FLAG     the CLI's flag; NAME the JSON key and Python keyword
 *   LO, HI   inclusive range of an integer (0, 0 for other types)
 *   DEFAULT  the default in words (what a run that names nothing gets)
 *   CHOICES  "a|b" for FM_KT_CHOICE, else ""
 *   ARG      the value's placeholder in help ("N", "A:B"; "" for a bool)
 *   UNIT     "" when none
 *   HELP     one sentence, no trailing period (help text and Python docs)
 * The physical limit of tokens_per_gpu (2^30, also applied to a trace's
 * own count) is the simulator's, with its limits (docs/simulator.md
 * "Limits"); the key accepts up to 2^40 and the simulator names its limit.
 */
#define FM_KEYS(X)                                                                              \
  X(TRACE, "--trace", "trace", FM_KT_PATH, 0, 0, "required", "", "T", "", FM_KS_BOTH,           \
    "routing trace (.npy with optional .json sidecar, or .csv)")                                \
  X(CLUSTER, "--cluster", "cluster", FM_KT_STRING, 0, 0, "dgx-h100", "", "C", "", FM_KS_BOTH,   \
    "preset (flexmoe clusters) or cluster JSON file")                                            \
  X(NODES, "--nodes", "nodes", FM_KT_INT, 1, 65536, "the preset's", "", "N", "nodes",           \
    FM_KS_SIM, "nodes of the cluster")                                                          \
  X(GPUS, "--gpus", "gpus", FM_KT_INT_LIST, 1, 2147483647, "required", "", "LIST", "GPUs",      \
    FM_KS_SWEEP,                                                                                \
    "cluster sizes in GPUs, e.g. 8,16,32; a size below a node's GPU count is one partial "     \
    "node, above it must be a multiple of it")                                                  \
  X(GPUS_PER_NODE, "--gpus-per-node", "gpus_per_node", FM_KT_INT, 1, 65536, "the preset's",    \
    "", "G", "GPUs", FM_KS_BOTH, "GPUs per node")                                               \
  X(POLICY, "--policy", "policies", FM_KT_SPECS, 0, 0, "every registered policy", "", "SPEC",  \
    "", FM_KS_BOTH,                                                                             \
    "placement policy, NAME or NAME:key=value,... (flexmoe policies); repeat to compare")      \
  X(ENGINE, "--engine", "engine", FM_KT_CHOICE, 0, 0, "analytic", "analytic|des", "E", "",      \
    FM_KS_BOTH,                                                                                 \
    "analytic (closed form per layer) or des (discrete events: flows share links, overlap, "   \
    "contention)")                                                                              \
  X(NETWORK, "--network", "network", FM_KT_CHOICE, 0, 0, "hose", "hose|exact", "N", "",         \
    FM_KS_SIM,                                                                                  \
    "des only: hose (4 flows per GPU per all-to-all) or exact (one flow per GPU pair; slower)") \
  X(ITERATIONS, "--iterations", "iterations", FM_KT_RANGE, 0, 0, "all", "", "A:B", "",         \
    FM_KS_BOTH, "simulate iterations [A, B) of the trace")                                      \
  X(SEED, "--seed", "seed", FM_KT_INT, 0, FM_KEY_INT64_MAX, "0", "", "S", "", FM_KS_SIM,        \
    "seed of the trace rescaling and of the policies")                                          \
  X(SEEDS, "--seeds", "seeds", FM_KT_INT_LIST, 0, FM_KEY_INT64_MAX, "0", "", "LIST", "",       \
    FM_KS_SWEEP, "seeds, one point each")                                                       \
  X(D_MODEL, "--d-model", "d_model", FM_KT_INT, 1, 1 << 20, "the trace's sidecar", "", "D",    \
    "", FM_KS_BOTH, "model width")                                                              \
  X(D_FF, "--d-ff", "d_ff", FM_KT_INT, 1, 1 << 22, "the trace's sidecar", "", "F", "",         \
    FM_KS_BOTH, "expert FFN width")                                                             \
  X(TOP_K, "--top-k", "top_k", FM_KT_INT, 1, 64, "the trace's sidecar", "", "K", "experts",    \
    FM_KS_BOTH, "experts per token")                                                            \
  X(TOKENS_PER_GPU, "--tokens-per-gpu", "tokens_per_gpu", FM_KT_INT, 1, INT64_C(1) << 40,      \
    "the trace's", "", "T", "tokens", FM_KS_BOTH,                                               \
    "tokens per GPU per iteration (the simulator takes at most 2^30)")                         \
  X(SLOTS, "--slots", "slots", FM_KT_INT, 1, 2147483647, "from HBM", "", "S", "expert slots",  \
    FM_KS_BOTH, "expert slots per GPU and layer")                                               \
  X(PROFILE, "--profile", "profile", FM_KT_PATH, 0, 0, "built-in for the cluster's GPU", "",    \
    "F.json", "", FM_KS_BOTH, "compute profile")                                                \
  X(THREADS, "--threads", "threads", FM_KT_INT, 1, 256, "the machine's cores", "", "N",        \
    "threads", FM_KS_SIM,                                                                       \
    "threads of one run: helpers draw the rescaled counts ahead, draw and route the layers "   \
    "in parallel, and plan the next iteration while the engine times one; byte-identical "     \
    "results for any N")                                                                        \
  X(DB, "--db", "db", FM_KT_PATH, 0, 0, "flexmoe.db", "", "FILE", "", FM_KS_BOTH,               \
    "results database the runs are recorded in")                                                \
  X(JOBS, "--jobs", "jobs", FM_KT_INT, 1, 256, "1", "", "J", "processes", FM_KS_SWEEP,         \
    "worker processes")                                                                         \
  X(LOCK_WAIT, "--lock-wait", "lock_wait", FM_KT_INT, 0, 3600, "30", "", "S", "s",             \
    FM_KS_SWEEP, "seconds to wait while another process writes the database; then it fails")  \
  X(PLAN_MOVES, "--plan-moves", "plan_moves", FM_KT_BOOL, 0, 1, "false", "", "", "",           \
    FM_KS_SWEEP,                                                                                \
    "also store every plan's moves (plans.moves_json), not only each plan's move count and "   \
    "bytes")

/*
 * The other commands' keys, in the same layout; their HELP is written
 * whole (range and default in the runtime's or the trace tools' words),
 * nothing is appended to it. Ranges: the runtime's buffers (run,
 * validate, calibrate), the trace library's physical limits
 * (traces/tr_trace.h TR_LIMIT_MAP: iterations 2^24, layers 4096, ranks,
 * experts, top_k and d_model 2^20, d_ff 2^22, tokens 2^40, bytes 8;
 * tests/run/test_fm_keys.c checks they agree), SIM_MAX_GPUS (65536).
 */
#define FM_REPLAY_KEYS(X)                                                                       \
  X(RUN_BACKEND, "--backend", "run.backend", FM_KT_STRING, 0, 0, "required", "", "B", "",       \
    FM_KS_REPLAY,                                                                               \
    "cpu (reference, ranks are threads), cuda (one process: GPUs, or --partitions N SM "        \
    "partitions of one GPU), nccl (under mpirun, one process per GPU)")                         \
  X(RUN_PARTITIONS, "--partitions", "run.partitions", FM_KT_INT, 1, 64, "none", "", "N", "",   \
    FM_KS_REPLAY, "cuda: N green-context SM partitions of one GPU as N ranks")                 \
  X(RUN_RANKS, "--ranks", "run.ranks", FM_KT_INT, 1, 4096, "the backend's", "", "N", "",       \
    FM_KS_REPLAY,                                                                               \
    "ranks, 1..4096 (cpu: default the trace's ranks; cuda: GPUs, default 1; nccl: default "    \
    "the MPI world size)")                                                                      \
  X(RUN_DEVICE, "--device", "run.device", FM_KT_INT, 0, 1024, "0", "", "D", "", FM_KS_REPLAY,  \
    "CUDA device, 0..1024 (default 0)")                                                         \
  X(RUN_ITERATIONS, "--iterations", "run.iterations", FM_KT_RANGE, 0, 0, "all", "", "A:B", "", \
    FM_KS_REPLAY, "iterations [A, B) of the trace (default all)")                               \
  X(RUN_SEED, "--seed", "run.seed", FM_KT_INT, 0, FM_KEY_INT64_MAX, "0", "", "S", "",          \
    FM_KS_REPLAY,                                                                               \
    "seed of the generated tokens and of the policies, 0..2^63-1 (default 0)")                 \
  X(RUN_D_MODEL, "--d-model", "run.d_model", FM_KT_INT, 8, 1 << 16, "the trace's sidecar", "", \
    "D", "", FM_KS_REPLAY, "model width, 8..65536 (default: the trace's sidecar)")             \
  X(RUN_D_FF, "--d-ff", "run.d_ff", FM_KT_INT, 8, 1 << 18, "the trace's sidecar", "", "F", "", \
    FM_KS_REPLAY, "expert FFN width, 8..262144 (default: the trace's sidecar)")                \
  X(RUN_TOKENS_PER_GPU, "--tokens-per-gpu", "run.tokens_per_gpu", FM_KT_INT, 1,               \
    INT64_C(1) << 30, "its own count", "", "T", "", FM_KS_REPLAY,                              \
    "tokens each rank routes per layer, 1..2^30 (default: its own count)")                     \
  X(RUN_SLOTS, "--slots", "run.slots", FM_KT_INT, 1, 4096, "ceil(1.5 E / G)", "", "S", "",     \
    FM_KS_REPLAY, "expert slots per rank per layer, 1..4096 (default ceil(1.5 E / G))")        \
  X(RUN_POLICY, "--policy", "run.policies", FM_KT_SPECS, 0, 0, "required", "", "SPEC", "",     \
    FM_KS_RUN,                                                                                  \
    "placement policy, NAME or NAME:key=value,... (flexmoe policies); repeat to run several "   \
    "(at most 64)")                                                                             \
  X(RUN_PROFILE, "--profile", "run.profile", FM_KT_PATH, 0, 0, "the built-in", "", "F.json",   \
    "", FM_KS_RUN,                                                                              \
    "calibrated profile (flexmoe calibrate --out) for the policies' cost model; its "          \
    ".cluster.json sibling gives the exchange numbers")                                         \
  X(RUN_CHECK, "--check", "run.check", FM_KT_BOOL, 0, 1, "false", "", "", "", FM_KS_RUN,       \
    "compare the last iteration with a single-device reference and verify every replica's "    \
    "parameter checksum (small shapes)")                                                        \
  X(RUN_DB, "--db", "run.db", FM_KT_PATH, 0, 0, "none", "", "FILE", "", FM_KS_RUN,             \
    "record each run (kind gpu) in the results database (default: none)")                      \
  X(VALIDATE_POLICY, "--policy", "validate.policies", FM_KT_SPECS, 0, 0,                       \
    "static, flexmoe, flexmoe:background=0, eplb", "", "SPEC", "", FM_KS_VALIDATE,             \
    "placement policy, NAME or NAME:key=value,... (flexmoe policies); repeat to validate "      \
    "several (default static, flexmoe, flexmoe:background=0, eplb)")                           \
  X(VALIDATE_PROFILE, "--profile", "validate.profile", FM_KT_PATH, 0, 0, "calibrate now", "",  \
    "F.json", "", FM_KS_VALIDATE,                                                               \
    "calibrated profile (flexmoe calibrate --out; default: calibrate now)")                    \
  X(VALIDATE_ENGINE, "--engine", "validate.engine", FM_KT_CHOICE, 0, 0, "analytic",            \
    "analytic|des|cost", "E", "", FM_KS_VALIDATE,                                               \
    "the simulator's analytic (default) or discrete-event (des) engine, or 'cost': the "       \
    "placement library's cost model alone, as the planners see the run")                       \
  X(VALIDATE_DB, "--db", "validate.db", FM_KT_PATH, 0, 0, "none", "", "FILE", "",              \
    FM_KS_VALIDATE,                                                                             \
    "store both runs of every policy and the validations (default: none)")                     \
  X(CALIBRATE_BACKEND, "--backend", "calibrate.backend", FM_KT_STRING, 0, 0, "required", "",   \
    "B", "", FM_KS_CALIBRATE, "cuda (GPUs, or --partitions N SM partitions of one GPU) or cpu") \
  X(CALIBRATE_PARTITIONS, "--partitions", "calibrate.partitions", FM_KT_INT, 1, 64, "none", "", \
    "N", "", FM_KS_CALIBRATE, "cuda: measure N green-context SM partitions of one GPU")        \
  X(CALIBRATE_RANKS, "--ranks", "calibrate.ranks", FM_KT_INT, 1, 64,                           \
    "the partitions, 2 on cpu, else 1", "", "N", "", FM_KS_CALIBRATE,                          \
    "ranks, 1..64 (default: the partitions, 2 on cpu, else 1)")                                \
  X(CALIBRATE_DEVICE, "--device", "calibrate.device", FM_KT_INT, 0, 1024, "0", "", "D", "",    \
    FM_KS_CALIBRATE, "CUDA device, 0..1024 (default 0)")                                        \
  X(CALIBRATE_D_MODEL, "--d-model", "calibrate.d_model", FM_KT_INT, 8, 1 << 16,              \
    "2048 on GPUs, 64 on cpu", "", "D", "", FM_KS_CALIBRATE,                                    \
    "expert shape: model width, 8..65536, a multiple of 8 (default 2048 on GPUs; 64 on cpu, "  \
    "whose FFN is plain loops: at 2048 it takes hours there)")                                 \
  X(CALIBRATE_D_FF, "--d-ff", "calibrate.d_ff", FM_KT_INT, 8, 1 << 18,                         \
    "8192 on GPUs, 128 on cpu", "", "F", "", FM_KS_CALIBRATE,                                   \
    "expert FFN width, 8..262144, a multiple of 8 (default 8192 on GPUs, 128 on cpu)")         \
  X(CALIBRATE_REPS, "--reps", "calibrate.reps", FM_KT_INT, 1, 100000, "20 on GPUs, 5 on cpu",  \
    "", "R", "", FM_KS_CALIBRATE, "timed repetitions per point (default 20 on GPUs, 5 on cpu)") \
  X(CALIBRATE_NAME, "--name", "calibrate.name", FM_KT_STRING, 0, 0,                            \
    "h200-green-N, cuda-N or cpu-N", "", "NAME", "", FM_KS_CALIBRATE,                           \
    "profile name (default h200-green-N, cuda-N or cpu-N)")                                    \
  X(CALIBRATE_DB, "--db", "calibrate.db", FM_KT_PATH, 0, 0, "none", "", "FILE", "",            \
    FM_KS_CALIBRATE,                                                                            \
    "store the profile as NAME and NAME.cluster in the database (default: none)")              \
  X(CALIBRATE_OUT, "--out", "calibrate.out", FM_KT_PATH, 0, 0, "none", "", "P.json", "",       \
    FM_KS_CALIBRATE, "write the profile to P.json and P.cluster.json")

#define FM_PLACE_KEYS(X)                                                                        \
  X(PLACE_GPUS, "--gpus", "place.gpus", FM_KT_INT, 1, 65536, "the cluster's", "", "N", "",     \
    FM_KS_PLACE,                                                                                \
    "GPUs to place on (any N; GPU g replays rank g mod R; default: the cluster's, nodes x "     \
    "GPUs per node)")                                                                           \
  X(PLACE_NODES, "--nodes", "place.nodes", FM_KT_INT, 1, 65536, "the cluster's", "", "M", "",  \
    FM_KS_PLACE, "nodes (with --gpus: N/M GPUs each)")                                          \
  X(PLACE_GPUS_PER_NODE, "--gpus-per-node", "place.gpus_per_node", FM_KT_INT, 1, 65536,       \
    "the cluster's", "", "K", "", FM_KS_PLACE,                                                  \
    "GPUs per node (default: the cluster's, at most N)")                                        \
  X(PLACE_SLOTS, "--slots", "place.slots", FM_KT_INT, 1, 1 << 20, "from HBM", "", "S", "",     \
    FM_KS_PLACE,                                                                                \
    "expert slots per GPU per layer (default: from HBM, half reserved; at most the number of " \
    "experts)")                                                                                 \
  X(PLACE_POLICY, "--policy", "place.policy", FM_KT_STRING, 0, 0, "flexmoe", "", "SPEC", "",   \
    FM_KS_PLACE, "policy and parameters (default flexmoe; see 'flexmoe policies')")            \
  X(PLACE_ITERATION, "--iteration", "place.iteration", FM_KT_INT, 0, INT64_C(1) << 40,        \
    "the last", "", "I", "", FM_KS_PLACE, "iteration to show (default: the last)")             \
  X(PLACE_LAYER, "--layer", "place.layer", FM_KT_INT, 0, 1 << 20, "all", "", "L", "",          \
    FM_KS_PLACE, "one layer (default: all)")

/* The trace tools' keys (`flexmoe trace SUB`); the model options of trace
 * gen are text its generator parses (run/fm_trace.h fm_gen_option). */
#define FM_TRACE_KEYS(X)                                                                        \
  X(TRACE_MAX_MEMORY, "--max-memory", "trace.max_memory", FM_KT_SIZE, 0, 0,                    \
    "half of physical memory", "", "SIZE", "", FM_KS_TRACE,                                    \
    "what it may allocate (512M, 4G; default half of physical memory)")                        \
  X(TRACE_ITERATIONS, "--iterations", "trace.iterations", FM_KT_RANGE, 0, 0, "all", "", "A:B", \
    "", FM_KS_INFO | FM_KS_RESCALE, "only iterations [A, B)")                                   \
  X(GEN_PATTERN, "--pattern", "trace.gen.pattern", FM_KT_STRING, 0, 0, "none", "", "NAME", "", \
    FM_KS_GEN, "a named pattern (below); model options then adjust it")                        \
  X(GEN_FIT, "--fit", "trace.gen.fit", FM_KT_PATH, 0, 0, "none", "", "FIT.json", "", FM_KS_GEN, \
    "the model fitted by 'flexmoe trace fit' (its sizes by default)")                          \
  X(GEN_ITERATIONS, "--iterations", "trace.gen.iterations", FM_KT_INT, 1, 16777216,            \
    "required", "", "N", "", FM_KS_GEN, "iterations to generate (required)")                   \
  X(GEN_SEED, "--seed", "trace.gen.seed", FM_KT_INT, 0, FM_KEY_INT64_MAX, "1", "", "S", "",    \
    FM_KS_GEN, "random seed, 0 to 2^63 - 1 (default 1)")                                        \
  X(GEN_OUTPUT, "--output", "trace.gen.output", FM_KT_PATH, 0, 0, "required", "", "OUT.npy",   \
    "", FM_KS_GEN, "the generated trace (required)")                                            \
  X(GEN_LAYERS, "--layers", "trace.gen.layers", FM_KT_INT, 1, 4096, "4", "", "N", "",          \
    FM_KS_GEN, "layers")                                                                        \
  X(GEN_RANKS, "--ranks", "trace.gen.ranks", FM_KT_INT, 1, 1 << 20, "8", "", "N", "",          \
    FM_KS_GEN, "ranks")                                                                         \
  X(GEN_EXPERTS, "--experts", "trace.gen.experts", FM_KT_INT, 1, 1 << 20, "16", "", "N", "",   \
    FM_KS_GEN, "experts")                                                                       \
  X(GEN_TOKENS, "--tokens", "trace.gen.tokens", FM_KT_INT, 0, INT64_C(1) << 40, "1024", "",    \
    "N", "", FM_KS_GEN, "tokens per rank (0: a trace that routes nothing)")                    \
  X(GEN_TOP_K, "--top-k", "trace.gen.top_k", FM_KT_INT, 1, 1 << 20, "2", "", "N", "",          \
    FM_KS_GEN, "experts per token")                                                             \
  X(GEN_D_MODEL, "--d-model", "trace.gen.d_model", FM_KT_INT, 1, 1 << 20, "none", "", "D", "", \
    FM_KS_GEN, "model width written to the sidecar")                                            \
  X(GEN_D_FF, "--d-ff", "trace.gen.d_ff", FM_KT_INT, 1, 1 << 22, "none", "", "F", "",          \
    FM_KS_GEN, "expert FFN width written to the sidecar")                                       \
  X(GEN_DIST, "--dist", "trace.gen.dist", FM_KT_STRING, 0, 0, "the pattern's", "", "D[:P]", "", \
    FM_KS_GEN,                                                                                  \
    "base popularity: uniform, zipf, lognormal or dirichlet (P: Zipf exponent, log-normal "     \
    "sigma, Dirichlet alpha)")                                                                  \
  X(GEN_DRIFT, "--drift", "trace.gen.drift", FM_KT_STRING, 0, 0, "the pattern's", "",          \
    "INNOV[:PHI]", "", FM_KS_GEN,                                                               \
    "AR(1) on the logits: z = PHI z + INNOV N(0,1); PHI 1 = random walk")                      \
  X(GEN_MOMENTUM, "--momentum", "trace.gen.momentum", FM_KT_STRING, 0, 0, "the pattern's", "", \
    "PSI", "", FM_KS_GEN, "trends persist: the step itself is AR(1) with coefficient PSI")     \
  X(GEN_RANK_SIGMA, "--rank-sigma", "trace.gen.rank_sigma", FM_KT_STRING, 0, 0,               \
    "the pattern's", "", "S", "", FM_KS_GEN, "per-rank logit noise")                           \
  X(GEN_HOT, "--hot", "trace.gen.hot", FM_KT_STRING, 0, 0, "the pattern's", "", "N[:BOOST]",   \
    "", FM_KS_GEN, "N hot experts with BOOST extra logits (default ln 8)")                     \
  X(GEN_SPREAD, "--spread", "trace.gen.spread", FM_KT_BOOL, 0, 1, "false", "", "", "",         \
    FM_KS_GEN, "hot experts spread over the ids instead of contiguous")                        \
  X(GEN_ROTATE, "--rotate", "trace.gen.rotate", FM_KT_STRING, 0, 0, "the pattern's", "", "P",  \
    "", FM_KS_GEN, "the hot set moves by one expert every P iterations")                       \
  X(GEN_BURST, "--burst", "trace.gen.burst", FM_KT_STRING, 0, 0, "the pattern's", "", "PROB",  \
    "", FM_KS_GEN, "per expert and iteration, chance of a 16x burst for 3 iterations")         \
  X(GEN_REGIME, "--regime", "trace.gen.regime", FM_KT_STRING, 0, 0, "the pattern's", "", "P",  \
    "", FM_KS_GEN, "re-shuffle the popularity every P iterations")                             \
  X(GEN_RAGGED, "--ragged", "trace.gen.ragged", FM_KT_STRING, 0, 0, "the pattern's", "",       \
    "SIGMA", "", FM_KS_GEN, "ranks route log-normal different token totals")                   \
  X(FIT_OUTPUT, "--output", "trace.fit.output", FM_KT_PATH, 0, 0, "required", "", "FIT.json",  \
    "", FM_KS_FIT, "where to write the model (temp + rename; required)")                       \
  X(FIT_ITERATIONS, "--iterations", "trace.fit.iterations", FM_KT_RANGE, 0, 0, "all", "",      \
    "A:B", "", FM_KS_FIT, "fit only iterations [A, B)")                                         \
  X(FIT_SEED, "--seed", "trace.fit.seed", FM_KT_INT, 0, FM_KEY_INT64_MAX, "1", "", "S", "",    \
    FM_KS_FIT, "calibration random stream, 0 to 2^63 - 1 (default 1)")                        \
  X(RESCALE_GPUS, "--gpus", "trace.rescale.gpus", FM_KT_INT, 1, 1 << 20, "required", "", "G",  \
    "", FM_KS_RESCALE, "GPUs of the simulated cluster (required)")                             \
  X(RESCALE_TOKENS_PER_GPU, "--tokens-per-gpu", "trace.rescale.tokens_per_gpu", FM_KT_INT, 1,  \
    INT64_C(1) << 40, "each source rank's own", "", "T", "", FM_KS_RESCALE,                    \
    "tokens per GPU per iteration (default: each source rank's own; slots = T x top_k from "    \
    "the sidecar, or T when top_k is unknown)")                                                 \
  X(RESCALE_SEED, "--seed", "trace.rescale.seed", FM_KT_INT, 0, FM_KEY_INT64_MAX, "0", "",     \
    "S", "", FM_KS_RESCALE, "random seed, 0 to 2^63 - 1 (default 0, as everywhere)")           \
  X(RESCALE_OUTPUT, "--output", "trace.rescale.output", FM_KT_PATH, 0, 0, "required", "",      \
    "OUT.npy", "", FM_KS_RESCALE, "the rescaled trace (required)")                             \
  X(IMPORT_OUTPUT, "--output", "trace.import.output", FM_KT_PATH, 0, 0, "required", "",        \
    "OUT.npy", "", FM_KS_IMPORT, "the imported trace (required)")                              \
  X(IMPORT_AXES, "--axes", "trace.import.axes", FM_KT_STRING, 0, 0, "iteration,layer,rank,expert", \
    "", "ORDER", "", FM_KS_IMPORT,                                                              \
    "the input .npy's axes in order (iteration,layer,rank,expert or LIER)")                    \
  X(IMPORT_EXPERT_IDS, "--expert-ids", "trace.import.expert_ids", FM_KT_BOOL, 0, 1, "false",   \
    "", "", "", FM_KS_IMPORT, "the input holds per-token expert ids")                          \
  X(IMPORT_EXPERTS, "--experts", "trace.import.experts", FM_KT_INT, 1, 1 << 20,               \
    "largest id + 1", "", "E", "", FM_KS_IMPORT,                                                \
    "with --expert-ids: E (default: largest id + 1)")                                          \
  X(IMPORT_ITERATIONS, "--iterations", "trace.import.iterations", FM_KT_RANGE, 0, 0, "all", "", \
    "A:B", "", FM_KS_IMPORT, "only iterations [A, B) (.npy and .csv inputs)")                  \
  X(IMPORT_TOP_K, "--top-k", "trace.import.top_k", FM_KT_INT, 1, 1 << 20, "unknown", "", "N",  \
    "", FM_KS_IMPORT, "experts per token (the sidecar's; 0 or absent: unknown)")               \
  X(IMPORT_D_MODEL, "--d-model", "trace.import.d_model", FM_KT_INT, 1, 1 << 20, "unknown", "", \
    "N", "", FM_KS_IMPORT, "model width (the sidecar's; 0 or absent: unknown)")                \
  X(IMPORT_D_FF, "--d-ff", "trace.import.d_ff", FM_KT_INT, 1, 1 << 22, "unknown", "", "N", "", \
    FM_KS_IMPORT, "expert FFN width (the sidecar's; 0 or absent: unknown)")                    \
  X(IMPORT_TOKENS_PER_RANK, "--tokens-per-rank", "trace.import.tokens_per_rank", FM_KT_INT, 1, \
    INT64_C(1) << 40, "unknown", "", "T", "", FM_KS_IMPORT,                                     \
    "tokens (not slots) per rank per iteration (the sidecar's)")                               \
  X(IMPORT_BYTES_PER_ELEM, "--bytes-per-elem", "trace.import.bytes_per_elem", FM_KT_INT, 1, 8, \
    "unknown", "", "N", "", FM_KS_IMPORT,                                                       \
    "bytes per element (the sidecar's; 0 or absent: unknown)")                                  \
  X(IMPORT_STRICT, "--strict", "trace.import.strict", FM_KT_BOOL, 0, 1, "false", "", "", "",   \
    FM_KS_IMPORT, "trace warnings are errors, and the output is removed")

/* `flexmoe net` and `flexmoe clusters`: a cluster resized (whole nodes). */
#define FM_CLUSTER_KEYS(X)                                                                      \
  X(NET_FLOWS, "--flows", "net.flows", FM_KT_PATH, 0, 0, "required", "", "F", "", FM_KS_NET,  \
    "CSV with header src_gpu,dst_gpu,bytes (one flow a line, at most 2^20; GPUs are 0..G-1, "  \
    "node = gpu / gpus-per-node; bytes 0..2^50)")                                               \
  X(NET_GPUS, "--gpus", "net.gpus", FM_KT_INT, 1, 65536, "the cluster's", "", "N", "",         \
    FM_KS_NET, "resize the cluster to N GPUs (whole nodes)")                                   \
  X(NET_NODES, "--nodes", "net.nodes", FM_KT_INT, 1, 65536, "the cluster's", "", "N", "",      \
    FM_KS_NET, "... to N nodes")                                                                \
  X(NET_GPUS_PER_NODE, "--gpus-per-node", "net.gpus_per_node", FM_KT_INT, 1, 65536,            \
    "the cluster's", "", "G", "", FM_KS_NET, "... of G GPUs")                                   \
  X(CLUSTERS_GPUS, "--gpus", "clusters.gpus", FM_KT_INT, 1, 65536, "the preset's", "", "N", "", \
    FM_KS_CLUSTERS, "show the clusters resized to N GPUs (whole nodes)")                       \
  X(CLUSTERS_NODES, "--nodes", "clusters.nodes", FM_KT_INT, 1, 65536, "the preset's", "", "N",  \
    "", FM_KS_CLUSTERS, "... to N nodes")                                                       \
  X(CLUSTERS_GPUS_PER_NODE, "--gpus-per-node", "clusters.gpus_per_node", FM_KT_INT, 1, 65536,  \
    "the preset's", "", "G", "", FM_KS_CLUSTERS, "... and G GPUs per node")

/* Every key: the configuration keys, then the other commands'. */
#define FM_ALL_KEYS(X)                                                                          \
  FM_KEYS(X) FM_REPLAY_KEYS(X) FM_PLACE_KEYS(X) FM_TRACE_KEYS(X) FM_CLUSTER_KEYS(X)

typedef enum fm_key_id {
#define FM_KEY_ENUM(ID, ...) FM_KEY_##ID,
  FM_ALL_KEYS(FM_KEY_ENUM)
#undef FM_KEY_ENUM
      FM_NKEYS
} fm_key_id;

typedef struct fm_key {
  const char *flag, *name;
  fm_key_type type;
  int64_t lo, hi;
  const char *def, *choices, *arg, *unit;
  int scope; /* FM_KS_* */
  const char *help;
  int whole; /* 1: help written whole (the other commands' keys), nothing appended */
} fm_key;

/* How an error names a key: the CLI's flag or the JSON / Python name. */
typedef enum fm_key_naming { FM_NAME_FLAG = 0, FM_NAME_JSON = 1 } fm_key_naming;

/* The row of id (a valid FM_KEY_*); never NULL. */
const fm_key *fm_key_of(fm_key_id id);
/* The key's flag or name as naming asks. */
const char *fm_key_name(fm_key_id id, int naming);
/* The key whose JSON name is name, or -1. */
int fm_key_by_name(const char *name);
/* 1 when word is one of the key's choices ("a|b"), else 0. */
int fm_key_choice_ok(fm_key_id id, const char *word);
/* word as one of the key's choices into *out: FM_OK, or FM_EUSAGE with
 * "NAME: 'x' is not a, b or c" (NAME as naming asks) in errmsg, *out
 * untouched. The CLI's flags and the JSON requests say it alike. */
int fm_key_parse_choice(fm_key_id id, int naming, const char *word, const char **out,
                        char *errmsg, size_t errlen);

/*
 * The range check every face makes of an integer value: FM_OK, or
 * FM_EUSAGE with "NAME: V is out of range: must be between LO and HI"
 * (NAME as naming asks) in errmsg.
 */
int fm_key_check(fm_key_id id, int naming, int64_t v, char *errmsg, size_t errlen);

/*
 * The help lines of the keys of scope (FM_KS_SIM or FM_KS_SWEEP) in table
 * order, each "  FLAG ARG" padded to `width` columns, the help text
 * wrapped at 78 columns with the range, default and unit appended, into
 * buf (NUL-terminated, cut at len). Returns the length it needed.
 */
size_t fm_keys_help(int scope, int width, char *buf, size_t len);

/* A help line of any flag in the same layout: "  FLAG ARG" padded to
 * width, text wrapped at 78 columns; returns the length it needed. */
size_t fm_help_line(const char *flag, const char *arg, const char *text, int width, char *buf,
                    size_t len);
/* The help lines of one key, as fm_keys_help writes them; flag: the text
 * that heads them instead of the key's flag ("-o, --output"), or NULL. */
size_t fm_key_help(fm_key_id id, const char *flag, int width, char *buf, size_t len);

/*
 * The table as JSON text (malloc'd, release with free / fm_free): a list of
 * {"name", "flag", "type", "min", "max", "default", "choices", "unit",
 * "scope": the commands ("sim", "sweep", "run", ..., "trace import"),
 * "help"}; min and max null where the type has no range, choices a list or
 * null. NULL when out of memory.
 */
char *fm_keys_json_text(void);

/*
 * "Did you mean": the word of cands[n] closest to word by edit distance
 * (insertions, deletions, substitutions and swaps of two neighbours, each
 * 1), when it is close enough to be a slip: at most 1 for words up to 4
 * letters, 2 up to 8, 3 beyond; a word that starts cands[i] counts as
 * close. NULL when none is (or word is NULL or empty). Ties go to the
 * first. The CLI's unknown flags, policies, presets and keys use it.
 */
const char *fm_nearest(const char *word, const char *const *cands, int n);

#endif
