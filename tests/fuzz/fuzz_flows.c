/*
 * fuzz_flows.c - libFuzzer target of the `flexmoe net` flows CSV: read on a
 * 2-node x 4-GPU cluster and, when it holds at most 64 flows, run to the
 * finish times on the link graph (every finish at least its latency, the
 * makespan the largest).
 */
#include <stdint.h>

#include "fuzz_io.h"
#include "sim/sim_flows.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sim_cluster c;
  sim_errbuf err;
  if (sim_cluster_preset("dgx-h100", &c, &err) || sim_cluster_resize(&c, 2, 4, &err))
    abort();
  sim_flow_line *fl = NULL;
  int n = 0;
  if (sim_flows_read(fuzz_file("f.csv", data, size), sim_cluster_gpus(&c), &fl, &n, &err))
    return 0;
  int64_t makespan = -1;
  if (n <= 64 && sim_flows_run(&c, fl, n, &makespan, &err) == 0) {
    for (int i = 0; i < n; i++)
      if (fl[i].finish_ns < 0 || fl[i].finish_ns > makespan)
        abort();
  }
  sim_free(fl);
  return 0;
}
