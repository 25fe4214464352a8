/*
 * sim_profile.c - built-in compute profiles, profile JSON, shape scaling
 * (see sim_profile.h for the rules).
 */
#include "sim/sim_profile.h"
#include "sim_json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* shared/calibration/h200-2026-11-28.txt, FFN rows (forward, bf16, us). */
static const double h200_tokens[7] = {16, 64, 256, 1024, 4096, 16384, 65536};
static const struct {
  int d, f;
  double us[7];
} h200_rows[3] = {
    {1024, 4096, {21.69, 23.37, 20.98, 28.55, 91.60, 337.87, 1295.91}},
    {2048, 8192, {27.30, 28.10, 36.51, 93.27, 332.14, 1295.43, 5458.08}},
    {4096, 14336, {64.96, 69.07, 92.72, 300.83, 1100.07, 4786.88, 19086.49}},
};
/* BWD rows: 2.16 2.34 2.14 1.99 2.11 -> mean 2.148. */
#define H200_BWD_RATIO 2.15
#define NONMOE_FACTOR 1.3
/* Published dense bf16 peaks, TFLOP/s (no sparsity). */
#define PEAK_H200 989.0
#define PEAK_H100 989.0
#define PEAK_A100 312.0

int sim_profile_builtin(const char *name, sim_profile *out, sim_errbuf *err) {
  double peak;
  if (name && strcmp(name, "h200") == 0)
    peak = PEAK_H200;
  else if (name && strcmp(name, "h100") == 0)
    peak = PEAK_H100;
  else if (name && strcmp(name, "a100") == 0)
    peak = PEAK_A100;
  else {
    sim_seterr(err,
           "no built-in compute profile for GPU '%s' (built-in: h200, h100, a100): give "
           "its measured profile with --profile F.json ('flexmoe calibrate --out F.json' "
           "measures one), or a built-in name as the cluster's gpu.profile",
           name ? name : "");
    return SIM_ENOENT;
  }
  sim_profile p;
  memset(&p, 0, sizeof(p));
  snprintf(p.name, sizeof(p.name), "%s", name);
  snprintf(p.device, sizeof(p.device), "%s (from H200 calibration 2026-11-28)", name);
  p.bwd_ratio = H200_BWD_RATIO;
  p.nonmoe_factor = NONMOE_FACTOR;
  p.scale = PEAK_H200 / peak;
  p.nshapes = 3;
  for (int s = 0; s < 3; s++) {
    p.shapes[s].d_model = h200_rows[s].d;
    p.shapes[s].d_ff = h200_rows[s].f;
    p.shapes[s].npoints = 7;
    for (int i = 0; i < 7; i++) {
      p.shapes[s].tokens[i] = h200_tokens[i];
      p.shapes[s].us[i] = h200_rows[s].us[i];
    }
  }
  *out = p;
  return SIM_OK;
}

static int num_array(json_t *a, const char *path, int s, const char *key, double *out,
                     int *n, sim_errbuf *err) {
  if (!a || !json_is_array(a) || json_array_size(a) < 1 ||
      json_array_size(a) > SIM_PROFILE_MAX_POINTS) {
    sim_seterr(err, "%s: shapes[%d].%s must be an array of 1..%d numbers", path, s, key,
           SIM_PROFILE_MAX_POINTS);
    return SIM_EKEY;
  }
  for (size_t i = 0; i < json_array_size(a); i++) {
    json_t *v = json_array_get(a, i);
    if (!json_is_number(v)) {
      sim_seterr(err, "%s: shapes[%d].%s[%zu] is not a number", path, s, key, i);
      return SIM_EKEY;
    }
    out[i] = json_number_value(v);
  }
  *n = (int)json_array_size(a);
  return 0;
}

/* The root's keys are all known ones; SIM_EKEY naming the first that is
 * not. */
static int profile_keys(json_t *root, const char *path, sim_errbuf *err) {
  static const char *const ok[] = {"name", "device", "dtype", "bwd_ratio",
                                   "nonmoe_factor", "shapes", NULL};
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    int found = 0;
    for (int i = 0; ok[i]; i++)
      found |= strcmp(ok[i], key) == 0;
    if (!found) {
      sim_seterr(err, "%s: unknown key '%s'", path, key);
      return SIM_EKEY;
    }
  }
  return SIM_OK;
}

/* The profile's own keys into p: name, device, dtype (bf16 only),
 * bwd_ratio and nonmoe_factor in their ranges; SIM_EKEY for a missing or
 * mistyped key, SIM_ERANGE for a number out of range. */
