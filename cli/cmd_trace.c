/*
 * cmd_trace.c - flexmoe trace. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_trace(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "trace", "not implemented yet");
}
