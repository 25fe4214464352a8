/*
 * cmd_validate.c - flexmoe validate. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_validate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "validate", "not implemented yet");
}
