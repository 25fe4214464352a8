/*
 * replay_opts.c - the flags `run` and `validate` share, as rows of their
 * flag tables (cli.h: cli_replay_opts, cli/opts.c). The ranges are the
 * runtime's (a replay's shapes are real buffers), narrower than the
 * simulator's keys, so the rows keep their own ranges and help.
 */
#include "cli.h"
#include "run/fm_keys.h"
#include "run/fm_replay.h"

int cli_replay_opts(fm_replay_config *cfg, cli_opt *rows) {
  const cli_opt own[CLI_REPLAY_NOPTS] = {
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
  for (int i = 0; i < CLI_REPLAY_NOPTS; i++)
    rows[i] = own[i];
  return CLI_REPLAY_NOPTS;
}
