/*
 * cmd_net.c - flexmoe net. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_net(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "net", "not implemented yet");
}
