/* tests/require.h: skips that a machine may need and CI may refuse.
 *
 * A test that cannot run here because the machine lacks something (the real
 * traces beside the source tree, mpirun, the sqlite3 shell, an unprivileged
 * user) calls fm_skip(NEED, why...): a Criterion skip, unless the environment
 * variable FLEXMOE_REQUIRE (a comma-separated list of needs, or "all") names
 * NEED, in which case the test fails with the same reason. Such tests are
 * registered as their own meson test in a suite named after the need, so that
 * a skip shows in meson's summary (docs/testing.md lists them). Needs:
 *   real-traces   ../shared/traces/real beside the source tree
 *   mpi           mpirun, and flexmoe built with MPI
 *   sqlite3       the sqlite3 shell
 *   unprivileged  a user file permissions apply to: the test's own user, or
 *                 nobody (uid 65534) when the tests run as root
 */
#ifndef FLEXMOE_TESTS_REQUIRE_H
#define FLEXMOE_TESTS_REQUIRE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when FLEXMOE_REQUIRE names need (or "all"), else 0. */
static inline int fm_required(const char *need) {
  const char *p = getenv("FLEXMOE_REQUIRE"), *end = NULL;
  size_t n = strlen(need);
  for (; p && *p; p = end ? end + 1 : NULL) {
    end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && *p == ' ')
      p++, len--;
    while (len && p[len - 1] == ' ')
      len--;
    if ((len == n && strncmp(p, need, n) == 0) || (len == 3 && strncmp(p, "all", 3) == 0))
      return 1;
  }
  return 0;
}

/* Skips the running test (never returns), or fails it when FLEXMOE_REQUIRE
 * names need. The reason is a printf format and its arguments. */
#define fm_skip(need, ...)                                                                 \
  do {                                                                                     \
    char fm_why_[512];                                                                     \
    snprintf(fm_why_, sizeof(fm_why_), __VA_ARGS__);                                       \
    if (fm_required(need))                                                                 \
      cr_assert_fail("FLEXMOE_REQUIRE names %s, but %s", need, fm_why_);                   \
    cr_skip_test("%s", fm_why_);                                                           \
  } while (0)

#endif
