/*
 * main.c - the `flexmoe` command: dispatches to one subcommand per file.
 */
#include <gsl/gsl_errno.h>
#include <signal.h>
#include <string.h>

#include "cli.h"
#include "flexmoe_config.h"

static const cli_command commands[] = {
    {"sim", cmd_sim},           {"sweep", cmd_sweep},   {"report", cmd_report},
    {"trace", cmd_trace},       {"place", cmd_place},   {"policies", cmd_policies},
    {"clusters", cmd_clusters}, {"net", cmd_net},       {"run", cmd_run},
    {"calibrate", cmd_calibrate}, {"validate", cmd_validate},
};
/* Its usage and summaries: run/fm_commands.h, the row "". */
static const cli_menu menu = {.cmd = "", .cmds = commands,
                              .n = sizeof commands / sizeof commands[0]};

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
