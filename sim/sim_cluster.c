/*
 * sim_cluster.c - cluster presets, JSON cluster files, the planner's view.
 *
 * Preset numbers (per GPU, per direction):
 *   dgx-a100   8 GPU/node, NVLink3 300 GB/s, 2 us; 8 x 200 Gb/s HDR IB
 *              = 25 GB/s NIC per GPU, 5 us; A100 80 GB.
 *   dgx-h100   8 GPU/node, NVLink4 450 GB/s, 2 us; 8 x 400 Gb/s NDR IB
 *              = 50 GB/s NIC per GPU, 5 us; H100 80 GB.
 *   pcie-a100  8 GPU/node on PCIe 4.0 x16 (~24 GB/s achievable), 5 us; one
 *              200 Gb/s NIC per node (25 GB/s shared), 8 us; A100 80 GB.
 *   h200-green-N  one H200 split into N SM partitions (GPU.md): partitions
 *              exchange at ~500 GB/s each (measured 502 GB/s per partition
 *              with 4), 4 us (a 4 KiB device copy: 4.18 us); HBM 141 GiB / N;
 *              compute slower by 132 / sms_per_partition x 1.02 (the 1.02 is
 *              measured: 4 partitions of 32 SMs ran the FFN 4.21x slower than
 *              the whole GPU, ideal 4.125). Partitions are multiples of 8 SMs
 *              (floor(132 / N / 8) x 8, at least 8), as the green-context
 *              split gives them. One node only (inter numbers = intra).
 */
#include "sim/sim_cluster.h"
#include "sim_json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const preset_names[] = {"dgx-a100", "dgx-h100", "pcie-a100",
                                           "h200-green-4", NULL};

const char *const *sim_cluster_presets(void) { return preset_names; }

static void set_name(sim_cluster *c, const char *name) {
  snprintf(c->name, sizeof(c->name), "%s", name);
}

int sim_cluster_preset(const char *name, sim_cluster *out, sim_errbuf *err) {
  sim_cluster c;
  memset(&c, 0, sizeof(c));
  c.nodes = 1;
  c.gpus_per_node = 8;
  c.compute_scale = 1.0;
  c.oversub = 1.0;
  if (!name) {
    sim_seterr(err, "no cluster preset given");
    return SIM_EINVAL;
  }
  if (strcmp(name, "dgx-a100") == 0) {
    snprintf(c.profile, sizeof(c.profile), "a100");
    c.hbm_gib = 80;
    c.intra_GBps = 300;
    c.intra_lat_us = 2;
    c.inter_GBps = 25;
    c.inter_lat_us = 5;
    snprintf(c.description, sizeof(c.description),
             "DGX A100: 8 GPU/node, NVLink 300 GB/s, 8x200 Gb/s IB");
  } else if (strcmp(name, "dgx-h100") == 0) {
    snprintf(c.profile, sizeof(c.profile), "h100");
    c.hbm_gib = 80;
    c.intra_GBps = 450;
    c.intra_lat_us = 2;
    c.inter_GBps = 50;
    c.inter_lat_us = 5;
    snprintf(c.description, sizeof(c.description),
             "DGX H100: 8 GPU/node, NVLink 450 GB/s, 8x400 Gb/s IB");
  } else if (strcmp(name, "pcie-a100") == 0) {
    snprintf(c.profile, sizeof(c.profile), "a100");
    c.hbm_gib = 80;
    c.intra_GBps = 24;
    c.intra_lat_us = 5;
    c.inter_GBps = 25;
    c.inter_lat_us = 8;
    c.nic_per_node = 1;
    snprintf(c.description, sizeof(c.description),
             "A100 PCIe 4.0 servers: 8 GPU/node, 24 GB/s, one 200 Gb/s NIC per node");
  } else if (strncmp(name, "h200-green-", 11) == 0) {
    char *end;
    errno = 0;
    long n = strtol(name + 11, &end, 10);
    if (errno || end == name + 11 || *end || n < 1 || n > 16) {
      sim_seterr(err, "cluster preset '%s': N in h200-green-N must be 1..16", name);
      return SIM_ENOENT;
    }
    int sms = (int)(132 / n / 8) * 8;
    if (sms < 8)
      sms = 8;
    if (n == 1)
      sms = 132;
    snprintf(c.profile, sizeof(c.profile), "h200");
    c.gpus_per_node = (int)n;
    c.hbm_gib = 141.0 / (double)n;
    c.compute_scale = n == 1 ? 1.0 : 132.0 / sms * 1.02;
    c.intra_GBps = 500;
    c.intra_lat_us = 4;
    c.inter_GBps = 500;
    c.inter_lat_us = 4;
    snprintf(c.description, sizeof(c.description),
             "one H200 as %ld SM partitions of %d SMs, ~500 GB/s copies", n, sms);
  } else {
    sim_seterr(err,
           "unknown cluster preset '%s' (presets: dgx-a100, dgx-h100, pcie-a100, "
           "h200-green-N; or a .json file)",
           name);
    return SIM_ENOENT;
  }
  set_name(&c, name);
  *out = c;
  return SIM_OK;
}

