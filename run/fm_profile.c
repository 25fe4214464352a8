/*
 * fm_profile.c - calibrated profiles on disk (contract: fm_profile.h).
 */
#include "run/fm_profile.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/fm_error.h"
#include "run/fm_json.h"
#include "runtime/rt_backend.h"
#include "runtime/rt_calib.h"
#include "sim/sim_profile.h"
#include "store/st_store.h"

double fm_profile_local_us(const fm_profile *p, double slots) {
  if (p->local_us_per_row <= 0 && p->local_lat_us <= 0) return 0.0;
  return 4.0 * (p->local_lat_us + slots * p->local_us_per_row);
}

static void sibling(const char *path, const char *ext, char *buf, size_t len) {
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".json") == 0)
    snprintf(buf, len, "%.*s.%s.json", (int)(n - 5), path, ext);
  else
    snprintf(buf, len, "%s.%s.json", path, ext);
}

void fm_profile_cluster_path(const char *path, char *buf, size_t len) {
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".json") == 0)
    snprintf(buf, len, "%.*s.cluster.json", (int)(n - 5), path);
  else
    snprintf(buf, len, "%s.cluster.json", path);
}

int fm_profile_load(const char *path, fm_profile *p, char *em, size_t el) {
  json_error_t je;
  json_t *root = json_load_file(path, 0, &je);
  if (!root) {
    snprintf(em, el, "%s:%d: %s", path, je.line, je.text);
    return FM_EFAIL;
  }
  memset(p, 0, sizeof *p);
  int rc = FM_EFAIL;
  json_t *shapes = json_object_get(root, "shapes"), *sh = json_array_get(shapes, 0);
  json_t *br = json_object_get(root, "bwd_ratio");
  json_t *tk = json_object_get(sh, "tokens"), *us = json_object_get(sh, "us");
  if (!json_is_number(br) || !json_is_array(tk) || !json_is_array(us) ||
      json_array_size(tk) != json_array_size(us) || json_array_size(tk) < 1 ||
      json_array_size(tk) > 64) {
    snprintf(em, el, "%s: not a profile (needs bwd_ratio and shapes[0].tokens/us of equal length)", path);
    goto done;
  }
  const char *s = json_string_value(json_object_get(root, "name"));
  snprintf(p->name, sizeof p->name, "%s", s ? s : "calibrated");
  s = json_string_value(json_object_get(root, "device"));
  snprintf(p->device, sizeof p->device, "%s", s ? s : "");
  p->d_model = (int)json_integer_value(json_object_get(sh, "d_model"));
  p->d_ff = (int)json_integer_value(json_object_get(sh, "d_ff"));
  p->npoints = (int)json_array_size(tk);
  for (int i = 0; i < p->npoints; i++) {
    p->tok[i] = json_number_value(json_array_get(tk, (size_t)i));
    p->us[i] = json_number_value(json_array_get(us, (size_t)i));
  }
  p->pl.npoints = p->npoints;
  p->pl.tokens = p->tok;
  p->pl.us = p->us;
  p->pl.bwd_ratio = json_number_value(br);
  p->pl.nonmoe_us = 0.0;
  if (pl_profile_check(&p->pl)) {
    snprintf(em, el, "%s: profile points must be ascending and positive", path);
    goto done;
  }
  char cpath[1024];
  fm_profile_cluster_path(path, cpath, sizeof cpath);
  if (access(cpath, R_OK) == 0) {
    json_t *c = json_load_file(cpath, 0, &je);
    if (!c) {
      snprintf(em, el, "%s:%d: %s", cpath, je.line, je.text);
      goto done;
    }
    json_t *in = json_object_get(c, "intra");
    p->exchange_GBps = json_number_value(json_object_get(in, "bandwidth_GBps"));
    p->exchange_latency_us = json_number_value(json_object_get(in, "latency_us"));
    p->gpus = (int)json_integer_value(json_object_get(c, "gpus_per_node"));
    json_decref(c);
  }
  sibling(path, "runtime", cpath, sizeof cpath);
  if (access(cpath, R_OK) == 0) {
    json_t *c = json_load_file(cpath, 0, &je);
    if (!c) {
      snprintf(em, el, "%s:%d: %s", cpath, je.line, je.text);
      goto done;
    }
    p->local_lat_us = json_number_value(json_object_get(c, "local_latency_us"));
    p->local_us_per_row = json_number_value(json_object_get(c, "local_us_per_row"));
    p->launch_us = json_number_value(json_object_get(c, "launch_us"));
    json_decref(c);
  }
  rc = FM_OK;
done:
  json_decref(root);
  return rc;
}

