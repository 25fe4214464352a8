/*
 * cmd_net.c - flexmoe net: finish times of a traffic matrix on a cluster.
 * Parses flags, runs the flows (run/fm_cluster.h fm_net_run: every flow of
 * the CSV starts at time 0 and shares the cluster's links by max-min
 * fairness; its limits are sim_flows.h's), prints each flow's finish and
 * the makespan.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_cluster.h"
#include "run/fm_keys.h"
#include "sim/sim_cluster.h"
#include "sim/sim_flows.h"

/* The flows as text (the cluster line, one row per flow, the makespan) or
 * as one JSON document {"makespan_us", "flows": [{"src", "dst", "bytes",
 * "finish_us"}]}, both from one table; CLI_OK, or CLI_EFAIL with one
 * message when a JSON value cannot be built (out of memory). */
static int print_flows(const fm_net_result *r, int fmt) {
  static const cli_col cols[] = {
      CLI_COL("src", 6, "%lld"), CLI_COL("dst", 6, "%lld"), CLI_COL("bytes", 16, "%lld"),
      CLI_COL("finish_us", 14, "%.3f"), CLI_END_COL};
  const sim_cluster *cl = &r->cluster;
  json_t *flows = json_array();
  int bad = !flows;
  if (fmt == CLI_FMT_TABLE) {
    printf("cluster %s: %d nodes x %d GPUs, %d flows\n", cl->name, cl->nodes, cl->gpus_per_node,
           r->nflows);
    cli_table_head(cols, fmt);
  }
  for (int i = 0; i < r->nflows && !bad; i++) {
    const sim_flow_line *f = &r->flows[i];
    const cli_cell row[] = {CLI_I(f->src), CLI_I(f->dst), CLI_I(f->bytes),
                            CLI_F((double)f->finish_ns * 1e-3)};
    if (fmt == CLI_FMT_JSON)
      bad |= json_array_append_new(flows, cli_table_object(cols, row));
    else
      cli_table_row(cols, row, fmt);
  }
  double makespan = (double)r->makespan_ns * 1e-3;
  if (fmt == CLI_FMT_TABLE) {
    printf("makespan_us %.3f\n", makespan);
    json_decref(flows);
    return CLI_OK;
  }
  json_t *root = json_pack("{s:o, s:o}", "makespan_us", fm_json_number(makespan), "flows", flows);
  if (bad) {
    json_decref(root);
    root = NULL;
  }
  return cli_json_print("net", root,
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
}

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
  else
    rc = print_flows(&r, fmt);
  fm_net_result_fini(&r);
  return rc;
}
