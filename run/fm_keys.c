/*
 * fm_keys.c - the table of configuration keys (fm_keys.h) as data, its
 * range check, its help lines and its JSON form.
 */
#include "run/fm_keys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "placement/pl_policy.h"
#include "run/fm_error.h"

#define FM_KEY_ROW(ID, FLAG, NAME, TYPE, LO, HI, DEF, CHOICES, ARG, UNIT, SCOPE, HELP, WHOLE)  \
  [FM_KEY_##ID] = {.flag = FLAG, .name = NAME, .type = TYPE, .lo = LO, .hi = HI, .def = DEF,    \
                   .choices = CHOICES, .arg = ARG, .unit = UNIT, .scope = SCOPE, .help = HELP,  \
                   .whole = WHOLE},
#define FM_KEY_COMPOSED(...) FM_KEY_ROW(__VA_ARGS__, 0)
#define FM_KEY_WHOLE(...) FM_KEY_ROW(__VA_ARGS__, 1)
static const fm_key keys[FM_NKEYS] = {
    FM_KEYS(FM_KEY_COMPOSED) FM_REPLAY_KEYS(FM_KEY_WHOLE) FM_PLACE_KEYS(FM_KEY_WHOLE)
        FM_TRACE_KEYS(FM_KEY_WHOLE) FM_CLUSTER_KEYS(FM_KEY_WHOLE)};
#undef FM_KEY_WHOLE
#undef FM_KEY_COMPOSED
#undef FM_KEY_ROW

const fm_key *fm_key_of(fm_key_id id) { return &keys[id]; }

const char *fm_key_name(fm_key_id id, int naming) {
  return naming == FM_NAME_JSON ? keys[id].name : keys[id].flag;
}

int fm_key_by_name(const char *name) {
  for (int i = 0; name && i < FM_NKEYS; i++)
    if (strcmp(keys[i].name, name) == 0)
      return i;
  return -1;
}

int fm_key_choice_ok(fm_key_id id, const char *word) {
  const char *s = keys[id].choices;
  size_t n = word ? strlen(word) : 0;
  while (n && *s) {
    const char *bar = strchr(s, '|');
    size_t len = bar ? (size_t)(bar - s) : strlen(s);
    if (len == n && strncmp(s, word, n) == 0)
      return 1;
    s += len + (bar != NULL);
  }
  return 0;
}

int fm_key_parse_choice(fm_key_id id, int naming, const char *word, const char **out,
                        char *errmsg, size_t errlen) {
  const char *c = keys[id].choices;
  if (fm_key_choice_ok(id, word)) {
    *out = word;
    return FM_OK;
  }
  char words[256]; /* the choices but the last, as "a, b" */
  size_t at = 0, last = (size_t)(strrchr(c, '|') - c);
  for (size_t i = 0; i < last && at + 3 < sizeof words; i++) {
    if (c[i] == '|')
      words[at++] = ',';
    words[at++] = c[i] == '|' ? ' ' : c[i];
  }
  words[at] = '\0';
  snprintf(errmsg, errlen, "%s: '%s' is not %s or %s", fm_key_name(id, naming), word ? word : "",
           words, c + last + 1);
  return FM_EUSAGE;
}

int fm_key_check(fm_key_id id, int naming, int64_t v, char *errmsg, size_t errlen) {
  const fm_key *k = &keys[id];
  if (v >= k->lo && v <= k->hi)
    return FM_OK;
  if (errmsg && errlen)
    snprintf(errmsg, errlen,
             "%s: %" PRId64 " is out of range: must be between %" PRId64 " and %" PRId64,
             fm_key_name(id, naming), v, k->lo, k->hi);
  return FM_EUSAGE;
}

/* Appends to buf[len] at *at (counting what did not fit). */
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(*at < len ? buf + *at : NULL, *at < len ? len - *at : 0, fmt, ap);
  va_end(ap);
  if (n > 0)
    *at += (size_t)n;
}

static void wrap(const char *text, int width, char *buf, size_t len, size_t *at);

/* An integer bound as help prints it: 2^N - 1 and 2^N spelled so. */
static void bound_text(int64_t v, char *out, size_t len) {
  if (v == FM_KEY_INT64_MAX)
    snprintf(out, len, "2^63 - 1");
  else if (v == 2147483647)
    snprintf(out, len, "2^31 - 1");
  else if (v > 65536 && (v & (v - 1)) == 0)
    snprintf(out, len, "2^%d", __builtin_ctzll((unsigned long long)v));
  else
    snprintf(out, len, "%" PRId64, v);
}

/* One key's help sentence with its range and default, words wrapped. */
static void help_of(const fm_key *k, int width, char *buf, size_t len, size_t *at) {
  char text[640], lo[32], hi[32];
  if (k->whole) {
    wrap(k->help, width, buf, len, at);
    return;
  }
  bound_text(k->lo, lo, sizeof lo);
  bound_text(k->hi, hi, sizeof hi);
  size_t n = (size_t)snprintf(text, sizeof text, "%s", k->help);
  if ((k->type == FM_KT_INT || k->type == FM_KT_INT_LIST) && n < sizeof text)
    n += (size_t)snprintf(text + n, sizeof text - n, ", %s to %s%s%s", lo, hi,
                          k->unit[0] ? " " : "", k->unit);
  if (n < sizeof text)
    snprintf(text + n, sizeof text - n, strcmp(k->def, "required") ? " (default: %s)" : " (%s)",
             k->def);
  wrap(text, width, buf, len, at);
}

