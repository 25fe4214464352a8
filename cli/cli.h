/*
 * cli.h - what the subcommands of `flexmoe` share: the command table, exit
 * codes, messages and flag parsing.
 *
 * Every error a user can cause ends in one line on stderr,
 * "flexmoe CMD: what is wrong", and a non-zero exit: CLI_EUSAGE (2) for a bad
 * command line, CLI_EFAIL (1) for bad input or a failed operation.
 */
#ifndef FLEXMOE_CLI_H
#define FLEXMOE_CLI_H

#include <stdint.h>
#include <getopt.h>
#include <stdio.h>

#include "run/fm_error.h"
#include "run/fm_json.h"

/* The run library's codes are the exit codes (run/fm_error.h). */
enum { CLI_OK = FM_OK, CLI_EFAIL = FM_EFAIL, CLI_EUSAGE = FM_EUSAGE };

typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct cli_command {
  const char *name;
  cli_cmd_fn fn;
} cli_command;

/* A command of commands (flexmoe, flexmoe trace): its name in the table
 * of commands ("" for main, "trace"; run/fm_commands.h: its usage and
 * summaries) and the function of each of its words. */
typedef struct cli_menu {
  const char *cmd;
  const cli_command *cmds;
  size_t n;
} cli_menu;

/* argv[1] run as one of m's commands (argv shifted by one): with no word,
 * the usage on stderr and CLI_EUSAGE; --help, -h or help, the usage on
 * stdout and CLI_OK; an unknown word, "unknown command 'X' (see 'flexmoe
 * --help')" (main) or "unknown subcommand 'X' (see 'flexmoe CMD --help')"
 * and CLI_EUSAGE. */
int cli_dispatch(const cli_menu *m, int argc, char **argv);

