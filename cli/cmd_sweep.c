/*
 * cmd_sweep.c - flexmoe sweep. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_sweep(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "sweep", "not implemented yet");
}
