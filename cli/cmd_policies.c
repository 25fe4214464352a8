/*
 * cmd_policies.c - flexmoe policies: the placement policies of the registry
 * with their parameters, defaults and help, as a table or one JSON document
 * {"policies": [{"name", "summary", "clairvoyant", "spec", "parameters":
 * [{"key", "default", "help"}]}]} (run/fm_cluster.h fm_policies_doc).
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "placement/pl_policy.h"
#include "run/fm_cluster.h"

int cmd_policies(int argc, char **argv) {
  int fmt = CLI_FMT_TABLE;
  const cli_opt opts[] = {CLI_FORMAT_ROW(&fmt), {.kind = CLI_O_END}};
  int rc = cli_parse_flags("policies", argc, argv, opts);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  if (fmt == CLI_FMT_JSON)
    return cli_json_print("policies", fm_policies_doc(), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  fm_text_policies(stdout);
  if (fflush(stdout))
    return cli_fail(CLI_EFAIL, "policies", "cannot write to stdout");
  return CLI_OK;
}
