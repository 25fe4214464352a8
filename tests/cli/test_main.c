/* The flexmoe command line: help, version, unknown commands, per-command help. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs `flexmoe ARGS`, capturing stdout and stderr; returns the exit code. */
static int run(const char *args, char *out, size_t outlen, char *err, size_t errlen) {
  const char *bin = getenv("FLEXMOE_BIN");
  cr_assert_not_null(bin, "FLEXMOE_BIN not set");
  char errpath[] = "/tmp/flexmoe-cli-XXXXXX";
  int fd = mkstemp(errpath);
  cr_assert_geq(fd, 0);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "'%s' %s 2>'%s'", bin, args, errpath);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, outlen - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  FILE *e = fdopen(fd, "r");
  n = fread(err, 1, errlen - 1, e);
  err[n] = '\0';
  fclose(e);
  unlink(errpath);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char out[1 << 16], err[1 << 16];

Test(cli, help_lists_every_command) {
  cr_assert_eq(run("--help", out, sizeof(out), err, sizeof(err)), 0);
  const char *cmds[] = {"sim", "sweep", "report", "trace", "place", "policies",
                        "clusters", "net", "run", "calibrate", "validate"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    cr_assert(strstr(out, cmds[i]), "--help does not mention %s", cmds[i]);
}

Test(cli, version_names_the_release_and_features) {
  cr_assert_eq(run("--version", out, sizeof(out), err, sizeof(err)), 0);
  cr_assert(strncmp(out, "flexmoe ", 8) == 0);
  cr_assert(strstr(out, "cuda"));
}

Test(cli, unknown_command_is_one_clear_line_and_exit_2) {
  cr_assert_eq(run("frobnicate", out, sizeof(out), err, sizeof(err)), 2);
  cr_assert(strstr(err, "unknown command 'frobnicate'"));
  cr_assert_eq(strchr(err, '\n') - err, (long)strlen(err) - 1, "more than one line: %s", err);
}

Test(cli, no_command_prints_usage_and_fails) {
  cr_assert_eq(run("", out, sizeof(out), err, sizeof(err)), 2);
  cr_assert(strstr(err, "usage"));
}

Test(cli, every_command_has_help_with_an_example) {
  const char *cmds[] = {"sim", "sweep", "report", "trace", "place", "policies",
                        "clusters", "net", "run", "calibrate", "validate"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    char args[64];
    snprintf(args, sizeof(args), "%s --help", cmds[i]);
    cr_assert_eq(run(args, out, sizeof(out), err, sizeof(err)), 0, "%s --help failed: %s", cmds[i], err);
    cr_assert(strstr(out, "xample"), "%s --help has no example", cmds[i]);
    cr_assert(strstr(out, "flexmoe"), "%s --help does not show a command", cmds[i]);
  }
}

Test(cli, unknown_option_names_the_option) {
  const char *cmds[] = {"sim", "sweep", "report", "place", "policies", "clusters", "net",
                        "run", "calibrate", "validate"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    char args[64];
    snprintf(args, sizeof(args), "%s --no-such-flag", cmds[i]);
    int rc = run(args, out, sizeof(out), err, sizeof(err));
    cr_assert_neq(rc, 0, "%s accepted --no-such-flag", cmds[i]);
    cr_assert(strstr(err, "--no-such-flag"), "%s: message does not name the flag: %s", cmds[i], err);
  }
}
