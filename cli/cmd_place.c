/*
 * cmd_place.c - flexmoe place. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_place(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "place", "not implemented yet");
}
