/*
 * cmd_clusters.c - flexmoe clusters. PLACEHOLDER: replaced by its owner.
 */
#include "cli.h"

int cmd_clusters(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail(CLI_EFAIL, "clusters", "not implemented yet");
}
