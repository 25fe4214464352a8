/*
 * cmd_run.c - flexmoe run. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "run", "not implemented yet");
}
