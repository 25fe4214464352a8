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
 * Invariants: one row per key; flags and names unique; lo <= hi for the
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
  FM_KT_BOOL      /* a flag without value; true/false in JSON */
} fm_key_type;

/* Which configurations take a key (a bit mask). */
enum { FM_KS_SIM = 1, FM_KS_SWEEP = 2, FM_KS_BOTH = 3 };

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

typedef enum fm_key_id {
#define FM_KEY_ENUM(ID, ...) FM_KEY_##ID,
  FM_KEYS(FM_KEY_ENUM)
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
/* The help lines of one key, as fm_keys_help writes them. */
size_t fm_key_help(fm_key_id id, int width, char *buf, size_t len);

/*
 * The table as JSON text (malloc'd, release with free / fm_free): a list of
 * {"name", "flag", "type", "min", "max", "default", "choices", "unit",
 * "scope": ["sim", "sweep"], "help"}; min and max null where the type has
 * no range, choices a list or null. NULL when out of memory.
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
