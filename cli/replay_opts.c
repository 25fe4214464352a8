/*
 * replay_opts.c - the flags `run` and `validate` share, into a replay
 * configuration (cli.h: cli_replay_option).
 */
#include "cli.h"
#include "run/fm_replay.h"

int cli_replay_option(const char *cmd, int opt, const char *arg, fm_replay_config *cfg) {
  long v;
  int rc = 0;
  switch (opt) {
  case 'b': cfg->backend = arg; return 1;
  case 't': cfg->trace_path = arg; return 1;
  case 'P':
    if (!(rc = cli_parse_long(cmd, "--partitions", arg, 1, 64, &v))) cfg->partitions = (int)v;
    break;
  case 'r':
    if (!(rc = cli_parse_long(cmd, "--ranks", arg, 1, 4096, &v))) cfg->ranks = (int)v;
    break;
  case 'D':
    if (!(rc = cli_parse_long(cmd, "--device", arg, 0, 1024, &v))) cfg->device = (int)v;
    break;
  case 'i':
    rc = cli_parse_range(cmd, "--iterations", arg, &cfg->it_begin, &cfg->it_end);
    break;
  case 's':
    rc = cli_parse_seed(cmd, "--seed", arg, &cfg->seed);
    break;
  case 'd':
    if (!(rc = cli_parse_long(cmd, "--d-model", arg, 8, 1 << 16, &v))) cfg->d_model = (int)v;
    break;
  case 'f':
    if (!(rc = cli_parse_long(cmd, "--d-ff", arg, 8, 1 << 18, &v))) cfg->d_ff = (int)v;
    break;
  case 'k':
    if (!(rc = cli_parse_long(cmd, "--top-k", arg, 1, 64, &v))) cfg->top_k = (int)v;
    break;
  case 'T':
    if (!(rc = cli_parse_long(cmd, "--tokens-per-gpu", arg, 1, 1L << 30, &v))) cfg->tokens_per_gpu = v;
    break;
  case 'S':
    if (!(rc = cli_parse_long(cmd, "--slots", arg, 1, 4096, &v))) cfg->slots = (int)v;
    break;
  default:
    return 0;
  }
  return rc ? -rc : 1;
}
