/*
 * cmd_net.c - flexmoe net: finish times of a traffic matrix on a cluster.
 * Parses flags, runs the flows (run/fm_cluster.h fm_net_run: every flow of
 * the CSV starts at time 0 and shares the cluster's links by max-min
 * fairness; its limits are sim_flows.h's), prints each flow's finish and
 * the makespan.
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_cluster.h"
#include "run/fm_keys.h"

/* flexmoe net ARGS: parses the flags, resolves the cluster, reads and runs
 * the flows and prints them; CLI_OK, CLI_EUSAGE for a bad command line,
 * CLI_EFAIL (one message printed) for a cluster, file or flow error. */
int cmd_net(int argc, char **argv) {
  const char *cluster = "dgx-h100", *flows_path = NULL;
  long nodes = 0, gpn = 0, gpus = 0;
  int fmt = CLI_FMT_TABLE;
  const cli_opt opts[] = {
      {.kind = CLI_O_STR, .to = &flows_path, .key = FM_KEY_NET_FLOWS},
      {.kind = CLI_O_STR, .to = &cluster, .key = FM_KEY_CLUSTER},
      {.kind = CLI_O_LONG, .to = &gpus, .key = FM_KEY_NET_GPUS},
      {.kind = CLI_O_LONG, .to = &nodes, .key = FM_KEY_NET_NODES},
      {.kind = CLI_O_LONG, .to = &gpn, .key = FM_KEY_NET_GPUS_PER_NODE},
      CLI_FORMAT_ROW(&fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_flags("net", argc, argv, opts);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  if (!flows_path)
    return cli_fail(CLI_EUSAGE, "net", "--flows FLOWS.csv is required");
  char em[1024];
  fm_net_result r;
  if ((rc = fm_net_run(cluster, flows_path, gpus, nodes, gpn, &r, em, sizeof em)))
    cli_fail(rc, "net", "%s", em);
  else if (fmt == CLI_FMT_JSON)
    rc = cli_json_print("net", fm_net_flows_doc(&r),
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  else
    fm_text_flows(stdout, &r);
  fm_net_result_fini(&r);
  return rc;
}