int fm_profile_json(const fm_profile *p, char **pj, char **cj) {
  json_t *tk = json_array(), *us = json_array();
  for (int i = 0; i < p->npoints; i++) {
    json_array_append_new(tk, json_real(p->tok[i]));
    json_array_append_new(us, json_real(p->us[i]));
  }
  json_t *prof = json_pack("{s:s, s:s, s:s, s:f, s:f, s:[{s:i, s:i, s:o, s:o}]}", "name", p->name,
                           "device", p->device, "dtype", "bf16", "bwd_ratio", p->pl.bwd_ratio,
                           "nonmoe_factor", 0.0, "shapes", "d_model", p->d_model, "d_ff", p->d_ff,
                           "tokens", tk, "us", us);
  int G = p->gpus > 0 ? p->gpus : 1;
  char cname[96];
  snprintf(cname, sizeof cname, "%s-cluster", p->name);
  json_t *cl = json_pack(
      "{s:s, s:i, s:i, s:{s:s, s:f, s:f}, s:{s:f, s:f}, s:{s:f, s:f, s:f}}", "name", cname,
      "nodes", 1, "gpus_per_node", G, "gpu", "profile", "h200", "hbm_gib", 141.0 / G,
      "compute_scale", 1.0, "intra", "bandwidth_GBps", p->exchange_GBps, "latency_us",
      p->exchange_latency_us, "inter", "bandwidth_GBps", p->exchange_GBps, "latency_us",
      p->exchange_latency_us, "oversubscription", 1.0);
  *pj = prof ? json_dumps(prof, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
  *cj = cl ? json_dumps(cl, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
  json_decref(prof);
  json_decref(cl);
  if (!*pj || !*cj) {
    free(*pj);
    free(*cj);
    return FM_EFAIL;
  }
  return FM_OK;
}

static int write_atomic(const char *path, const char *text, char *em, size_t el) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    snprintf(em, el, "%s: cannot write", path);
    return FM_EFAIL;
  }
  int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    snprintf(em, el, "%s: cannot write", path);
    return FM_EFAIL;
  }
  return FM_OK;
}

int fm_profile_save(const fm_profile *p, const char *path, char *em, size_t el) {
  char *pj = NULL, *cj = NULL, cpath[1024], rpath[1024];
  if (fm_profile_json(p, &pj, &cj)) {
    snprintf(em, el, "out of memory");
    return FM_EFAIL;
  }
  json_t *rt = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "name", p->name, "local_latency_us",
                         p->local_lat_us, "local_us_per_row", p->local_us_per_row, "launch_us",
                         p->launch_us, "exchange_GBps", p->exchange_GBps, "exchange_latency_us",
                         p->exchange_latency_us);
  char *rj = rt ? json_dumps(rt, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
  json_decref(rt);
  fm_profile_cluster_path(path, cpath, sizeof cpath);
  sibling(path, "runtime", rpath, sizeof rpath);
  int rc = rj ? write_atomic(rpath, rj, em, el) : FM_EFAIL;
  free(rj);
  if (!rc) rc = write_atomic(cpath, cj, em, el);
  if (!rc) rc = write_atomic(path, pj, em, el);
  free(pj);
  free(cj);
  return rc;
}

int fm_profile_for_sim(const char *path, int d, int f, int k, double tokens_per_gpu,
                       sim_profile *out, char *em, size_t el) {
  sim_errbuf se;
  memset(&se, 0, sizeof se);
  if (sim_profile_load(path, out, &se)) {
    snprintf(em, el, "%s", se.msg[0] ? se.msg : path);
    return FM_EFAIL;
  }
  fm_profile rp;
  if (fm_profile_load(path, &rp, em, el)) return FM_EFAIL;
  double local = fm_profile_local_us(&rp, tokens_per_gpu * k);
  out->nonmoe_factor = 0.0;
  if (local > 0) {
    /* sim_profile.h: nonmoe_us = factor (2d/f) ffn_us(T) (1 + bwd)/2 */
    sim_pl_profile plp;
    out->nonmoe_factor = 1.0;
    if (sim_profile_for_shape(out, d, f, (int64_t)tokens_per_gpu, 1.0, &plp) == 0 && plp.pl.nonmoe_us > 0)
      out->nonmoe_factor = local / plp.pl.nonmoe_us;
    else
      out->nonmoe_factor = 0.0;
  }
  return FM_OK;
}

void fm_profile_from_calib(const rt_calib_result *res, const rt_backend *b, const char *name,
                           int d_model, int d_ff, fm_profile *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  snprintf(p->device, sizeof p->device, "%s", b->ops->describe(b));
  p->d_model = d_model;
  p->d_ff = d_ff;
  p->npoints = res->ntokens;
  for (int i = 0; i < res->ntokens; i++) {
    p->tok[i] = (double)res->tokens[i];
    p->us[i] = res->fwd_us[i];
  }
  p->pl.npoints = p->npoints;
  p->pl.tokens = p->tok;
  p->pl.us = p->us;
  p->pl.bwd_ratio = res->bwd_ratio;
  p->exchange_GBps = res->exchange_GBps;
  p->exchange_latency_us = res->exchange_latency_us;
  p->launch_us = res->launch_us;
  p->local_lat_us = res->local_lat_us;
  p->local_us_per_row = res->local_us_per_row;
  p->gpus = b->ranks;
}

