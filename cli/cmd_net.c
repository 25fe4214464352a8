/*
 * cmd_net.c - flexmoe net: finish times of a traffic matrix on a cluster.
 *
 * Every flow of the CSV starts at time 0 and shares the links of the
 * cluster's link graph by max-min fair sharing (sim/sim_net.h), one flow per
 * line (no aggregation). Output: each flow's finish time and the makespan.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sim/sim_cluster.h"
#include "sim/sim_net.h"

static const char help[] =
    "usage: flexmoe net --flows FLOWS.csv [--cluster PRESET|FILE.json] [--nodes N]\n"
    "                   [--gpus-per-node G] [--format table|json]\n"
    "\n"
    "Finish time of every flow of a traffic matrix on a modelled cluster, and the\n"
    "makespan. All flows start at time 0 and share the links (per-GPU NVLink/PCIe\n"
    "in and out, NICs, switch uplinks with oversubscription) by max-min fair\n"
    "sharing, recomputed whenever a flow ends; a flow takes its path's latency\n"
    "plus its bytes at its share of the bandwidth.\n"
    "\n"
    "  --flows F           CSV with header src_gpu,dst_gpu,bytes (one flow a line;\n"
    "                      GPUs are 0..G-1, node = gpu / gpus-per-node)\n"
    "  --cluster C         preset (see 'flexmoe clusters') or cluster JSON; dgx-h100\n"
    "  --nodes N, --gpus-per-node G   resize the cluster\n"
    "  --format F          table (default) or json\n"
    "\n"
    "example:\n"
    "  printf 'src_gpu,dst_gpu,bytes\\n0,1,1000000000\\n0,8,1000000000\\n' > f.csv\n"
    "  flexmoe net --cluster dgx-h100 --nodes 2 --flows f.csv\n";

typedef struct flow_line {
  int src, dst;
  int64_t bytes;
  int64_t finish_ns;
} flow_line;

/* Parses one unsigned decimal field; 0 on success. */
static int field(const char **s, int64_t *out) {
  const char *p = *s;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p < '0' || *p > '9')
    return -1;
  int64_t v = 0;
  while (*p >= '0' && *p <= '9') {
    if (v > (INT64_MAX - (*p - '0')) / 10)
      return -2;
    v = v * 10 + (*p - '0');
    p++;
  }
  while (*p == ' ' || *p == '\t')
    p++;
  *out = v;
  *s = p;
  return 0;
}

static int read_flows(const char *path, int gpus, flow_line **out, int *nout) {
  FILE *f = fopen(path, "r");
  if (!f)
    return cli_fail(CLI_EFAIL, "net", "%s: cannot open (%s)", path, strerror(errno));
  char line[4096];
  int n = 0, cap = 0, rc = CLI_OK;
  long lineno = 0;
  flow_line *v = NULL;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    size_t len = strlen(line);
    if (len && line[len - 1] != '\n' && !feof(f)) {
      rc = cli_fail(CLI_EFAIL, "net", "%s:%ld: line too long", path, lineno);
      goto done;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (lineno == 1) {
      if (strcmp(line, "src_gpu,dst_gpu,bytes") != 0) {
        rc = cli_fail(CLI_EFAIL, "net", "%s:1: header must be 'src_gpu,dst_gpu,bytes' (got '%s')",
                      path, line);
        goto done;
      }
      continue;
    }
    if (len == 0)
      continue;
    const char *s = line;
    int64_t a[3];
    for (int k = 0; k < 3; k++) {
      int e = field(&s, &a[k]);
      static const char *names[] = {"src_gpu", "dst_gpu", "bytes"};
      if (e == -2) {
        rc = cli_fail(CLI_EFAIL, "net", "%s:%ld: %s overflows", path, lineno, names[k]);
        goto done;
      }
      if (e || (k < 2 ? *s != ',' : *s != '\0')) {
        rc = cli_fail(CLI_EFAIL, "net",
                      "%s:%ld: expected three non-negative integers src_gpu,dst_gpu,bytes "
                      "(got '%s')",
                      path, lineno, line);
        goto done;
      }
      if (k < 2)
        s++;
    }
    if (a[0] >= gpus || a[1] >= gpus) {
      rc = cli_fail(CLI_EFAIL, "net", "%s:%ld: GPU %lld is not in the cluster (GPUs 0..%d)",
                    path, lineno, (long long)(a[0] >= gpus ? a[0] : a[1]), gpus - 1);
      goto done;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      flow_line *nv = realloc(v, (size_t)cap * sizeof(*v));
      if (!nv) {
        rc = cli_fail(CLI_EFAIL, "net", "out of memory");
        goto done;
      }
      v = nv;
    }
    v[n].src = (int)a[0];
    v[n].dst = (int)a[1];
    v[n].bytes = a[2];
    v[n].finish_ns = 0;
    n++;
  }
  if (ferror(f)) {
    rc = cli_fail(CLI_EFAIL, "net", "%s: read error", path);
    goto done;
  }
  if (lineno == 0) {
    rc = cli_fail(CLI_EFAIL, "net", "%s: file is empty", path);
    goto done;
  }
done:
  fclose(f);
  if (rc) {
    free(v);
    return rc;
  }
  *out = v;
  *nout = n;
  return CLI_OK;
}

