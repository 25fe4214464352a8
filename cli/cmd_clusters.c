/*
 * cmd_clusters.c - flexmoe clusters: the cluster presets and their numbers.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sim/sim_cluster.h"

/* The options that may be given more than once (cli_getopt). */
#define REPEATS ""

static const char help[] =
    "usage: flexmoe clusters [--nodes N] [--gpus-per-node G] [--format table|json]\n"
    "                        [PRESET|FILE.json ...]\n"
    "\n"
    "Lists the cluster presets (or the named presets / cluster files) with their\n"
    "numbers: GPUs, compute profile, HBM, intra-node link, NIC, switch. Bandwidths\n"
    "are GB/s per direction, latencies microseconds. h200-green-N works for any\n"
    "N in 1..16 (one H200 split into N SM partitions).\n"
    "\n"
    "  --nodes N           show the presets resized to N nodes\n"
    "  --gpus-per-node G   ... and G GPUs per node\n"
    "  --format F          table (default) or json\n"
    "\n"
    "example:\n"
    "  flexmoe clusters\n"
    "  flexmoe clusters --format json dgx-h100 h200-green-4\n";

/* The resolved clusters cl[0..count) (named list[i] in messages) as one
 * JSON object on stdout; CLI_OK, or CLI_EFAIL with one message when a
 * description does not fit or does not parse. */
static int print_json(const sim_cluster *cl, const char *const *list, int count) {
  json_t *arr = json_array();
  for (int i = 0; i < count; i++) {
    char buf[2048];
    if (sim_cluster_json(&cl[i], buf, sizeof(buf)) < 0)
      return cli_fail(CLI_EFAIL, "clusters", "cluster description too long");
    json_t *o = json_loads(buf, 0, NULL);
    if (!o) {
      json_decref(arr);
      return cli_fail(CLI_EFAIL, "clusters", "%s: cannot describe the cluster as JSON",
                      list[i]);
    }
    json_object_set_new(o, "gpus", json_integer(sim_cluster_gpus(&cl[i])));
    json_object_set_new(o, "description", fm_json_string(cl[i].description));
    json_array_append_new(arr, o);
  }
  json_t *root = json_pack("{s:o}", "clusters", arr);
  return cli_json_print("clusters", root,
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
}

/* The clusters cl[0..count) as a table, one line each. */
static void print_table(const sim_cluster *cl, int count) {
  printf("%-14s %5s %4s %4s %-7s %7s %10s %8s %10s %8s %7s  %s\n", "cluster", "nodes",
         "gpn", "gpus", "profile", "hbm_GiB", "intra_GBps", "intra_us", "nic_GBps",
         "inter_us", "oversub", "description");
  for (int i = 0; i < count; i++) {
    char nic[32];
    snprintf(nic, sizeof(nic), "%g%s", cl[i].inter_GBps, cl[i].nic_per_node ? "/node" : "");
    printf("%-14s %5d %4d %4d %-7s %7.1f %10g %8g %10s %8g %7g  %s\n", cl[i].name,
           cl[i].nodes, cl[i].gpus_per_node, sim_cluster_gpus(&cl[i]), cl[i].profile,
           cl[i].hbm_gib, cl[i].intra_GBps, cl[i].intra_lat_us, nic, cl[i].inter_lat_us,
           cl[i].oversub, cl[i].description);
  }
}

/* flexmoe clusters ARGS: parses the flags, resolves the presets or files
 * named (all presets by default) and prints them; CLI_OK, CLI_EUSAGE for a
 * bad command line, CLI_EFAIL (one message printed) for an unknown cluster. */
int cmd_clusters(int argc, char **argv) {
  static const struct option opts[] = {{"nodes", required_argument, 0, 'n'},
                                       {"gpus-per-node", required_argument, 0, 'g'},
                                       {"format", required_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int fmt = CLI_FMT_TABLE, c;
  long nodes = 0, gpn = 0;
  opterr = 0;
  optind = 1;
  while ((c = cli_getopt(argc, argv, ":h", opts, REPEATS)) != -1) {
    switch (c) {
    case 'n':
      if (cli_parse_long("clusters", "--nodes", optarg, 1, SIM_MAX_GPUS, &nodes))
        return CLI_EUSAGE;
      break;
    case 'g':
      if (cli_parse_long("clusters", "--gpus-per-node", optarg, 1, SIM_MAX_GPUS, &gpn))
        return CLI_EUSAGE;
      break;
    case 'f':
      if (cli_parse_format("clusters", optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))
        return CLI_EUSAGE;
      break;
    case 'h':
      cli_help(help);
      return CLI_OK;
    default:
      return cli_bad_option("clusters", argv[optind - 1]);
    }
  }
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
  for (int i = 0; i < count; i++) {
    sim_errbuf err;
    if (sim_cluster_resolve(list[i], &cl[i], &err) ||
        sim_cluster_resize(&cl[i], (int)nodes, (int)gpn, &err))
      return cli_fail(CLI_EFAIL, "clusters", "%s", err.msg);
  }
  if (fmt == CLI_FMT_JSON)
    return print_json(cl, list, count);
  print_table(cl, count);
  return CLI_OK;
}
