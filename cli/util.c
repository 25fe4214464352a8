/*
 * util.c - what the subcommands share: messages (errors, warnings, the
 * progress line), the --format word, the trace check, the
 * JSON printer and the dispatcher of a command table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "run/fm_commands.h"
#include "run/fm_json.h"
#include "run/fm_trace.h"

#include <jansson.h>

static int json_errors; /* errors as JSON (cli_set_json_errors) */

void cli_detect_json_errors(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--format=json") == 0 ||
        (strcmp(argv[i], "--format") == 0 && i + 1 < argc && strcmp(argv[i + 1], "json") == 0))
      json_errors = 1;
}

/* One line on stderr: "flexmoe CMD: MSG" (a warning: "flexmoe CMD:
 * warning: MSG"), or with JSON errors {"command", "error" or "warning":
 * MSG, "exit": code (errors only)}, the message's bytes escaped by jansson
 * (controls, quotes) after fm_escape_bytes made it valid UTF-8. */
static void say(const char *cmd, int warning, const char *msg, int code) {
  char *text = NULL;
  if (json_errors) {
    json_t *e = json_object();
    json_object_set_new(e, "command", fm_json_string(cmd ? cmd : ""));
    json_object_set_new(e, warning ? "warning" : "error", fm_json_string(msg));
    if (!warning)
      json_object_set_new(e, "exit", json_integer(code));
    text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
    if (text)
      fprintf(stderr, "%s\n", text);
    else if (!warning) /* out of memory: still one valid line */
      fprintf(stderr, "{\"command\":\"\",\"error\":\"out of memory\",\"exit\":%d}\n", code);
  } else {
    text = fm_escape_bytes(msg, 1);
    fprintf(stderr, "flexmoe%s%s: %s%s\n", cmd ? " " : "", cmd ? cmd : "",
            warning ? "warning: " : "", text ? text : msg);
  }
  free(text);
}

int cli_fail(int code, const char *cmd, const char *fmt, ...) {
  char small[1024], *msg = small;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof small && (msg = malloc((size_t)n + 1)) != NULL) {
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  if (!msg || n < 0)
    msg = small; /* the cut message rather than none */
  say(cmd, 0, msg, code);
  if (msg != small)
    free(msg);
  return code;
}

int cli_parse_format(const char *cmd, const char *text, int allowed, int *out) {
  static const struct {
    const char *name;
    int fmt;
  } names[] = {{"table", CLI_FMT_TABLE}, {"json", CLI_FMT_JSON}, {"csv", CLI_FMT_CSV}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (text && strcmp(text, names[i].name) == 0 && (allowed & names[i].fmt)) {
      *out = names[i].fmt;
      if (*out == CLI_FMT_JSON)
        json_errors = 1; /* the errors after this one, as --format json asked */
      return CLI_OK;
    }
  return cli_fail(CLI_EUSAGE, cmd, "--format: '%s' is not one of%s%s%s", text ? text : "",
                  (allowed & CLI_FMT_TABLE) ? " table" : "",
                  (allowed & CLI_FMT_JSON) ? " json" : "",
                  (allowed & CLI_FMT_CSV) ? " csv" : "");
}

int cli_json_print(const char *cmd, json_t *root, size_t flags) {
  char *text = root ? json_dumps(root, flags) : NULL;
  json_decref(root);
  if (!text)
    return cli_fail(CLI_EFAIL, cmd, "cannot build the JSON output (out of memory)");
  int ok = puts(text) >= 0 && fflush(stdout) == 0;
  free(text);
  return ok ? CLI_OK : cli_fail(CLI_EFAIL, cmd, "cannot write the JSON output: %s",
                                strerror(errno));
}

int cli_trace_check(const char *cmd, const char *path, int64_t it0, int64_t it1,
                    int used_ranks, int flags) {
  tr_trace t;
  tr_error terr;
  if (!path || tr_open(&t, path, &terr) != TR_OK)
    return CLI_OK;
  int rc = cli_trace_check_open(cmd, &t, it0, it1, used_ranks, flags);
  tr_close(&t);
  return rc;
}

int cli_trace_check_open(const char *cmd, const tr_trace *t, int64_t it0, int64_t it1,
                         int used_ranks, int flags) {
  fm_trace_sanity s;
  char em[1024], text[4096];
  if ((flags & CLI_TRACE_REPLAY) && used_ranks > t->ranks)
    used_ranks = 0; /* refused by the replay with its own message */
  if (fm_trace_check(t, it0, it1, used_ranks, &s, em, sizeof em))
    return cli_fail(CLI_EFAIL, cmd, "%s", em);
  fm_trace_sanity_text(&s, t->path, text, sizeof text);
  int refuse = (flags & CLI_TRACE_STRICT) ||
               (s.total == 0 && (flags & CLI_TRACE_REFUSE_EMPTY) &&
                !(flags & CLI_TRACE_ALLOW_EMPTY));
  for (char *l = text, *nl; *l; l = nl + 1) {
    if (!(nl = strchr(l, '\n')))
      break;
    *nl = '\0';
    if (refuse)
      cli_fail(CLI_EFAIL, cmd, "%s%s", l, flags & CLI_TRACE_STRICT ? " (--strict)" : "");
    else
      say(cmd, 1, l, 0);
  }
  return refuse && s.warnings ? CLI_EFAIL : CLI_OK;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *cmd) {
  const char *env = getenv("FLEXMOE_PROGRESS");
  *p = (cli_progress){.cmd = cmd, .t0 = mono_s(), .last = 0, .shown = 0,
                      .on = env && env[0] ? strcmp(env, "0") != 0 : isatty(2)};
  if (env && strcmp(env, "always") == 0) /* tests: from the first step on */
    p->t0 -= 2.0;
}

void cli_progress_update(cli_progress *p, double fraction, const char *what) {
  if (!p->on)
    return;
  double now = mono_s(), t = now - p->t0;
  if (t < 2.0 || now - p->last < 0.25 || !(fraction > 0))
    return;
  p->last = now;
  p->shown = 1;
  double eta = t / fraction * (1 - fraction);
  fprintf(stderr, "\r\033[Kflexmoe %s: %.60s  %3.0f%%  %.0f s  eta %.0f s", p->cmd, what,
          100 * fraction, t, eta > 0 ? eta : 0);
  fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
  if (p->shown)
    fprintf(stderr, "\r\033[K");
  p->shown = 0;
}

int cli_dispatch(const cli_menu *m, int argc, char **argv) {
  if (argc < 2) {
    fm_command_menu_print(m->cmd, stderr);
    return CLI_EUSAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fm_command_menu_print(m->cmd, stdout);
    return CLI_OK;
  }
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(argv[1], m->cmds[i].name) == 0)
      return m->cmds[i].fn(argc - 1, argv + 1);
  if (!m->cmd[0])
    return cli_fail(CLI_EUSAGE, NULL, "unknown command '%s' (see 'flexmoe --help')", argv[1]);
  return cli_fail(CLI_EUSAGE, m->cmd, "unknown subcommand '%s' (see 'flexmoe %s --help')",
                  argv[1], m->cmd);
}
