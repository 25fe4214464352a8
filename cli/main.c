/*
 * main.c - the `flexmoe` command: dispatches to one subcommand per file.
 */
#include <gsl/gsl_errno.h>
#include <signal.h>
#include <string.h>

#include "cli.h"
#include "flexmoe_config.h"

static const cli_command commands[] = {
    {"sim", cmd_sim, "simulate policies on a routing trace and a modelled cluster"},
    {"sweep", cmd_sweep, "run a grid of policies x cluster sizes x traces x seeds"},
    {"report", cmd_report, "print the runs stored in a results database"},
    {"trace", cmd_trace, "inspect, import, generate, fit and rescale routing traces"},
    {"place", cmd_place, "print a policy's placement plan for a trace"},
    {"policies", cmd_policies, "list placement policies and their parameters"},
    {"clusters", cmd_clusters, "list cluster presets with their numbers"},
    {"net", cmd_net, "finish times of a traffic matrix on a cluster"},
    {"run", cmd_run, "replay a trace with a policy on the runtime (cpu, cuda, nccl)"},
    {"calibrate", cmd_calibrate, "measure a GPU and store a compute profile"},
    {"validate", cmd_validate, "compare the runtime's measurements with the simulator"},
};
static const cli_menu menu = {
    .cmd = NULL, .cmds = commands, .n = sizeof commands / sizeof commands[0], .width = 10,
    .head = "flexmoe " FLEXMOE_VERSION " - which MoE expert placement policy makes training "
            "fastest on\n"
            "your cluster: a trace-driven simulator, a GPU runtime that checks it, and a\n"
            "results database.\n\n"
            "usage: flexmoe COMMAND [options]   (flexmoe COMMAND --help for each)\n\n"
            "commands:\n",
    .tail = "\nexample:\n  flexmoe sim --trace traces/samples/gpt-l6-e32-top2-aux-200.npy "
            "--cluster dgx-h100 --nodes 2\n"};

int main(int argc, char **argv) {
  gsl_set_error_handler_off();
  /* A write past the file size limit (ulimit -f) fails with EFBIG instead
   * of killing the process without a word: the store then says the disk is
   * full or the file is too large, and the transaction is rolled back. */
  signal(SIGXFSZ, SIG_IGN);
  cli_detect_json_errors(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
    printf("flexmoe %s (cuda %s, nccl %s, mpi %s)\n", FLEXMOE_VERSION,
           FLEXMOE_HAVE_CUDA ? "yes" : "no", FLEXMOE_HAVE_NCCL ? "yes" : "no",
           FLEXMOE_HAVE_MPI ? "yes" : "no");
    return CLI_OK;
  }
  return cli_dispatch(&menu, argc, argv);
}
