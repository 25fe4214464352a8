/*
 * sim_json.c - the message and the file reading sim/'s JSON loaders share
 * (sim_json.h).
 */
#include "sim_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sim_seterr(sim_errbuf *err, const char *fmt, ...) {
  if (!err)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
}

int sim_json_load(const char *path, const char *what, json_t **root, sim_errbuf *err) {
  json_error_t jerr;
  FILE *f = fopen(path, "rb");
  if (!f) {
    sim_seterr(err, "%s: cannot open %s (%s)", path, what, strerror(errno));
    return SIM_ENOENT;
  }
  *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
  fclose(f);
  if (!*root) {
    sim_seterr(err, "%s:%d:%d: not valid JSON: %s", path, jerr.line, jerr.column, jerr.text);
    return SIM_EFORMAT;
  }
  return SIM_OK;
}
