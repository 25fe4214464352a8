/*
 * opts.c - a subcommand's flags as one table (cli.h: cli_opt): the parser
 * (getopt_strict's rules: options in full, single values once, "did you mean")
 * and the --help text both come from it, so a flag and its help cannot
 * drift. A row that names a key of run/fm_keys.h takes the key's flag,
 * range, placeholder and help sentence (with range and default) from there.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run/fm_commands.h"
#include "run/fm_keys.h"
#include "run/fm_parse.h"

#define MAX_OPTS 48
#define HELP_WIDTH 22

/* A buffer for a run/fm_parse.h sentence that quotes text: as long as the
 * text needs, so a long value is never cut (the small one when out of
 * memory). */
typedef struct parse_msg {
  char *p, small[512];
  size_t n;
} parse_msg;

static char *msg_for(parse_msg *m, const char *flag, const char *text) {
  m->n = strlen(flag) + (text ? strlen(text) : 0) + 256;
  if (!(m->p = malloc(m->n)))
    m->p = m->small, m->n = sizeof m->small;
  return m->p;
}

/* The parser's code rc, its sentence printed as cli_fail prints one. */
static int parsed(const char *cmd, int rc, parse_msg *m) {
  if (rc)
    cli_fail(rc, cmd, "%s", m->p);
  if (m->p != m->small)
    free(m->p);
  return rc;
}

/* What cli_getopt last saw: its options (for "did you mean") and the
 * message of a refusal it made (for cli_bad_option). */
static const struct option *last_opts;
static char refused[512];
static const char *given[128]; /* first value of each long option, by index */
static int given_n[128];

/* The long option of opts closest to the name in arg ("--polcy=x"), or NULL. */
static const char *near_option(const char *arg) {
  const char *cands[128];
  int n = 0;
  for (; last_opts && last_opts[n].name && n < 128; n++)
    cands[n] = last_opts[n].name;
  char word[64];
  const char *w = arg ? arg + strspn(arg, "-") : "";
  snprintf(word, sizeof word, "%.*s", (int)strcspn(w, "="), w);
  return fm_nearest(word, cands, n);
}

/* The message for an unknown option or a missing value (arg: the argv
 * element at fault): what cli_getopt refused, or the option probably meant
 * ("did you mean --policy?"); returns CLI_EUSAGE. */
static int bad_option(const char *cmd, const char *arg) {
  if (refused[0]) {
    int rc = cli_fail(CLI_EUSAGE, cmd, "%s", refused);
    refused[0] = '\0';
    return rc;
  }
  const char *near = arg && arg[0] == '-' ? near_option(arg) : NULL;
  if (near)
    return cli_fail(CLI_EUSAGE, cmd, "unknown option '%s': did you mean --%s? (see 'flexmoe %s "
                    "--help')", arg, near, cmd);
  return cli_fail(CLI_EUSAGE, cmd,
                  "unknown option or missing value: '%s' (see 'flexmoe %s --help')",
                  arg ? arg : "", cmd);
}

/* 1 when name is one of the space-separated words of list. */
static int in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *s = list; s && *s; s += strspn(s, " ")) {
    size_t len = strcspn(s, " ");
    if (len == n && strncmp(s, name, n) == 0)
      return 1;
    s += len;
  }
  return 0;
}

/* getopt_long with the rules every subcommand shares: a long option must
 * be written in full ("--gpus" never means "--gpus-per-node"), and one that
 * takes a single value may be given once ("sim --trace a --trace b" is
 * refused); repeat lists the names that may repeat, space-separated. Either
 * refusal, an unknown option and a missing value return '?' with the
 * message kept for bad_option. */