/* The profile written to cfg->out_path and stored as NAME and NAME.cluster
 * in cfg->db_path, each only when given; FM_OK or FM_EFAIL. */
static int calib_save(const fm_calibrate_config *cfg, const fm_profile *p, char *em, size_t el) {
  char msg[1024];
  if (cfg->out_path && fm_profile_save(p, cfg->out_path, msg, sizeof msg))
    return fm_fail(em, el, FM_EFAIL, "--out %s", msg);
  if (!cfg->db_path)
    return FM_OK;
  st_db *db = NULL;
  if (st_open(&db, cfg->db_path, ST_WRITE, em, el))
    return FM_EFAIL;
  char *pj = NULL, *cj = NULL, cname[96];
  int rc = fm_profile_json(p, &pj, &cj);
  snprintf(cname, sizeof cname, "%s.cluster", p->name);
  if (!rc)
    rc = st_profile_put(db, p->name, pj) || st_profile_put(db, cname, cj);
  free(pj);
  free(cj);
  st_close(db);
  if (rc)
    return fm_fail(em, el, FM_EFAIL, "%s: cannot store the profile", cfg->db_path);
  return FM_OK;
}

/* cfg's model left 0 filled with the backend's (fm_calibrate_config). */
static void calib_model_defaults(fm_calibrate_config *cfg) {
  int cpu = cfg->backend && strcmp(cfg->backend, "cpu") == 0;
  if (!cfg->d_model)
    cfg->d_model = cpu ? 64 : 2048;
  if (!cfg->d_ff)
    cfg->d_ff = cpu ? 128 : 8192;
}

int fm_calibrate(const fm_calibrate_config *given, fm_calibration *out, char *em, size_t el) {
  fm_calibrate_config full = *given, *cfg = &full;
  calib_model_defaults(cfg);
  int cpu = strcmp(cfg->backend, "cpu") == 0;
  rt_backend_config bc = {
      .ranks = cfg->ranks ? cfg->ranks : (cfg->partitions ? cfg->partitions : (cpu ? 2 : 1)),
      .partitions = cfg->partitions, .device = cfg->device, .timeout_s = 300.0, .direct = 0};
  rt_backend *b = NULL;
  if (rt_backend_create(&b, cfg->backend, &bc, em, el))
    return FM_EFAIL;
  rt_calib_config cc;
  rt_calib_defaults(&cc, b, cfg->d_model, cfg->d_ff);
  if (cfg->reps)
    cc.reps = cfg->reps;
  if (rt_calibrate(b, &cc, &out->res, em, el)) {
    rt_backend_destroy(b);
    return FM_EFAIL;
  }
  char name[sizeof out->profile.name];
  if (cfg->name)
    snprintf(name, sizeof name, "%s", cfg->name);
  else if (cfg->partitions)
    snprintf(name, sizeof name, "h200-green-%d", cfg->partitions);
  else
    snprintf(name, sizeof name, "%s-%d", cfg->backend, b->ranks);
  fm_profile_from_calib(&out->res, b, name, cfg->d_model, cfg->d_ff, &out->profile);
  out->ranks = b->ranks;
  rt_backend_destroy(b);
  return calib_save(cfg, &out->profile, em, el);
}

json_t *fm_calibration_doc(const fm_calibrate_config *cfg, const fm_calibration *c) {
  const rt_calib_result *res = &c->res;
  int d = c->profile.d_model, f = c->profile.d_ff; /* the model measured */
  json_t *pts = json_array(), *xs = json_array();
  for (int i = 0; i < res->ntokens; i++) {
    double fl = 4.0 * (double)res->tokens[i] * d * f;
    json_array_append_new(pts, json_pack("{s:I, s:o, s:o, s:o}", "tokens",
                                         (json_int_t)res->tokens[i], "fwd_us",
                                         fm_json_number(res->fwd_us[i]), "bwd_us",
                                         fm_json_number(res->bwd_us[i]), "fwd_tflops",
                                         fm_json_number(fl / res->fwd_us[i] * 1e-6)));
  }
  for (int i = 0; i < res->nsizes; i++)
    json_array_append_new(xs, json_pack("{s:o, s:o}", "bytes_per_rank",
                                        fm_json_number(res->x_bytes[i]), "us",
                                        fm_json_number(res->x_us[i])));
  return json_pack(
      "{s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name",
      fm_json_string(c->profile.name), "backend", fm_json_string(cfg->backend), "device",
      fm_json_string(c->profile.device), "ranks", c->ranks, "d_model", d, "d_ff", f, "ffn", pts,
      "bwd_ratio", fm_json_number(res->bwd_ratio), "exchange", xs, "exchange_GBps",
      fm_json_number(res->exchange_GBps), "exchange_latency_us",
      fm_json_number(res->exchange_latency_us), "local_latency_us",
      fm_json_number(res->local_lat_us), "local_us_per_row",
      fm_json_number(res->local_us_per_row), "launch_us", fm_json_number(res->launch_us));
}