int sim_cluster_check(const sim_cluster *c, sim_errbuf *err) {
  if (c->nodes < 1 || c->nodes > SIM_MAX_GPUS) {
    sim_seterr(err, "nodes must be between 1 and %d (got %d)", SIM_MAX_GPUS, c->nodes);
    return SIM_ERANGE;
  }
  if (c->gpus_per_node < 1 || c->gpus_per_node > SIM_MAX_GPUS) {
    sim_seterr(err, "gpus_per_node must be between 1 and %d (got %d)", SIM_MAX_GPUS,
           c->gpus_per_node);
    return SIM_ERANGE;
  }
  if ((long long)c->nodes * c->gpus_per_node > SIM_MAX_GPUS) {
    sim_seterr(err, "%d nodes x %d GPUs is more than the %d GPUs the simulator handles",
           c->nodes, c->gpus_per_node, SIM_MAX_GPUS);
    return SIM_ERANGE;
  }
  /* Inclusive physical ranges; NaN fails every comparison and is refused. */
  struct {
    const char *key;
    double v, lo, hi;
  } f[] = {{"gpu.hbm_gib", c->hbm_gib, SIM_HBM_MIN_GIB, SIM_HBM_MAX_GIB},
           {"gpu.compute_scale", c->compute_scale, SIM_SCALE_MIN, SIM_SCALE_MAX},
           {"intra.bandwidth_GBps", c->intra_GBps, SIM_BW_MIN_GBPS, SIM_BW_MAX_GBPS},
           {"intra.latency_us", c->intra_lat_us, 0, SIM_LAT_MAX_US},
           {"inter.bandwidth_GBps", c->inter_GBps, SIM_BW_MIN_GBPS, SIM_BW_MAX_GBPS},
           {"inter.latency_us", c->inter_lat_us, 0, SIM_LAT_MAX_US},
           {"inter.oversubscription", c->oversub, 1, SIM_OVERSUB_MAX}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    if (!(f[i].v >= f[i].lo && f[i].v <= f[i].hi)) {
      sim_seterr(err, "%s must be between %g and %g (got %g)", f[i].key, f[i].lo, f[i].hi,
             f[i].v);
      return SIM_ERANGE;
    }
  }
  /* any GPU's name: a built-in profile (h200, h100, a100) or one measured
   * and given with --profile; the simulator says which when neither is */
  size_t plen = strlen(c->profile);
  if (plen == 0 || strspn(c->profile, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_.-") != plen) {
    sim_seterr(err, "gpu.profile '%s' is not a GPU name (letters, digits, '_', '.', '-'): a "
                "built-in (h200, h100, a100) or the GPU of a --profile file",
           c->profile);
    return SIM_ERANGE;
  }
  return SIM_OK;
}

/* Reads a number member; 1 if absent (and not required). */
static int get_num(json_t *obj, const char *key, const char *path, const char *prefix,
                   int required, double *out, sim_errbuf *err) {
  json_t *v = json_object_get(obj, key);
  if (!v) {
    if (!required)
      return 1;
    sim_seterr(err, "%s: missing key '%s%s'", path, prefix, key);
    return SIM_EKEY;
  }
  if (!json_is_number(v)) {
    sim_seterr(err, "%s: key '%s%s' must be a number", path, prefix, key);
    return SIM_EKEY;
  }
  *out = json_number_value(v);
  return 0;
}

static int get_int(json_t *obj, const char *key, const char *path, int *out,
                   sim_errbuf *err) {
  json_t *v = json_object_get(obj, key);
  if (!v) {
    sim_seterr(err, "%s: missing key '%s'", path, key);
    return SIM_EKEY;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 1 ||
      json_integer_value(v) > SIM_MAX_GPUS) {
    sim_seterr(err, "%s: key '%s' must be an integer between 1 and %d", path, key, SIM_MAX_GPUS);
    return SIM_ERANGE;
  }
  *out = (int)json_integer_value(v);
  return 0;
}

static int only_keys(json_t *obj, const char *const *allowed, const char *path,
                     const char *prefix, sim_errbuf *err) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int ok = 0;
    for (int i = 0; allowed[i]; i++)
      ok |= strcmp(key, allowed[i]) == 0;
    if (!ok) {
      sim_seterr(err, "%s: unknown key '%s%s'", path, prefix, key);
      return SIM_EKEY;
    }
  }
  return 0;
}

