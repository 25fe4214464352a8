/*
 * sim_json.h - what the loaders of sim/'s JSON files share (internal to
 * sim/: sim_cluster.c, sim_profile.c): the message into a sim_errbuf, and
 * a file read as JSON with the one message shape for a file that cannot be
 * opened or is not JSON.
 */
#ifndef FLEXMOE_SIM_JSON_H
#define FLEXMOE_SIM_JSON_H

#include <jansson.h>

#include "sim/sim_error.h"

/* err's message (nothing when err is NULL), printf-style. */
void sim_seterr(sim_errbuf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* *root: the JSON value of the file at path (duplicate keys refused).
 * SIM_ENOENT "PATH: cannot open WHAT (reason)" when it cannot be opened,
 * SIM_EFORMAT "PATH:LINE:COLUMN: not valid JSON: ..." when it is not JSON. */
int sim_json_load(const char *path, const char *what, json_t **root, sim_errbuf *err);

#endif
