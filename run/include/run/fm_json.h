/*
 * fm_json.h - JSON values that are always valid, and text that stays one line.
 *
 * Every JSON printer of flexmoe (the CLI's --format json, the run library's
 * stored parameters, the Python package's results) builds its values with
 * these, so a file name or a field of a file can never make a value vanish or
 * break a line. Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_JSON_H
#define FLEXMOE_RUN_FM_JSON_H

#include <jansson.h>

/* A JSON string of s that is always valid: bytes that are not well-formed
 * UTF-8 (a file name, a field of a file) appear as the text \xNN, where
 * json_string would return NULL and make the object holding it vanish.
 * NULL s gives null; NULL only when out of memory. */
json_t *fm_json_string(const char *s);

/* A JSON number, or null where v is not finite (NAN: no value; +INFINITY:
 * an effective time with every token slot dropped): JSON has no infinity. */
json_t *fm_json_number(double v);

/* A malloc'd copy of s where every byte that JSON or a terminal must not get
 * raw is written as the four characters \xNN: bytes that are not well-formed
 * UTF-8 always, control bytes (below 0x20 and 0x7f) when `controls` (a
 * one-line text message; JSON escapes those itself). NULL when out of
 * memory. */
char *fm_escape_bytes(const char *s, int controls);

#endif