static json_t *get_obj(json_t *root, const char *key, const char *path, sim_errbuf *err,
                       int *rc) {
  json_t *o = json_object_get(root, key);
  if (!o || !json_is_object(o)) {
    sim_seterr(err, "%s: missing key '%s' (an object)", path, key);
    *rc = SIM_EKEY;
    return NULL;
  }
  return o;
}

/* What `flexmoe clusters NAME --format json > FILE` writes, {"clusters":
 * [one]}, as the one cluster it holds (*root replaced by it); any other
 * root as it is. SIM_EKEY for such a list of other than one cluster. */
static int cluster_unwrap(json_t **root, const char *path, sim_errbuf *err) {
  json_t *list = json_is_object(*root) ? json_object_get(*root, "clusters") : NULL;
  if (!list || json_object_size(*root) != 1 || !json_is_array(list))
    return SIM_OK;
  if (json_array_size(list) != 1) {
    sim_seterr(err, "%s: holds %zu clusters; a cluster file holds one (write one with "
                "'flexmoe clusters NAME --format json > FILE')",
           path, json_array_size(list));
    return SIM_EKEY;
  }
  json_t *one = json_incref(json_array_get(list, 0));
  json_decref(*root);
  *root = one;
  return SIM_OK;
}

/* The cluster's own keys into c: name (else the file's name),
 * description, nodes, gpus_per_node, and gpus when given (it must agree). */
static int cluster_top(json_t *root, const char *path, sim_cluster *c, sim_errbuf *err) {
  json_t *v = json_object_get(root, "name");
  if (v && !json_is_string(v)) {
    sim_seterr(err, "%s: key 'name' must be a string", path);
    return SIM_EKEY;
  }
  if (v)
    set_name(c, json_string_value(v));
  else {
    const char *base = strrchr(path, '/');
    set_name(c, base ? base + 1 : path);
  }
  v = json_object_get(root, "description");
  if (v && json_is_string(v))
    snprintf(c->description, sizeof(c->description), "%s", json_string_value(v));
  else if (v) {
    sim_seterr(err, "%s: key 'description' must be a string", path);
    return SIM_EKEY;
  }
  int rc;
  if ((rc = get_int(root, "nodes", path, &c->nodes, err)) ||
      (rc = get_int(root, "gpus_per_node", path, &c->gpus_per_node, err)))
    return rc;
  v = json_object_get(root, "gpus"); /* what `clusters --format json` adds: must agree */
  if (v && (!json_is_integer(v) ||
            json_integer_value(v) != (json_int_t)c->nodes * c->gpus_per_node)) {
    sim_seterr(err, "%s: key 'gpus' must be nodes x gpus_per_node = %lld (or be left out)", path,
           (long long)c->nodes * c->gpus_per_node);
    return SIM_EKEY;
  }
  return SIM_OK;
}

/* The objects gpu, intra and inter into c, each with its known keys only. */
static int cluster_parts(json_t *root, const char *path, sim_cluster *c, sim_errbuf *err) {
  static const char *const gpuk[] = {"profile", "hbm_gib", "compute_scale", NULL};
  static const char *const intrak[] = {"bandwidth_GBps", "latency_us", NULL};
  static const char *const interk[] = {"bandwidth_GBps", "latency_us", "oversubscription",
                                       "nic_per_node", NULL};
  json_t *gpu, *intra, *inter, *v;
  int rc = SIM_OK;
  if (!(gpu = get_obj(root, "gpu", path, err, &rc)) ||
      !(intra = get_obj(root, "intra", path, err, &rc)) ||
      !(inter = get_obj(root, "inter", path, err, &rc)))
    return rc;
  if ((rc = only_keys(gpu, gpuk, path, "gpu.", err)) ||
      (rc = only_keys(intra, intrak, path, "intra.", err)) ||
      (rc = only_keys(inter, interk, path, "inter.", err)))
    return rc;
  v = json_object_get(gpu, "profile");
  if (!v || !json_is_string(v)) {
    sim_seterr(err, "%s: missing key 'gpu.profile' (a string: h200, h100 or a100)", path);
    return SIM_EKEY;
  }
  snprintf(c->profile, sizeof(c->profile), "%s", json_string_value(v));
  if ((rc = get_num(gpu, "hbm_gib", path, "gpu.", 1, &c->hbm_gib, err)) < 0 ||
      (rc = get_num(gpu, "compute_scale", path, "gpu.", 0, &c->compute_scale, err)) < 0 ||
      (rc = get_num(intra, "bandwidth_GBps", path, "intra.", 1, &c->intra_GBps, err)) < 0 ||
      (rc = get_num(intra, "latency_us", path, "intra.", 1, &c->intra_lat_us, err)) < 0 ||
      (rc = get_num(inter, "bandwidth_GBps", path, "inter.", 1, &c->inter_GBps, err)) < 0 ||
      (rc = get_num(inter, "latency_us", path, "inter.", 1, &c->inter_lat_us, err)) < 0 ||
      (rc = get_num(inter, "oversubscription", path, "inter.", 1, &c->oversub, err)) < 0)
    return rc;
  v = json_object_get(inter, "nic_per_node");
  if (v) {
    if (!json_is_boolean(v)) {
      sim_seterr(err, "%s: key 'inter.nic_per_node' must be true or false", path);
      return SIM_EKEY;
    }
    c->nic_per_node = json_is_true(v);
  }
  return SIM_OK;
}