static int profile_top(json_t *root, const char *path, sim_profile *p, sim_errbuf *err) {
  json_t *v = json_object_get(root, "name");
  if (!v || !json_is_string(v)) {
    sim_seterr(err, "%s: missing key 'name' (a string)", path);
    return SIM_EKEY;
  }
  snprintf(p->name, sizeof(p->name), "%s", json_string_value(v));
  v = json_object_get(root, "device");
  if (v && json_is_string(v))
    snprintf(p->device, sizeof(p->device), "%s", json_string_value(v));
  v = json_object_get(root, "dtype");
  if (v && (!json_is_string(v) || strcmp(json_string_value(v), "bf16"))) {
    sim_seterr(err, "%s: key 'dtype' must be \"bf16\" (the only dtype modelled)", path);
    return SIM_EKEY;
  }
  v = json_object_get(root, "bwd_ratio");
  if (!v || !json_is_number(v) || !(json_number_value(v) >= SIM_PROFILE_MIN_BWD) ||
      !(json_number_value(v) <= SIM_PROFILE_MAX_BWD)) {
    sim_seterr(err, "%s: key 'bwd_ratio' must be a number between %g and %g", path,
           SIM_PROFILE_MIN_BWD, SIM_PROFILE_MAX_BWD);
    return v && json_is_number(v) ? SIM_ERANGE : SIM_EKEY;
  }
  p->bwd_ratio = json_number_value(v);
  v = json_object_get(root, "nonmoe_factor");
  if (v) {
    if (!json_is_number(v) || !(json_number_value(v) >= 0) ||
        !(json_number_value(v) <= SIM_PROFILE_MAX_NONMOE)) {
      sim_seterr(err, "%s: key 'nonmoe_factor' must be a number between 0 and %g", path,
             SIM_PROFILE_MAX_NONMOE);
      return json_is_number(v) ? SIM_ERANGE : SIM_EKEY;
    }
    p->nonmoe_factor = json_number_value(v);
  }
  return SIM_OK;
}

/* shapes[s] (object o) into sh: its known keys, d_model and d_ff in range,
 * and as many tokens as us points, tokens ascending within range and
 * times within range; SIM_EKEY for a missing or mistyped key, SIM_ERANGE
 * for a value out of range. */
static int profile_shape(json_t *o, int s, const char *path, sim_shape *sh, sim_errbuf *err) {
  const char *key;
  json_t *v;
  if (!json_is_object(o)) {
    sim_seterr(err, "%s: shapes[%d] must be an object", path, s);
    return SIM_EKEY;
  }
  json_object_foreach(o, key, v) {
    if (strcmp(key, "d_model") && strcmp(key, "d_ff") && strcmp(key, "tokens") &&
        strcmp(key, "us")) {
      sim_seterr(err, "%s: unknown key 'shapes[%d].%s'", path, s, key);
      return SIM_EKEY;
    }
  }
  json_t *d = json_object_get(o, "d_model"), *ff = json_object_get(o, "d_ff");
  if (!d || !json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 1 << 20 ||
      !ff || !json_is_integer(ff) || json_integer_value(ff) < 1 ||
      json_integer_value(ff) > 1 << 22) {
    sim_seterr(err,
           "%s: shapes[%d] needs integer keys 'd_model' (between 1 and %d) and 'd_ff' "
           "(between 1 and %d)",
           path, s, 1 << 20, 1 << 22);
    return SIM_EKEY;
  }
  sh->d_model = (int)json_integer_value(d);
  sh->d_ff = (int)json_integer_value(ff);
  int nt = 0, nu = 0, rc;
  if ((rc = num_array(json_object_get(o, "tokens"), path, s, "tokens", sh->tokens, &nt, err)) ||
      (rc = num_array(json_object_get(o, "us"), path, s, "us", sh->us, &nu, err)))
    return rc;
  if (nt != nu) {
    sim_seterr(err, "%s: shapes[%d]: 'tokens' has %d points but 'us' has %d", path, s, nt, nu);
    return SIM_ERANGE;
  }
  sh->npoints = nt;
  for (int i = 0; i < nt; i++) {
    if (!(sh->tokens[i] >= 1) || !(sh->tokens[i] <= SIM_PROFILE_MAX_TOKENS) ||
        (i && !(sh->tokens[i] > sh->tokens[i - 1]))) {
      sim_seterr(err,
             "%s: shapes[%d].tokens must be between 1 and %g and strictly ascending (at "
             "index %d)",
             path, s, SIM_PROFILE_MAX_TOKENS, i);
      return SIM_ERANGE;
    }
    if (!(sh->us[i] >= 0) || !(sh->us[i] <= SIM_PROFILE_MAX_US)) {
      sim_seterr(err, "%s: shapes[%d].us[%d] must be a time between 0 and %g us", path, s, i,
             SIM_PROFILE_MAX_US);
      return SIM_ERANGE;
    }
  }
  return SIM_OK;
}