static int getopt_strict(int argc, char **argv, const char *shortopts, const struct option *opts,
                         const char *repeat) {
  if (optind <= 1 || last_opts != opts) {
    memset(given_n, 0, sizeof given_n);
    refused[0] = '\0';
  }
  last_opts = opts;
  int li = -1, c = getopt_long(argc, argv, shortopts, opts, &li);
  if (c == ':' && optind >= 1 && optind <= argc && argv[optind - 1][0] == '-') {
    snprintf(refused, sizeof refused, "%s needs a value", argv[optind - 1]);
    return '?';
  }
  if (c == -1 || c == '?' || li < 0 || li >= 128)
    return c;
  const struct option *o = &opts[li];
  /* the element that held the option: before its separate value, if any */
  int at = optind - 1 - (o->has_arg == required_argument && optarg && optind >= 2 &&
                         optarg == argv[optind - 1] && strncmp(argv[optind - 1], "--", 2) != 0);
  const char *el = at >= 0 && at < argc ? argv[at] : NULL;
  size_t len = el && strncmp(el, "--", 2) == 0 ? strcspn(el + 2, "=") : 0;
  if (!el || !len || len != strlen(o->name) || strncmp(el + 2, o->name, len)) {
    snprintf(refused, sizeof refused, "'%.100s': write the option in full: --%s", el ? el : "", o->name);
    return '?';
  }
  if (given_n[li]++ && !in_list(repeat, o->name)) {
    snprintf(refused, sizeof refused,
             "--%s given twice ('%.100s' and '%.100s'): it takes one value; give it once",
             o->name, given[li] ? given[li] : "", optarg ? optarg : "");
    return '?';
  }
  given[li] = optarg;
  return c;
}

static const char *flag_of(const cli_opt *o) {
  return o->flag ? o->flag : fm_key_of((fm_key_id)o->key)->flag;
}

/* cmd's --help on stdout: its usage (run/fm_commands.h), the help lines
 * of the table (a row that names a key and no help of its own prints the
 * key's), then its tail. */
static void print_help(const char *cmd, const cli_opt *opts) {
  const fm_command *c = fm_command_of(cmd);
  fputs(c->usage, stdout);
  for (const cli_opt *o = opts; o->kind != CLI_O_END; o++) {
    char buf[2048], flag[64];
    snprintf(flag, sizeof flag, "-%c, %s", o->letter, flag_of(o));
    const char *shown = o->letter ? flag : flag_of(o);
    if (!o->help && o->key >= 0)
      fm_key_help((fm_key_id)o->key, shown, HELP_WIDTH, buf, sizeof buf);
    else
      fm_help_line(shown, o->arg ? o->arg : (o->key >= 0 ? fm_key_of(o->key)->arg : ""),
                   o->help ? o->help : "", HELP_WIDTH, buf, sizeof buf);
    fputs(buf, stdout);
  }
  fm_command_tail_print(c, stdout);
}

/* One option's value into its destination; CLI_OK or CLI_EUSAGE after one
 * message: the sentence of the value's parser (run/fm_parse.h, run/fm_keys.h:
 * the whole text, decimal, in the row's or the key's range), or the format's
 * and a CLI_O_FN's own. */
