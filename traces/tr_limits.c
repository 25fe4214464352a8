/*
 * tr_limits.c - the memory budget of the traces library: what it may
 * allocate for one trace (a CSV read densely, a generator's or a rescale's
 * working set), and sizes as a user writes and reads them ("512M", "7.45 GiB").
 *
 * Design. Nothing here allocates. A caller computes what an operation would
 * hold before allocating any of it and asks tr_check_memory, which refuses
 * with TR_EBUDGET and a message giving both sizes; the faces say how to
 * raise the budget (the CLI's --max-memory). The default budget is half of
 * the memory this process can have: physical memory, or the cgroup's limit
 * when that is lower (a container sees the host's physical memory in
 * sysconf). .npy traces are mapped, never allocated, so they are not
 * counted: the budget is about the heap.
 */
#include "traces/tr_trace.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A cgroup memory limit in bytes from one of the files that hold it (v2:
 * "max" or a number; v1: a number, near 2^63 when unlimited), or 0. */
static uint64_t cgroup_limit(const char *path) {
  FILE *fp = fopen(path, "r");
  if (!fp)
    return 0;
  char buf[64] = "";
  uint64_t v = 0;
  if (fgets(buf, sizeof(buf), fp)) {
    errno = 0;
    char *end;
    unsigned long long x = strtoull(buf, &end, 10);
    if (!errno && end != buf)
      v = (uint64_t)x;
  }
  fclose(fp);
  return v;
}

uint64_t tr_default_max_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t phys = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
  static const char *cg[] = {"/sys/fs/cgroup/memory.max",
                             "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
  for (size_t i = 0; i < sizeof(cg) / sizeof(cg[0]); i++) {
    uint64_t lim = cgroup_limit(cg[i]);
    if (lim > 0 && (phys == 0 || lim < phys))
      phys = lim;
  }
  if (phys == 0)
    phys = (uint64_t)8 << 30; /* sysconf failed: assume a small machine */
  return phys / 2;
}

uint64_t tr_max_memory(uint64_t max_memory) {
  return max_memory ? max_memory : tr_default_max_memory();
}

const char *tr_format_size(double bytes, char *buf, size_t len) {
  static const char *unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (!(bytes >= 1024)) {
    snprintf(buf, len, "%.0f bytes", bytes >= 0 ? bytes : 0);
    return buf;
  }
  int u = 0;
  bytes /= 1024;
  while (bytes >= 1024 && u < 5) {
    bytes /= 1024;
    u++;
  }
  /* three significant digits: 1.50 GiB, 14.9 GiB, 466 TiB */
  snprintf(buf, len, "%.*f %s", bytes < 10 ? 2 : bytes < 100 ? 1 : 0, bytes, unit[u]);
  return buf;
}

int tr_parse_size(const char *text, uint64_t *bytes) {
  if (!text || !bytes)
    return TR_EINVAL;
  const char *s = text;
  if (!(*s >= '0' && *s <= '9') && *s != '.')
    return TR_EINVAL; /* no sign, no spaces, no "inf" */
  errno = 0;
  char *end;
  double v = strtod(s, &end);
  if (errno || end == s || !isfinite(v))
    return TR_EINVAL;
  static const struct {
    const char *suffix;
    int shift;
  } suf[] = {{"", 0},     {"B", 0},    {"K", 10},   {"KB", 10}, {"KIB", 10}, {"M", 20},
             {"MB", 20},  {"MIB", 20}, {"G", 30},   {"GB", 30}, {"GIB", 30}, {"T", 40},
             {"TB", 40},  {"TIB", 40}};
  int shift = -1;
  for (size_t i = 0; i < sizeof(suf) / sizeof(suf[0]); i++)
    if (strcasecmp(end, suf[i].suffix) == 0)
      shift = suf[i].shift;
  if (shift < 0)
    return TR_EINVAL;
  double b = floor(ldexp(v, shift));
  if (b < 1 || b > TR_MAX_MEMORY_LIMIT)
    return TR_EINVAL;
  *bytes = (uint64_t)b;
  return TR_OK;
}

int tr_check_memory(uint64_t need, uint64_t max_memory, const char *path, const char *what,
                    tr_error *err) {
  uint64_t budget = tr_max_memory(max_memory);
  if (need <= budget)
    return TR_OK;
  char a[32], b[32];
  return tr_seterr(err, TR_EBUDGET, path, 0, "%s needs %s%s, more than the memory budget of %s",
                   what, need == UINT64_MAX ? "more than " : "",
                   tr_format_size((double)need, a, sizeof(a)),
                   tr_format_size((double)budget, b, sizeof(b)));
}

uint64_t tr_mul_sat(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

uint64_t tr_add_sat(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* ---- physical ranges --------------------------------------------------- */

const tr_limit tr_limits[TR_LIM_COUNT] = {
#define TR_LIM_ROW(id, nm, l, h) [TR_LIM_##id] = {.name = nm, .lo = l, .hi = h},
    TR_LIMIT_MAP(TR_LIM_ROW)
#undef TR_LIM_ROW
};

int tr_in_limit(tr_limit_id id, int64_t v) {
  return id >= 0 && id < TR_LIM_COUNT && v >= tr_limits[id].lo && v <= tr_limits[id].hi;
}

int tr_check_meta(const tr_meta *m, int experts, int code, const char *path, tr_error *err) {
  const struct {
    tr_limit_id id;
    int64_t v;
  } f[] = {{TR_LIM_TOP_K, m->top_k},
           {TR_LIM_D_MODEL, m->d_model},
           {TR_LIM_D_FF, m->d_ff},
           {TR_LIM_BYTES_PER_ELEM, m->bytes_per_elem},
           {TR_LIM_TOKENS_PER_RANK, m->tokens_per_rank}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    const tr_limit *l = &tr_limits[f[i].id];
    int64_t hi = f[i].id == TR_LIM_TOP_K && experts > 0 && experts < l->hi ? experts : l->hi;
    if (f[i].v != 0 && (f[i].v < l->lo || f[i].v > hi))
      return tr_seterr(err, code, path, 0,
                       "%s %" PRId64 " is out of range: it must be between %" PRId64
                       " and %" PRId64 "%s (0: unknown)",
                       l->name, f[i].v, l->lo, hi, hi < l->hi ? " (the experts)" : "");
  }
  return TR_OK;
}
