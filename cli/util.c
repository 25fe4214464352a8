/*
 * util.c - messages and strict flag parsing shared by the subcommands.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include <jansson.h>

int cli_fail(int code, const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "flexmoe %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return code;
}

/* The text of a number as a user typed it: no leading space (strtol and
 * strtod would skip it), not empty. */
static int starts_number(const char *text) {
  return text && text[0] && !isspace((unsigned char)text[0]);
}

int cli_text_long(const char *text, long *out) {
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

int cli_parse_long(const char *cmd, const char *flag, const char *text,
                   long lo, long hi, long *out) {
  long v = 0;
  int rc = cli_text_long(text, &v);
  if (rc == -1)
    return cli_fail(CLI_EUSAGE, cmd, "%s: '%s' is not an integer between %ld and %ld", flag,
                    text ? text : "", lo, hi);
  if (rc == -2 || v < lo || v > hi)
    return cli_fail(CLI_EUSAGE, cmd, "%s: %s is out of range: must be between %ld and %ld",
                    flag, text, lo, hi);
  *out = v;
  return CLI_OK;
}

int cli_parse_seed(const char *cmd, const char *flag, const char *text, uint64_t *out) {
  long v = 0;
  if (cli_parse_long(cmd, flag, text, 0, CLI_SEED_MAX, &v))
    return CLI_EUSAGE;
  *out = (uint64_t)v;
  return CLI_OK;
}

int cli_parse_double(const char *cmd, const char *flag, const char *text,
                     double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = starts_number(text) ? strtod(text, &end) : 0;
  if (!end || end == text || *end || isnan(v))
    return cli_fail(CLI_EUSAGE, cmd, "%s: '%s' is not a number between %g and %g", flag,
                    text ? text : "", lo, hi);
  /* ERANGE: overflow to +-HUGE_VAL or underflow to (nearly) 0; either is
   * not the number the user typed */
  if (errno == ERANGE || !isfinite(v) || v < lo || v > hi)
    return cli_fail(CLI_EUSAGE, cmd, "%s: %s is out of range: must be between %g and %g",
                    flag, text, lo, hi);
  *out = v;
  return CLI_OK;
}

int cli_parse_range(const char *cmd, const char *flag, const char *text,
                    int64_t *a, int64_t *b) {
  const char *colon = text ? strchr(text, ':') : NULL;
  if (!colon)
    return cli_fail(CLI_EUSAGE, cmd, "%s: '%s' is not a range A:B", flag,
                    text ? text : "");
  long lo = 0, hi = -1;
  char buf[64];
  size_t n = (size_t)(colon - text);
  if (n >= sizeof(buf))
    return cli_fail(CLI_EUSAGE, cmd, "%s: '%s' is not a range A:B", flag, text);
  memcpy(buf, text, n);
  buf[n] = '\0';
  if (n && cli_parse_long(cmd, flag, buf, 0, LONG_MAX, &lo))
    return CLI_EUSAGE;
  if (colon[1] && cli_parse_long(cmd, flag, colon + 1, 1, LONG_MAX, &hi))
    return CLI_EUSAGE;
  if (hi >= 0 && hi <= lo)
    return cli_fail(CLI_EUSAGE, cmd, "%s: empty range '%s'", flag, text);
  *a = lo;
  *b = hi;
  return CLI_OK;
}

int cli_parse_list(const char *cmd, const char *flag, const char *text,
                   long *out, int max, int *n) {
  int count = 0;
  const char *s = text;
  if (!s || !*s)
    return cli_fail(CLI_EUSAGE, cmd, "%s: empty list", flag);
  while (*s) {
    const char *comma = strchr(s, ',');
    size_t len = comma ? (size_t)(comma - s) : strlen(s);
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
      return cli_fail(CLI_EUSAGE, cmd, "%s: malformed list '%s'", flag, text);
    if (count >= max)
      return cli_fail(CLI_EUSAGE, cmd, "%s: more than %d values", flag, max);
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (cli_parse_long(cmd, flag, buf, 1, INT_MAX, &out[count]))
      return CLI_EUSAGE;
    count++;
    s += len;
    if (*s == ',' && !*++s)
      return cli_fail(CLI_EUSAGE, cmd, "%s: malformed list '%s'", flag, text);
  }
  *n = count;
  return CLI_OK;
}

int cli_parse_format(const char *cmd, const char *text, int allowed, int *out) {
  static const struct {
    const char *name;
    int fmt;
  } names[] = {{"table", CLI_FMT_TABLE}, {"json", CLI_FMT_JSON}, {"csv", CLI_FMT_CSV}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (text && strcmp(text, names[i].name) == 0 && (allowed & names[i].fmt)) {
      *out = names[i].fmt;
      return CLI_OK;
    }
  return cli_fail(CLI_EUSAGE, cmd, "--format: '%s' is not one of%s%s%s", text ? text : "",
                  (allowed & CLI_FMT_TABLE) ? " table" : "",
                  (allowed & CLI_FMT_JSON) ? " json" : "",
                  (allowed & CLI_FMT_CSV) ? " csv" : "");
}

void cli_help(const char *text) { fputs(text, stdout); }

int cli_bad_option(const char *cmd, const char *arg) {
  return cli_fail(CLI_EUSAGE, cmd,
                  "unknown option or missing value: '%s' (see 'flexmoe %s --help')",
                  arg ? arg : "", cmd);
}

double cli_speedup(double ref_ms, double ms) {
  if (!isfinite(ref_ms) || ref_ms <= 0 || isnan(ms) || ms <= 0)
    return NAN;
  return isinf(ms) ? 0.0 : ref_ms / ms;
}

json_t *cli_json_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }
