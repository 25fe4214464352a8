/*
 * cmd_report.c - flexmoe report. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_report(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "report", "not implemented yet");
}
