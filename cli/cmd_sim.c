/*
 * cmd_sim.c - flexmoe sim. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_sim(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "sim", "not implemented yet");
}
