/*
 * sim_flows.c - the flows CSV and its finish times (see sim_flows.h).
 */
#include "sim/sim_flows.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim/sim_net.h"

static int efail(sim_errbuf *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int efail(sim_errbuf *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
  }
  return code;
}

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

int sim_flows_read(const char *path, int gpus, sim_flow_line **out, int *nout, sim_errbuf *err) {
  FILE *f = fopen(path, "r");
  if (!f)
    return efail(err, SIM_ENOENT, "%s: cannot open (%s)", path, strerror(errno));
  char line[4096];
  int n = 0, cap = 0, rc = SIM_OK;
  long lineno = 0;
  sim_flow_line *v = NULL;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    size_t len = strlen(line);
    if (len && line[len - 1] != '\n' && !feof(f)) {
      rc = efail(err, SIM_EFORMAT, "%s:%ld: line too long", path, lineno);
      goto done;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (lineno == 1) {
      if (strcmp(line, "src_gpu,dst_gpu,bytes") != 0) {
        rc = efail(err, SIM_EFORMAT, "%s:1: header must be 'src_gpu,dst_gpu,bytes' (got '%s')",
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
        rc = efail(err, SIM_ERANGE, "%s:%ld: %s overflows", path, lineno, names[k]);
        goto done;
      }
      if (e || (k < 2 ? *s != ',' : *s != '\0')) {
        rc = efail(err, SIM_EFORMAT,
                   "%s:%ld: expected three non-negative integers src_gpu,dst_gpu,bytes "
                   "(got '%s')",
                   path, lineno, line);
        goto done;
      }
      if (k < 2)
        s++;
    }
    if (a[2] > SIM_FLOWS_MAX_BYTES) {
      rc = efail(err, SIM_ERANGE,
                 "%s:%ld: bytes must be between 0 and %lld (2^50, 1 PiB) (got %lld)", path,
                 lineno, (long long)SIM_FLOWS_MAX_BYTES, (long long)a[2]);
      goto done;
    }
    if (a[0] >= gpus || a[1] >= gpus) {
      rc = efail(err, SIM_ERANGE, "%s:%ld: GPU %lld is not in the cluster (GPUs 0..%d)", path,
                 lineno, (long long)(a[0] >= gpus ? a[0] : a[1]), gpus - 1);
      goto done;
    }
    if (n == SIM_FLOWS_MAX) {
      rc = efail(err, SIM_ERANGE, "%s:%ld: more than %d flows (2^20) in one file", path, lineno,
                 SIM_FLOWS_MAX);
      goto done;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      sim_flow_line *nv = sim_realloc(v, (size_t)cap * sizeof(*v));
      if (!nv) {
        rc = efail(err, SIM_ENOMEM, "%s", "out of memory");
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
    rc = efail(err, SIM_EFORMAT, "%s: read error", path);
    goto done;
  }
  if (lineno == 0) {
    rc = efail(err, SIM_EFORMAT, "%s: file is empty", path);
    goto done;
  }
done:
  fclose(f);
  if (rc) {
    sim_free(v);
    return rc;
  }
  *out = v;
  *nout = n;
  return SIM_OK;
}

int sim_flows_run(const sim_cluster *cl, sim_flow_line *fl, int n, int64_t *makespan_ns,
                  sim_errbuf *err) {
  sim_net net;
  if (sim_net_init(&net, cl))
    return efail(err, SIM_ENOMEM, "%s", "out of memory");
  net.work_limit = SIM_FLOWS_MAX_WORK;
  int rc = SIM_OK;
  for (int i = 0; i < n && !rc; i++) {
    if (fl[i].src == fl[i].dst || fl[i].bytes == 0) {
      /* nothing crosses a link: a local or empty flow finishes at once
       * (plus latency when it does cross one) */
      int path[SIM_NET_MAXPATH], plen;
      int64_t lat;
      sim_net_path(&net, fl[i].src, fl[i].dst, path, &plen, &lat);
      fl[i].finish_ns = lat;
      continue;
    }
    int id = sim_net_start(&net, 0, fl[i].src, fl[i].dst, (double)fl[i].bytes, i);
    if (id < 0)
      rc = efail(err, id, "%s", sim_strerror(id));
  }
  int64_t tags[256], dones[256];
  while (!rc && sim_net_active(&net) > 0) {
    int64_t t = sim_net_next(&net);
    int got = t < 0 ? (int)t : sim_net_advance(&net, t, tags, dones, 256);
    if (got == SIM_ETIME)
      rc = efail(err, SIM_ETIME, "the flows would take longer than 2^62 ns (146 years) on cluster %s",
                 cl->name);
    else if (got == SIM_ELIMIT)
      rc = efail(err, SIM_ELIMIT,
                 "more than %llu flow rate updates (2^28): %d flows with this many distinct "
                 "finish times on shared links take too long; split the file",
                 (unsigned long long)SIM_FLOWS_MAX_WORK, n);
    else if (got < 0)
      rc = efail(err, got, "%s", sim_strerror(got));
    for (int k = 0; k < got; k++)
      fl[tags[k]].finish_ns = dones[k];
  }
  sim_net_fini(&net);
  int64_t makespan = 0;
  for (int i = 0; i < n; i++)
    if (fl[i].finish_ns > makespan)
      makespan = fl[i].finish_ns;
  if (!rc)
    *makespan_ns = makespan;
  return rc;
}