static int store(const char *cmd, const cli_opt *o, const char *arg) {
  const fm_key *k = o->key >= 0 ? fm_key_of((fm_key_id)o->key) : NULL;
  long lo = o->lo, hi = o->hi, v = 0;
  if (k && lo == 0 && hi == 0) {
    lo = (long)k->lo;
    hi = (long)k->hi;
  }
  if (o->kind == CLI_O_FORMAT)
    return cli_parse_format(cmd, arg, (int)o->lo, (int *)o->to);
  if (o->kind == CLI_O_FN)
    return o->fn(cmd, arg, o->to);
  const char *flag = flag_of(o);
  parse_msg m;
  char *em = msg_for(&m, flag, arg);
  int rc = FM_OK, *n = o->to2;
  switch (o->kind) {
  case CLI_O_STR: *(const char **)o->to = arg; break;
  case CLI_O_BOOL: *(int *)o->to = 1; break;
  case CLI_O_LONG: rc = fm_parse_long(flag, arg, lo, hi, (long *)o->to, em, m.n); break;
  case CLI_O_INT:
    if (!(rc = fm_parse_long(flag, arg, lo, hi, &v, em, m.n)))
      *(int *)o->to = (int)v;
    break;
  case CLI_O_I64:
    if (!(rc = fm_parse_long(flag, arg, lo, hi, &v, em, m.n)))
      *(int64_t *)o->to = v;
    break;
  case CLI_O_RANGE: rc = fm_parse_range(flag, arg, o->to, o->to2, em, m.n); break;
  case CLI_O_CHOICE:
    rc = fm_key_parse_choice((fm_key_id)o->key, FM_NAME_FLAG, arg, o->to, em, m.n);
    break;
  case CLI_O_MULTI:
    if (*n < o->hi)
      ((const char **)o->to)[(*n)++] = arg;
    else
      rc = fm_fail(em, m.n, FM_EUSAGE, "%s: at most %ld", flag, o->hi);
    break;
  case CLI_O_LIST: /* named by the key's flag ("--seed" is read as --seeds) */
    rc = fm_parse_list(k->flag, arg, (long)k->lo, (long)k->hi, o->to, o->max, n, em, m.n);
    break;
  case CLI_O_SIZE: rc = fm_parse_size(flag, arg, o->to, em, m.n); break;
  default: rc = fm_fail(em, m.n, FM_EUSAGE, "%s: unknown kind of flag", flag);
  }
  return parsed(cmd, rc, &m);
}

int cli_parse_opts(const char *cmd, int argc, char **argv, const cli_opt *opts) {
  struct option lo[MAX_OPTS + 2];
  int n = 0;
  for (; opts[n].kind != CLI_O_END && n < MAX_OPTS; n++)
    lo[n] = (struct option){.name = flag_of(&opts[n]) + 2,
                            .has_arg = opts[n].kind == CLI_O_BOOL ? no_argument
                                                                  : required_argument,
                            .flag = NULL, .val = 256 + n};
  lo[n++] = (struct option){.name = "help", .has_arg = no_argument, .flag = NULL, .val = 'h'};
  lo[n] = (struct option){.name = NULL, .has_arg = 0, .flag = NULL, .val = 0};
  opterr = 0;
  optind = 1;
  char repeat[256] = ""; /* the CLI_O_MULTI flags may repeat */
  for (int i = 0; opts[i].kind != CLI_O_END && i < MAX_OPTS; i++)
    if (opts[i].kind == CLI_O_MULTI && strlen(repeat) + strlen(lo[i].name) + 2 < sizeof repeat)
      strcat(strcat(repeat, " "), lo[i].name);
  char shorts[2 * MAX_OPTS + 3] = ":h"; /* the rows' short forms, "o:" */
  for (int i = 0, at = 2; opts[i].kind != CLI_O_END && i < MAX_OPTS; i++)
    if (opts[i].letter) {
      shorts[at++] = opts[i].letter;
      if (opts[i].kind != CLI_O_BOOL)
        shorts[at++] = ':';
      shorts[at] = '\0';
    }
  int c;
  while ((c = getopt_strict(argc, argv, shorts, lo, repeat)) != -1) {
    if (c == 'h') {
      print_help(cmd, opts);
      return CLI_HELP;
    }
    for (int i = 0; c < 256 && c != '?' && c != ':' && opts[i].kind != CLI_O_END; i++)
      if (opts[i].letter == c)
        c = 256 + i;
    if (c < 256)
      return bad_option(cmd, argv[optind - 1]);
    if (store(cmd, &opts[c - 256], optarg))
      return CLI_EUSAGE;
  }
  return CLI_OK;
}

int cli_parse_flags(const char *cmd, int argc, char **argv, const cli_opt *opts) {
  int rc = cli_parse_opts(cmd, argc, argv, opts);
  if (rc == CLI_OK && optind < argc)
    return cli_fail(CLI_EUSAGE, cmd, "unexpected argument '%s'", argv[optind]);
  return rc;
}
