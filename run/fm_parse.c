/*
 * fm_parse.c - strict reading of typed values (run/fm_parse.h). The
 * sentences are the ones the CLI has always printed after "flexmoe CMD: ",
 * byte for byte (tests/cli/test_hardening.c).
 */
#include "run/fm_parse.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_error.h"
#include "traces/tr_trace.h"

/* The text of a number as a user typed it: no leading space (strtol and
 * strtod would skip it), not empty. */
static int starts_number(const char *text) {
  return text && text[0] && !isspace((unsigned char)text[0]);
}

/* The whole text as a decimal long: 0 and *out set, -1 not an integer, -2
 * out of the range of long (ERANGE). */
static int text_long(const char *text, long *out) {
  char *end = NULL;
  errno = 0;
  long v = starts_number(text) && text[0] != '+' ? strtol(text, &end, 10) : 0;
  if (!end || end == text || *end)
    return -1;
  if (errno == ERANGE)
    return -2;
  *out = v;
  return 0;
}

int fm_parse_long(const char *name, const char *text, long lo, long hi, long *out, char *em,
                  size_t el) {
  long v = 0;
  int rc = text_long(text, &v);
  if (rc == -1)
    return fm_fail(em, el, FM_EUSAGE, "%s: '%s' is not an integer between %ld and %ld", name,
                   text ? text : "", lo, hi);
  if (rc == -2 || v < lo || v > hi)
    return fm_fail(em, el, FM_EUSAGE, "%s: %s is out of range: must be between %ld and %ld",
                   name, text, lo, hi);
  *out = v;
  return FM_OK;
}

int fm_parse_double(const char *name, const char *text, double lo, double hi, double *out,
                    char *em, size_t el) {
  char *end = NULL;
  errno = 0;
  double v = starts_number(text) ? strtod(text, &end) : 0;
  if (!end || end == text || *end || isnan(v))
    return fm_fail(em, el, FM_EUSAGE, "%s: '%s' is not a number between %g and %g", name,
                   text ? text : "", lo, hi);
  /* ERANGE: overflow to +-HUGE_VAL or underflow to (nearly) 0; either is
   * not the number the user typed */
  if (errno == ERANGE || !isfinite(v) || v < lo || v > hi)
    return fm_fail(em, el, FM_EUSAGE, "%s: %s is out of range: must be between %g and %g",
                   name, text, lo, hi);
  *out = v;
  return FM_OK;
}

int fm_parse_range(const char *name, const char *text, int64_t *a, int64_t *b, char *em,
                   size_t el) {
  const char *colon = text ? strchr(text, ':') : NULL;
  char buf[64];
  size_t n = colon ? (size_t)(colon - text) : 0;
  if (!colon || n >= sizeof(buf))
    return fm_fail(em, el, FM_EUSAGE, "%s: '%s' is not a range A:B", name, text ? text : "");
  long lo = 0, hi = -1;
  memcpy(buf, text, n);
  buf[n] = '\0';
  if (n && fm_parse_long(name, buf, 0, LONG_MAX, &lo, em, el))
    return FM_EUSAGE;
  if (colon[1] && fm_parse_long(name, colon + 1, 1, LONG_MAX, &hi, em, el))
    return FM_EUSAGE;
  if (hi >= 0 && hi <= lo)
    return fm_fail(em, el, FM_EUSAGE, "%s: empty range '%s'", name, text);
  *a = lo;
  *b = hi;
  return FM_OK;
}

int fm_parse_list(const char *name, const char *text, long lo, long hi, long *out, int max,
                  int *n, char *em, size_t el) {
  int count = 0;
  const char *s = text;
  if (!s || !*s)
    return fm_fail(em, el, FM_EUSAGE, "%s: empty list", name);
  while (*s) {
    size_t len = strcspn(s, ",");
    char buf[32];
    if (len == 0)
      return fm_fail(em, el, FM_EUSAGE, "%s: malformed list '%s'", name, text);
    if (len >= sizeof(buf)) /* more digits than any value in range has */
      return fm_fail(em, el, FM_EUSAGE, "%s: %.*s is out of range: must be between %ld and %ld",
                     name, (int)len, s, lo, hi);
    if (count >= max)
      return fm_fail(em, el, FM_EUSAGE, "%s: more than %d values", name, max);
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (fm_parse_long(name, buf, lo, hi, &out[count], em, el))
      return FM_EUSAGE;
    count++;
    s += len;
    if (*s == ',' && !*++s)
      return fm_fail(em, el, FM_EUSAGE, "%s: malformed list '%s'", name, text);
  }
  *n = count;
  return FM_OK;
}

int fm_parse_pair(const char *name, const char *text, double lo, double hi, double *a,
                  double lo2, double hi2, double *b, char *em, size_t el) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%s", text);
  char *colon = strchr(buf, ':');
  if (colon)
    *colon = '\0';
  if (fm_parse_double(name, buf, lo, hi, a, em, el))
    return FM_EUSAGE;
  if (colon && b && fm_parse_double(name, colon + 1, lo2, hi2, b, em, el))
    return FM_EUSAGE;
  if (colon && !b)
    return fm_fail(em, el, FM_EUSAGE, "%s: '%s' takes no ':' part", name, text);
  return FM_OK;
}

int fm_parse_size(const char *name, const char *text, uint64_t *out, char *em, size_t el) {
  if (text && tr_parse_size(text, out) == TR_OK)
    return FM_OK;
  return fm_fail(em, el, FM_EUSAGE,
                 "%s: '%s' is not a size between 1 byte and 1 EiB (bytes, or a number with K, "
                 "M, G or T: 512M, 4G)",
                 name, text ? text : "");
}