/* Subcommands, one file each (cli/cmd_NAME.c). argv[0] is the subcommand. */
int cmd_trace(int argc, char **argv);
int cmd_clusters(int argc, char **argv);
int cmd_policies(int argc, char **argv);
int cmd_sim(int argc, char **argv);
int cmd_place(int argc, char **argv);
int cmd_net(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Prints the error "flexmoe CMD: message" as one line on stderr and returns
 * code. The line cannot be broken or turned into terminal commands by what
 * the message quotes (a file name, a line of a file): control bytes and
 * bytes that are not UTF-8 are written as \xNN. With --format json the line
 * is a JSON object instead, {"command": CMD, "error": message, "exit":
 * code}, escaped by jansson (control bytes as \u00NN, bytes that are not
 * UTF-8 as the text \xNN). cmd NULL: "flexmoe: message". */
int cli_fail(int code, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Errors as JSON (cli_fail) from now on: main calls cli_detect_json_errors
 * with the command line before any parsing (--format json or
 * --format=json anywhere), and cli_parse_format turns it on for json. */
void cli_detect_json_errors(int argc, char **argv);

/* "table" / "json" / "csv" into an enum; allowed is a mask of CLI_FMT_*. */
enum { CLI_FMT_TABLE = 1, CLI_FMT_JSON = 2, CLI_FMT_CSV = 4 };
int cli_parse_format(const char *cmd, const char *text, int allowed, int *out);

/* JSON values: fm_json_number and fm_json_string (run/fm_json.h). */
/* Prints root as JSON (json_dumps flags) and a newline on stdout, and
 * releases it. Every JSON printer ends here, its values built with
 * fm_json_number and fm_json_string (or json_integer): so json_pack never
 * fails on a value, and a NULL root means out of memory, reported as an
 * error instead of printing "(null)" or nothing. Returns CLI_OK or
 * CLI_EFAIL (message printed). */
int cli_json_print(const char *cmd, struct json_t *root, size_t flags);

/*
 * The trace sanity check every command that reads a trace makes before its
 * work (run/fm_trace.h fm_trace_check): each finding printed as
 * "flexmoe CMD: warning: PATH: what; what to do" on stderr (JSON errors:
 * {"command", "warning"}). flags: CLI_TRACE_STRICT turns warnings into
 * errors; CLI_TRACE_REFUSE_EMPTY refuses an all-zero trace unless
 * CLI_TRACE_ALLOW_EMPTY. used_ranks: the ranks (GPUs) the command replays
 * (0: not compared). A trace that cannot be opened is left to the command
 * (its own message). Returns CLI_OK or CLI_EFAIL (message printed).
 */
/* CLI_TRACE_REPLAY: the command replays ranks one to one and refuses more
 * ranks than the trace has itself, so that case gets no warning here. */
enum {
  CLI_TRACE_STRICT = 1,
  CLI_TRACE_REFUSE_EMPTY = 2,
  CLI_TRACE_ALLOW_EMPTY = 4,
  CLI_TRACE_REPLAY = 8
};
int cli_trace_check(const char *cmd, const char *path, int64_t it0, int64_t it1,
                    int used_ranks, int flags);
/* The same check of a trace the caller has open. */
struct tr_trace;
int cli_trace_check_open(const char *cmd, const struct tr_trace *t, int64_t it0, int64_t it1,
                         int used_ranks, int flags);

/*
 * A progress line for work that may take long: on stderr when it is a
 * terminal (or FLEXMOE_PROGRESS=1; =0 silences it; =always also skips the
 * 2 s wait, for tests), shown
 * only once the work has run 2 s, redrawn at most 4 times a second as
 * "flexmoe CMD: WHAT  P%  T s  eta E s", cleared at the end. Nothing is
 * printed otherwise, so pipes and logs see no change.
 */
typedef struct cli_progress {
  const char *cmd;
  double t0, last; /* start and last redraw (monotonic seconds) */
  int on, shown;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *cmd);
void cli_progress_update(cli_progress *p, double fraction, const char *what);
void cli_progress_end(cli_progress *p);

/*
 * A subcommand's flags as one table, parsed and documented from it
 * (cli/opts.c). A row: the flag ("--layer"; NULL: the key's), its kind and
 * destination, the key of run/fm_keys.h it is (its range, placeholder and
 * help; -1 for none), a range of its own (lo, hi; both 0: the key's; for
 * CLI_O_FORMAT lo is the CLI_FMT_* mask), and the placeholder and help
 * sentence (NULL: the key's). The table ends with a CLI_O_END row.
 */
typedef enum cli_opt_kind {
  CLI_O_END,    /* end of the table */
  CLI_O_STR,    /* const char *: the value as given */
  CLI_O_LONG,   /* long: an integer in range (run/fm_parse.h's messages) */
  CLI_O_RANGE,  /* int64_t A into *to, B into *to2 ("A:B", *to2 = -1: to the end) */
  CLI_O_FORMAT, /* int: CLI_FMT_* of the mask in lo */
  CLI_O_BOOL,   /* int: set to 1 by the flag alone */
  CLI_O_INT,    /* int: as CLI_O_LONG */
  CLI_O_I64,    /* int64_t (or uint64_t: a seed): as CLI_O_LONG */
  CLI_O_CHOICE, /* const char *: one of the key's choices ("'x' is not a, b or c") */
  CLI_O_MULTI,  /* const char *[hi], count in *to2: the flag repeats */
  CLI_O_LIST,   /* long[max] from "8,16" in the key's range, count in *to2 */
  CLI_O_FN,     /* fn(cmd, value, to): a value only its command parses */
  CLI_O_SIZE    /* uint64_t: a memory size, "512M" (traces/tr_trace.h tr_parse_size) */
} cli_opt_kind;
typedef struct cli_opt {
  const char *flag;
  cli_opt_kind kind;
  void *to, *to2; /* to2: CLI_O_RANGE's end (int64_t), CLI_O_MULTI's count (int) */
  int key;
  long lo, hi;
  const char *arg, *help;
  int max;    /* CLI_O_LIST: most values */
  char letter; /* a short form ("-o"), or 0 */
  int (*fn)(const char *cmd, const char *arg, void *to); /* CLI_O_FN */
} cli_opt;
enum { CLI_HELP = -1 };
/* argv (options only; operands left from optind on) into the table's
 * destinations: CLI_OK, CLI_EUSAGE after one message, or CLI_HELP after
 * printing cmd's usage (run/fm_commands.h), one help entry per row (flags
 * padded to 22 columns) and cmd's tail. */
int cli_parse_opts(const char *cmd, int argc, char **argv, const cli_opt *opts);
/* cli_parse_opts for a command that takes no operands: one left over is
 * refused ("unexpected argument 'X'", CLI_EUSAGE). */
int cli_parse_flags(const char *cmd, int argc, char **argv, const cli_opt *opts);

/* The --format row of a command that prints a table or JSON, into *dest
 * (int: CLI_FMT_*). */
#define CLI_FORMAT_ROW(dest)                                                                  \
  {.flag = "--format", .kind = CLI_O_FORMAT, .to = (dest), .key = -1,                       \
   .lo = CLI_FMT_TABLE | CLI_FMT_JSON, .arg = "F", .help = "table (default) or json"}

/* The rows of the model keys a simulation and a sweep share (--d-model,
 * --d-ff, --top-k, --tokens-per-gpu, --slots, --profile), into the
 * fm_sim_config *b (run/fm_keys.h: ranges, help). */
#define CLI_SIM_MODEL_ROWS(b)                                                                 \
  {.kind = CLI_O_INT, .to = &(b)->d_model, .key = FM_KEY_D_MODEL},                           \
      {.kind = CLI_O_INT, .to = &(b)->d_ff, .key = FM_KEY_D_FF},                              \
      {.kind = CLI_O_INT, .to = &(b)->top_k, .key = FM_KEY_TOP_K},                            \
      {.kind = CLI_O_I64, .to = &(b)->tokens_per_gpu, .key = FM_KEY_TOKENS_PER_GPU},          \
      {.kind = CLI_O_INT, .to = &(b)->slots, .key = FM_KEY_SLOTS},                            \
      {.kind = CLI_O_STR, .to = &(b)->profile_path, .key = FM_KEY_PROFILE}

/* `run` and `validate`: the flags they share (--backend, --trace,
 * --partitions, --ranks, --device, --iterations, --seed, --d-model, --d-ff,
 * --top-k, --tokens-per-gpu, --slots) into cfg, then the command's own rows
 * (ending with CLI_O_END, at most 16), parsed as cli_parse_flags does
 * (cli/replay_opts.c). cli_replay_check: the checks both end with,
 * --partitions only with --backend cuda and the trace check of the ranks
 * replayed; CLI_OK or the exit code of the one message printed. */
struct fm_replay_config;
int cli_parse_replay(const char *cmd, int argc, char **argv, struct fm_replay_config *cfg,
                     const cli_opt *own);
int cli_replay_check(const char *cmd, const struct fm_replay_config *cfg);

#endif