int sim_profile_load(const char *path, sim_profile *out, sim_errbuf *err) {
  json_t *root;
  int lrc = sim_json_load(path, "profile", &root, err);
  if (lrc)
    return lrc;
  int rc;
  sim_profile p = {.scale = 1.0, .nonmoe_factor = NONMOE_FACTOR};
  json_t *shapes;
  if (!json_is_object(root)) {
    sim_seterr(err, "%s: a profile is a JSON object", path);
    rc = SIM_EFORMAT;
    goto done;
  }
  if ((rc = profile_keys(root, path, err)) || (rc = profile_top(root, path, &p, err)))
    goto done;
  shapes = json_object_get(root, "shapes");
  if (!shapes || !json_is_array(shapes) || json_array_size(shapes) < 1 ||
      json_array_size(shapes) > SIM_PROFILE_MAX_SHAPES) {
    sim_seterr(err, "%s: key 'shapes' must be an array of 1..%d shapes", path,
           SIM_PROFILE_MAX_SHAPES);
    rc = SIM_EKEY;
    goto done;
  }
  p.nshapes = (int)json_array_size(shapes);
  for (int s = 0; s < p.nshapes && !rc; s++)
    rc = profile_shape(json_array_get(shapes, (size_t)s), s, path, &p.shapes[s], err);
  if (!rc)
    *out = p;
done:
  json_decref(root);
  return rc;
}

int sim_profile_save(const sim_profile *p, const char *path, sim_errbuf *err) {
  json_t *root = json_object(), *shapes = json_array();
  int rc = SIM_ENOMEM;
  char tmp[4096];
  if (!root || !shapes)
    goto done;
  json_object_set_new(root, "name", json_string(p->name));
  json_object_set_new(root, "device", json_string(p->device));
  json_object_set_new(root, "dtype", json_string("bf16"));
  json_object_set_new(root, "bwd_ratio", json_real(p->bwd_ratio));
  json_object_set_new(root, "nonmoe_factor", json_real(p->nonmoe_factor));
  for (int s = 0; s < p->nshapes; s++) {
    const sim_shape *sh = &p->shapes[s];
    json_t *o = json_object(), *t = json_array(), *u = json_array();
    json_object_set_new(o, "d_model", json_integer(sh->d_model));
    json_object_set_new(o, "d_ff", json_integer(sh->d_ff));
    for (int i = 0; i < sh->npoints; i++) {
      json_array_append_new(t, json_real(sh->tokens[i]));
      json_array_append_new(u, json_real(sh->us[i] * p->scale));
    }
    json_object_set_new(o, "tokens", t);
    json_object_set_new(o, "us", u);
    json_array_append_new(shapes, o);
  }
  json_object_set(root, "shapes", shapes);
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  if (json_dump_file(root, tmp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0 ||
      rename(tmp, path) != 0) {
    unlink(tmp);
    sim_seterr(err, "%s: cannot write profile (%s)", path, strerror(errno));
    rc = SIM_ENOENT;
    goto done;
  }
  rc = SIM_OK;
done:
  json_decref(shapes);
  json_decref(root);
  return rc;
}

int sim_profile_for_shape(const sim_profile *p, int d_model, int d_ff,
                          int64_t tokens_per_gpu, double time_scale,
                          sim_pl_profile *out) {
  if (!p || !out || p->nshapes < 1 || d_model < 1 || d_ff < 1 || !(time_scale > 0) ||
      tokens_per_gpu < 0)
    return SIM_EINVAL;
  double want = log((double)d_model * d_ff);
  int best = 0;
  double bestd = INFINITY;
  for (int s = 0; s < p->nshapes; s++) {
    double dist = fabs(log((double)p->shapes[s].d_model * p->shapes[s].d_ff) - want);
    if (dist < bestd - 1e-12) {
      bestd = dist;
      best = s;
    }
  }
  const sim_shape *sh = &p->shapes[best];
  double fs = ((double)d_model * d_ff) / ((double)sh->d_model * sh->d_ff);
  memset(out, 0, sizeof(*out));
  for (int i = 0; i < sh->npoints; i++) {
    out->tokens[i] = sh->tokens[i];
    out->us[i] = sh->us[i] * fs * p->scale * time_scale;
  }
  out->shape_index = best;
  out->flop_scale = fs;
  out->pl.npoints = sh->npoints;
  out->pl.tokens = out->tokens;
  out->pl.us = out->us;
  out->pl.bwd_ratio = p->bwd_ratio;
  out->pl.nonmoe_us = 0;
  double ffn = pl_ffn_us(&out->pl, (double)tokens_per_gpu);
  out->pl.nonmoe_us = p->nonmoe_factor * (2.0 * d_model / d_ff) * ffn *
                      (1.0 + p->bwd_ratio) / 2.0;
  return SIM_OK;
}
