/*
 * cmd_policies.c - flexmoe policies. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_policies(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "policies", "not implemented yet");
}