int cmd_net(int argc, char **argv) {
  static const struct option opts[] = {{"cluster", required_argument, 0, 'c'},
                                       {"nodes", required_argument, 0, 'n'},
                                       {"gpus-per-node", required_argument, 0, 'g'},
                                       {"flows", required_argument, 0, 'F'},
                                       {"format", required_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *cluster = "dgx-h100", *flows_path = NULL;
  long nodes = 0, gpn = 0;
  int fmt = CLI_FMT_TABLE, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      cluster = optarg;
      break;
    case 'n':
      if (cli_parse_long("net", "--nodes", optarg, 1, SIM_MAX_GPUS, &nodes))
        return CLI_EUSAGE;
      break;
    case 'g':
      if (cli_parse_long("net", "--gpus-per-node", optarg, 1, SIM_MAX_GPUS, &gpn))
        return CLI_EUSAGE;
      break;
    case 'F':
      flows_path = optarg;
      break;
    case 'f':
      if (cli_parse_format("net", optarg, CLI_FMT_TABLE | CLI_FMT_JSON, &fmt))
        return CLI_EUSAGE;
      break;
    case 'h':
      cli_help(help);
      return CLI_OK;
    default:
      return cli_bad_option("net", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_fail(CLI_EUSAGE, "net", "unexpected argument '%s'", argv[optind]);
  if (!flows_path)
    return cli_fail(CLI_EUSAGE, "net", "--flows FLOWS.csv is required");
  sim_cluster cl;
  sim_errbuf err;
  if (sim_cluster_resolve(cluster, &cl, &err) ||
      sim_cluster_resize(&cl, (int)nodes, (int)gpn, &err))
    return cli_fail(CLI_EFAIL, "net", "%s", err.msg);
  flow_line *fl = NULL;
  int nf = 0, rc = read_flows(flows_path, sim_cluster_gpus(&cl), &fl, &nf);
  if (rc)
    return rc;
  sim_net net;
  if (sim_net_init(&net, &cl)) {
    free(fl);
    return cli_fail(CLI_EFAIL, "net", "out of memory");
  }
  int64_t makespan = 0;
  for (int i = 0; i < nf && !rc; i++) {
    if (fl[i].src == fl[i].dst || fl[i].bytes == 0) {
      /* nothing crosses a link: a local or empty flow finishes at once
       * (plus latency when it does cross one) */
      int path[SIM_NET_MAXPATH], plen;
      int64_t lat;
      sim_net_path(&net, fl[i].src, fl[i].dst, path, &plen, &lat);
      fl[i].finish_ns = lat;
      continue;
    }
    if (sim_net_start(&net, 0, fl[i].src, fl[i].dst, (double)fl[i].bytes, i) < 0)
      rc = cli_fail(CLI_EFAIL, "net", "out of memory");
  }
  int64_t tags[256], dones[256];
  while (!rc && sim_net_active(&net) > 0) {
    int64_t t = sim_net_next(&net);
    int got = sim_net_advance(&net, t, tags, dones, 256);
    if (got < 0)
      rc = cli_fail(CLI_EFAIL, "net", "internal error: %d", got);
    for (int k = 0; k < got; k++)
      fl[tags[k]].finish_ns = dones[k];
  }
  sim_net_fini(&net);
  for (int i = 0; i < nf; i++)
    if (fl[i].finish_ns > makespan)
      makespan = fl[i].finish_ns;
  if (!rc && fmt == CLI_FMT_JSON) {
    json_t *arr = json_array();
    int bad = !arr; /* a pack that failed (out of memory) fails the output */
    for (int i = 0; i < nf && !bad; i++)
      bad |= json_array_append_new(
                 arr, json_pack("{s:i, s:i, s:I, s:o}", "src", fl[i].src, "dst", fl[i].dst,
                                "bytes", (json_int_t)fl[i].bytes, "finish_us",
                                cli_json_number((double)fl[i].finish_ns * 1e-3))) != 0;
    json_t *root = json_pack("{s:o, s:o}", "makespan_us",
                             cli_json_number((double)makespan * 1e-3), "flows", arr);
    if (bad) {
      json_decref(root);
      root = NULL;
    }
    rc = cli_json_print("net", root,
                        JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
  } else if (!rc) {
    printf("cluster %s: %d nodes x %d GPUs, %d flows\n", cl.name, cl.nodes, cl.gpus_per_node, nf);
    printf("%6s %6s %16s %14s\n", "src", "dst", "bytes", "finish_us");
    for (int i = 0; i < nf; i++)
      printf("%6d %6d %16lld %14.3f\n", fl[i].src, fl[i].dst, (long long)fl[i].bytes,
             (double)fl[i].finish_ns * 1e-3);
    printf("makespan_us %.3f\n", (double)makespan * 1e-3);
  }
  free(fl);
  return rc;
}