/* text wrapped at 78 columns, continuation lines indented by width, and a
 * newline, appended to buf at *at. */
static void wrap(const char *text, int width, char *buf, size_t len, size_t *at) {
  int col = width;
  const char *w = text;
  while (*w) {
    size_t wl = strcspn(w, " ");
    if (col > width && col + 1 + (int)wl > 78) {
      put(buf, len, at, "\n%*s", width, "");
      col = width;
    }
    put(buf, len, at, "%s%.*s", col > width ? " " : "", (int)wl, w);
    col += (col > width) + (int)wl;
    w += wl;
    w += *w == ' ';
  }
  put(buf, len, at, "\n");
}

/* "  FLAG ARG" padded to width (alone on its line when longer). */
static void flag_head(const char *flag, const char *arg, int width, char *buf, size_t len,
                      size_t *at) {
  char head[96];
  int hn = snprintf(head, sizeof head, "  %s%s%s", flag, arg && arg[0] ? " " : "",
                    arg ? arg : "");
  if (hn + 2 > width)
    put(buf, len, at, "%s\n%*s", head, width, "");
  else
    put(buf, len, at, "%-*s", width, head);
}

size_t fm_help_line(const char *flag, const char *arg, const char *text, int width, char *buf,
                    size_t len) {
  size_t at = 0;
  if (buf && len)
    buf[0] = '\0';
  flag_head(flag, arg, width, buf, len, &at);
  wrap(text, width, buf, len, &at);
  return at;
}

/* One key's help lines appended to buf at *at, headed by flag (NULL: the
 * key's). */
static void key_help(const fm_key *k, const char *flag, int width, char *buf, size_t len,
                     size_t *at) {
  flag_head(flag ? flag : k->flag, k->arg, width, buf, len, at);
  help_of(k, width, buf, len, at);
}

size_t fm_keys_help(int scope, int width, char *buf, size_t len) {
  size_t at = 0;
  if (buf && len)
    buf[0] = '\0';
  for (int i = 0; i < FM_NKEYS; i++)
    if (keys[i].scope & scope)
      key_help(&keys[i], NULL, width, buf, len, &at);
  return at;
}

size_t fm_key_help(fm_key_id id, const char *flag, int width, char *buf, size_t len) {
  size_t at = 0;
  if (buf && len)
    buf[0] = '\0';
  key_help(&keys[id], flag, width, buf, len, &at);
  return at;
}

static const char *const type_names[] = {
    [FM_KT_PATH] = "path",     [FM_KT_STRING] = "string", [FM_KT_CHOICE] = "choice",
    [FM_KT_INT] = "int",       [FM_KT_INT_LIST] = "int list",
    [FM_KT_SPECS] = "policy specs", [FM_KT_RANGE] = "range", [FM_KT_BOOL] = "bool",
    [FM_KT_SIZE] = "size"};

/* The commands a scope bit stands for, in the JSON's "scope" list. */
static const struct {
  int bit;
  const char *name;
} scope_names[] = {{FM_KS_SIM, "sim"},           {FM_KS_SWEEP, "sweep"},
                   {FM_KS_RUN, "run"},           {FM_KS_VALIDATE, "validate"},
                   {FM_KS_CALIBRATE, "calibrate"}, {FM_KS_PLACE, "place"},
                   {FM_KS_INFO, "trace info"},   {FM_KS_INFO, "trace stats"},
                   {FM_KS_GEN, "trace gen"},     {FM_KS_FIT, "trace fit"},
                   {FM_KS_RESCALE, "trace rescale"}, {FM_KS_IMPORT, "trace import"},
                   {FM_KS_NET, "net"},           {FM_KS_CLUSTERS, "clusters"}};

/* The choices "a|b" as a JSON list. */
static json_t *choices_json(const char *s) {
  json_t *a = json_array();
  while (a && *s) {
    size_t len = strcspn(s, "|");
    json_array_append_new(a, json_stringn(s, len));
    s += len + (s[len] == '|');
  }
  return a;
}

static json_t *key_json(const fm_key *k) {
  int ranged = k->type == FM_KT_INT || k->type == FM_KT_INT_LIST || k->type == FM_KT_BOOL;
  json_t *scope = json_array();
  for (size_t i = 0; scope && i < sizeof scope_names / sizeof scope_names[0]; i++)
    if (k->scope & scope_names[i].bit)
      json_array_append_new(scope, json_string(scope_names[i].name));
  return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:o, s:s}", "name", k->name,
                   "flag", k->flag, "type", type_names[k->type], "min",
                   ranged ? json_integer(k->lo) : json_null(), "max",
                   ranged ? json_integer(k->hi) : json_null(), "default", k->def, "choices",
                   k->type == FM_KT_CHOICE ? choices_json(k->choices) : json_null(), "unit",
                   k->unit, "scope", scope ? scope : json_null(), "help", k->help);
}

char *fm_keys_json_text(void) {
  json_t *list = json_array();
  for (int i = 0; list && i < FM_NKEYS; i++)
    if (json_array_append_new(list, key_json(&keys[i])) != 0) {
      json_decref(list);
      list = NULL;
    }
  char *text = list ? json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(list);
  return text;
}

const char *fm_nearest(const char *word, const char *const *cands, int n) {
  return pl_nearest(word, cands, n);
}
