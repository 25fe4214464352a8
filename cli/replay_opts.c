/*
 * replay_opts.c - the flags `run` and `validate` share, as rows of their
 * flag tables, and the checks both make (cli.h: cli_parse_replay). The
 * ranges are the runtime's (a replay's shapes are real buffers), narrower than the
 * simulator's keys, so the rows keep their own ranges and help.
 */
#include <assert.h>
#include <string.h>

#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_replay.h"

int cli_parse_replay(const char *cmd, int argc, char **argv, fm_replay_config *cfg,
                     const cli_opt *own, const char *head, const char *tail) {
  enum { NREPLAY = 12, NOWN = 16 };
  cli_opt rows[NREPLAY + NOWN + 1] = {
      {.flag = "--backend", .kind = CLI_O_STR, .to = &cfg->backend, .key = -1, .arg = "B",
       .help = "cpu (reference, ranks are threads), cuda (one process: GPUs, or --partitions "
               "N SM partitions of one GPU), nccl (under mpirun, one process per GPU)"},
      {.kind = CLI_O_STR, .to = &cfg->trace_path, .key = FM_KEY_TRACE},
      {.flag = "--partitions", .kind = CLI_O_INT, .to = &cfg->partitions, .key = -1, .lo = 1,
       .hi = 64, .arg = "N", .help = "cuda: N green-context SM partitions of one GPU as N ranks"},
      {.flag = "--ranks", .kind = CLI_O_INT, .to = &cfg->ranks, .key = -1, .lo = 1, .hi = 4096,
       .arg = "N", .help = "ranks, 1..4096 (cpu: default the trace's ranks; cuda: GPUs, "
                           "default 1; nccl: default the MPI world size)"},
      {.flag = "--device", .kind = CLI_O_INT, .to = &cfg->device, .key = -1, .lo = 0,
       .hi = 1024, .arg = "D", .help = "CUDA device, 0..1024 (default 0)"},
      {.kind = CLI_O_RANGE, .to = &cfg->it_begin, .to2 = &cfg->it_end, .key = FM_KEY_ITERATIONS,
       .help = "iterations [A, B) of the trace (default all)"},
      {.kind = CLI_O_I64, .to = &cfg->seed, .key = FM_KEY_SEED,
       .help = "seed of the generated tokens and of the policies, 0..2^63-1 (default 0)"},
      {.flag = "--d-model", .kind = CLI_O_INT, .to = &cfg->d_model, .key = -1, .lo = 8,
       .hi = 1 << 16, .arg = "D", .help = "model width, 8..65536 (default: the trace's sidecar)"},
      {.flag = "--d-ff", .kind = CLI_O_INT, .to = &cfg->d_ff, .key = -1, .lo = 8, .hi = 1 << 18,
       .arg = "F", .help = "expert FFN width, 8..262144 (default: the trace's sidecar)"},
      {.kind = CLI_O_INT, .to = &cfg->top_k, .key = FM_KEY_TOP_K},
      {.flag = "--tokens-per-gpu", .kind = CLI_O_I64, .to = &cfg->tokens_per_gpu, .key = -1,
       .lo = 1, .hi = 1L << 30, .arg = "T",
       .help = "tokens each rank routes per layer, 1..2^30 (default: its own count)"},
      {.flag = "--slots", .kind = CLI_O_INT, .to = &cfg->slots, .key = -1, .lo = 1, .hi = 4096,
       .arg = "S", .help = "expert slots per rank per layer, 1..4096 (default ceil(1.5 E / G))"}};
  int i = 0;
  for (; i < NOWN && own[i].kind != CLI_O_END; i++)
    rows[NREPLAY + i] = own[i];
  assert(own[i].kind == CLI_O_END); /* all fit: the rows after them stay CLI_O_END */
  return cli_parse_flags(cmd, argc, argv, rows, head, tail);
}

int cli_replay_check(const char *cmd, const fm_replay_config *r) {
  if (r->partitions > 0 && strcmp(r->backend, "cuda") != 0)
    return cli_fail(CLI_EUSAGE, cmd, "--partitions needs --backend cuda");
  return cli_trace_check(cmd, r->trace_path, r->it_begin, r->it_end,
                         r->partitions > 0 ? r->partitions : r->ranks, CLI_TRACE_REPLAY);
}