int sim_cluster_load(const char *path, sim_cluster *out, sim_errbuf *err) {
  json_t *root;
  int lrc = sim_json_load(path, "cluster file", &root, err);
  if (lrc)
    return lrc;
  static const char *const top[] = {"name", "nodes", "gpus_per_node", "gpu", "intra",
                                    "inter", "description", "gpus", NULL};
  sim_cluster c = {.compute_scale = 1.0};
  sim_errbuf e2;
  int rc = cluster_unwrap(&root, path, err);
  if (rc)
    goto done;
  if (!json_is_object(root)) {
    sim_seterr(err, "%s: a cluster file is a JSON object", path);
    rc = SIM_EFORMAT;
    goto done;
  }
  if ((rc = only_keys(root, top, path, "", err)) || (rc = cluster_top(root, path, &c, err)) ||
      (rc = cluster_parts(root, path, &c, err)))
    goto done;
  if ((rc = sim_cluster_check(&c, &e2))) {
    sim_seterr(err, "%s: %s", path, e2.msg);
    goto done;
  }
  *out = c;
done:
  json_decref(root);
  return rc;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

int sim_cluster_resolve(const char *spec, sim_cluster *c, sim_errbuf *err) {
  struct stat st;
  if (!spec || !*spec) {
    sim_seterr(err, "empty cluster name");
    return SIM_EINVAL;
  }
  if (ends_with(spec, ".json") || strchr(spec, '/') || stat(spec, &st) == 0)
    return sim_cluster_load(spec, c, err);
  return sim_cluster_preset(spec, c, err);
}

int sim_cluster_resize(sim_cluster *c, int nodes, int gpus_per_node, sim_errbuf *err) {
  sim_cluster n = *c;
  if (nodes < 0 || nodes > SIM_MAX_GPUS) {
    sim_seterr(err, "nodes must be between 1 and %d (got %d)", SIM_MAX_GPUS, nodes);
    return SIM_ERANGE;
  }
  if (gpus_per_node < 0 || gpus_per_node > SIM_MAX_GPUS) {
    sim_seterr(err, "gpus_per_node must be between 1 and %d (got %d)", SIM_MAX_GPUS,
           gpus_per_node);
    return SIM_ERANGE;
  }
  if (nodes)
    n.nodes = nodes;
  if (gpus_per_node)
    n.gpus_per_node = gpus_per_node;
  if (strncmp(c->name, "h200-green-", 11) == 0 && n.nodes != 1) {
    sim_seterr(err, "cluster '%s' is one GPU: it has exactly one node", c->name);
    return SIM_ERANGE;
  }
  int rc = sim_cluster_check(&n, err);
  if (rc)
    return rc;
  *c = n;
  return SIM_OK;
}

void sim_cluster_to_pl(const sim_cluster *c, int slots, pl_cluster *out) {
  memset(out, 0, sizeof(*out));
  out->gpus = sim_cluster_gpus(c);
  out->gpus_per_node = c->gpus_per_node;
  out->slots = slots;
  out->intra_Bps = c->intra_GBps * 1e9;
  out->intra_lat_s = c->intra_lat_us * 1e-6;
  out->inter_Bps = c->inter_GBps * 1e9 / (c->nic_per_node ? c->gpus_per_node : 1);
  out->inter_lat_s = c->inter_lat_us * 1e-6;
  out->oversub = c->oversub;
}

int sim_cluster_json(const sim_cluster *c, char *buf, size_t len) {
  json_t *o = json_pack("{s:s, s:i, s:i, s:{s:s, s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f, s:f, s:b}}",
                        "name", c->name, "nodes", c->nodes, "gpus_per_node", c->gpus_per_node,
                        "gpu", "profile", c->profile, "hbm_gib", c->hbm_gib, "compute_scale",
                        c->compute_scale, "intra", "bandwidth_GBps", c->intra_GBps,
                        "latency_us", c->intra_lat_us, "inter", "bandwidth_GBps",
                        c->inter_GBps, "latency_us", c->inter_lat_us, "oversubscription",
                        c->oversub, "nic_per_node", c->nic_per_node);
  if (!o)
    return SIM_ENOMEM;
  size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  int rc = SIM_ERANGE;
  if (need && need < len) {
    json_dumpb(o, buf, len, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    buf[need] = '\0';
    rc = (int)need;
  }
  json_decref(o);
  return rc;
}
