/*
 * cmd_clusters.c - flexmoe clusters: the cluster presets and their numbers
 * (resolved, sized and described by run/fm_cluster.h), as a table or JSON.
 */
#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "run/fm_text.h"
#include "run/fm_cluster.h"
#include "run/fm_keys.h"

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
  fm_text_clusters(stdout, cl, count);
  return CLI_OK;
}
