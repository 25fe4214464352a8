/*
 * fm_json.c - JSON values that are always valid, and one-line text (fm_json.h).
 */
#include "run/fm_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), 0 when the byte at s does not
 * start one. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0;
    if (c == 0xed)
      hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90;
    if (c == 0xf4)
      hi = 0x8f;
  } else
    return 0;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

char *fm_escape_bytes(const char *s, int controls) {
  const unsigned char *u = (const unsigned char *)s;
  size_t len = strlen(s);
  char *out = malloc(4 * len + 1), *o = out;
  if (!out)
    return NULL;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_len(u + i);
    if (n == 0 || (controls && (u[i] < 0x20 || u[i] == 0x7f))) {
      o += sprintf(o, "\\x%02x", u[i]);
      i++;
    } else {
      memcpy(o, u + i, n);
      o += n;
      i += n;
    }
  }
  *o = '\0';
  return out;
}

json_t *fm_json_string(const char *s) {
  if (!s)
    return json_null();
  char *clean = fm_escape_bytes(s, 0);
  json_t *j = clean ? json_string(clean) : NULL;
  free(clean);
  return j;
}

json_t *fm_json_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }
