/*
 * cmd_clusters.c - flexmoe clusters: the cluster presets and their numbers
 * (resolved, sized and described by run/fm_cluster.h), as a table or JSON.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_cluster.h"
#include "run/fm_keys.h"

/* The clusters cl[0..count) as a table, one line each. */
static void print_table(const sim_cluster *cl, int count) {
  static const cli_col cols[] = {
      CLI_COL("cluster", -14, "%s"), CLI_COL("nodes", 5, "%lld"), CLI_COL("gpn", 4, "%lld"),
      CLI_COL("gpus", 4, "%lld"), CLI_COL("profile", -7, "%s"), CLI_COL("hbm_GiB", 7, "%.1f"),
      CLI_COL("intra_GBps", 10, "%g"), CLI_COL("intra_us", 8, "%g"), CLI_COL("nic_GBps", 10, "%s"),
      CLI_COL("inter_us", 8, "%g"), CLI_COL("oversub", 7, "%g"),
      {.head = "description", .fmt = "%s", .sep = "  "}, CLI_END_COL};
  cli_table_head(cols, CLI_FMT_TABLE);
  for (int i = 0; i < count; i++) {
    const sim_cluster *c = &cl[i];
    char nic[32];
    snprintf(nic, sizeof(nic), "%g%s", c->inter_GBps, c->nic_per_node ? "/node" : "");
    const cli_cell row[] = {
        CLI_S(c->name), CLI_I(c->nodes), CLI_I(c->gpus_per_node), CLI_I(sim_cluster_gpus(c)),
        CLI_S(c->profile), CLI_F(c->hbm_gib), CLI_F(c->intra_GBps), CLI_F(c->intra_lat_us),
        CLI_S(nic), CLI_F(c->inter_lat_us), CLI_F(c->oversub), CLI_S(c->description)};
    cli_table_row(cols, row, CLI_FMT_TABLE);
  }
}

/* flexmoe clusters ARGS: parses the flags, resolves the presets or files
 * named (all presets by default) and prints them; CLI_OK, CLI_EUSAGE for a
 * bad command line, CLI_EFAIL (one message printed) for an unknown cluster. */
int cmd_clusters(int argc, char **argv) {
  int fmt = CLI_FMT_TABLE;
  long nodes = 0, gpn = 0, gpus = 0;
  const cli_opt opts[] = {
      {.kind = CLI_O_LONG, .to = &gpus, .key = FM_KEY_CLUSTERS_GPUS},
      {.kind = CLI_O_LONG, .to = &nodes, .key = FM_KEY_CLUSTERS_NODES},
      {.kind = CLI_O_LONG, .to = &gpn, .key = FM_KEY_CLUSTERS_GPUS_PER_NODE},
      CLI_FORMAT_ROW(&fmt),
      {.kind = CLI_O_END}};
  int rc = cli_parse_opts("clusters", argc, argv, opts);
  if (rc)
    return rc == CLI_HELP ? CLI_OK : rc;
  const char *const *names = sim_cluster_presets();
  int nnames = 0;
  while (names[nnames])
    nnames++;
  const char *const *list = names;
  int count = nnames;
  if (optind < argc) {
    list = (const char *const *)(argv + optind);
    count = argc - optind;
  }
  sim_cluster cl[64];
  if (count > 64)
    return cli_fail(CLI_EUSAGE, "clusters", "at most 64 clusters at once");
  char em[512];
  for (int i = 0; i < count; i++)
    if ((rc = fm_cluster_open(list[i], gpus, nodes, gpn, &cl[i], em, sizeof em)))
      return cli_fail(rc, "clusters", "%s", em);
  if (fmt == CLI_FMT_JSON) {
    json_t *doc = NULL;
    if (fm_clusters_doc(cl, list, count, &doc, em, sizeof em))
      return cli_fail(CLI_EFAIL, "clusters", "%s", em);
    return cli_json_print("clusters", doc,
                          JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  }
  print_table(cl, count);
  return CLI_OK;
}
