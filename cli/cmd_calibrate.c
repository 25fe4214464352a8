/*
 * cmd_calibrate.c - flexmoe calibrate. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_calibrate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "calibrate", "not implemented yet");
}
