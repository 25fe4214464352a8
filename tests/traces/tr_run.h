/*
 * tr_run.h - running the flexmoe binary (FLEXMOE_BIN) from CLI tests:
 * exit code, stdout and stderr captured in files of the test's scratch dir.
 */
#ifndef FLEXMOE_TR_RUN_H
#define FLEXMOE_TR_RUN_H

#include <stdarg.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "tr_testutil.h"

typedef struct tu_result {
  int code;
  char out[1 << 16];
  char err[4096];
} tu_result;

static inline void tu_slurp(const char *path, char *buf, size_t len) {
  FILE *fp = fopen(path, "rb");
  size_t n = fp ? fread(buf, 1, len - 1, fp) : 0;
  buf[n] = '\0';
  if (fp)
    fclose(fp);
}

/* CPU seconds each run may use (0: no limit): a test of a refusal sets it,
 * so that a regression that goes on to do the work fails in seconds
 * (SIGXCPU) instead of running for minutes. */
static int tu_cpu_limit_s;

/* Runs FLEXMOE_BIN with the NULL-terminated arguments. */
static inline tu_result *tu_run(const char *arg, ...) {
  static tu_result r;
  const char *bin = getenv("FLEXMOE_BIN");
  cr_assert_not_null(bin, "FLEXMOE_BIN is not set (run through meson test)");
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)bin;
  va_list ap;
  va_start(ap, arg);
  for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
    argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  char out[512], err[512];
  tu_path(out, sizeof(out), "stdout.txt");
  tu_path(err, sizeof(err), "stderr.txt");
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    if (!freopen(out, "w", stdout) || !freopen(err, "w", stderr))
      _exit(127);
    struct rlimit cpu = {.rlim_cur = (rlim_t)tu_cpu_limit_s, .rlim_max = (rlim_t)tu_cpu_limit_s};
    if (tu_cpu_limit_s > 0 && setrlimit(RLIMIT_CPU, &cpu) != 0)
      _exit(127);
    execv(bin, argv);
    _exit(127);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st), "flexmoe died by a signal");
  r.code = WEXITSTATUS(st);
  tu_slurp(out, r.out, sizeof(r.out));
  tu_slurp(err, r.err, sizeof(r.err));
  return &r;
}

/* stderr is exactly one line starting with prefix and containing each of
 * the NULL-terminated words. */
static inline void tu_one_line(const tu_result *r, const char *prefix, ...) {
  size_t len = strlen(r->err);
  cr_assert(len > 0 && r->err[len - 1] == '\n' && strchr(r->err, '\n') == r->err + len - 1,
            "stderr is not one line: '%s'", r->err);
  cr_assert(strncmp(r->err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'",
            r->err, prefix);
  va_list ap;
  va_start(ap, prefix);
  for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
    cr_assert(strstr(r->err, w) != NULL, "'%s' does not mention '%s'", r->err, w);
  va_end(ap);
}

#endif
