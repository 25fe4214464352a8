/*
 * replay_opts.c - the flags `run` and `validate` share, as rows of their
 * flag tables, and the checks both make (cli.h: cli_parse_replay). The
 * ranges are the runtime's (a replay's shapes are real buffers), narrower
 * than the simulator's: the keys FM_REPLAY_KEYS of run/fm_keys.h.
 */
#include <assert.h>
#include <string.h>

#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_replay.h"

int cli_parse_replay(const char *cmd, int argc, char **argv, fm_replay_config *cfg,
                     const cli_opt *own) {
  enum { NREPLAY = 12, NOWN = 16 };
  cli_opt rows[NREPLAY + NOWN + 1] = {
      {.kind = CLI_O_STR, .to = &cfg->backend, .key = FM_KEY_RUN_BACKEND},
      {.kind = CLI_O_STR, .to = &cfg->trace_path, .key = FM_KEY_TRACE},
      {.kind = CLI_O_INT, .to = &cfg->partitions, .key = FM_KEY_RUN_PARTITIONS},
      {.kind = CLI_O_INT, .to = &cfg->ranks, .key = FM_KEY_RUN_RANKS},
      {.kind = CLI_O_INT, .to = &cfg->device, .key = FM_KEY_RUN_DEVICE},
      {.kind = CLI_O_RANGE, .to = &cfg->it_begin, .to2 = &cfg->it_end,
       .key = FM_KEY_RUN_ITERATIONS},
      {.kind = CLI_O_I64, .to = &cfg->seed, .key = FM_KEY_RUN_SEED},
      {.kind = CLI_O_INT, .to = &cfg->d_model, .key = FM_KEY_RUN_D_MODEL},
      {.kind = CLI_O_INT, .to = &cfg->d_ff, .key = FM_KEY_RUN_D_FF},
      {.kind = CLI_O_INT, .to = &cfg->top_k, .key = FM_KEY_TOP_K},
      {.kind = CLI_O_I64, .to = &cfg->tokens_per_gpu, .key = FM_KEY_RUN_TOKENS_PER_GPU},
      {.kind = CLI_O_INT, .to = &cfg->slots, .key = FM_KEY_RUN_SLOTS}};
  int i = 0;
  for (; i < NOWN && own[i].kind != CLI_O_END; i++)
    rows[NREPLAY + i] = own[i];
  assert(own[i].kind == CLI_O_END); /* all fit: the rows after them stay CLI_O_END */
  return cli_parse_flags(cmd, argc, argv, rows);
}

int cli_replay_check(const char *cmd, const fm_replay_config *r) {
  if (r->partitions > 0 && strcmp(r->backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, cmd, "--partitions needs --backend cuda");
  return cli_trace_check(cmd, r->trace_path, r->it_begin, r->it_end,
                         r->partitions > 0 ? r->partitions : r->ranks, CLI_TRACE_REPLAY);
}
