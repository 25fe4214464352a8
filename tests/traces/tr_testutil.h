/*
 * tr_testutil.h - helpers for the traces tests: a scratch directory per
 * test process, raw .npy files with any header, text files, and the paths of
 * the bundled sample and the real traces.
 */
#ifndef FLEXMOE_TR_TESTUTIL_H
#define FLEXMOE_TR_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tu_dir_buf[256];

static inline void tu_dir_remove(void) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tu_dir_buf);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tu_dir_buf);
}

/* A fresh directory under $TMPDIR (or /tmp) for this test process (Criterion
 * runs each test in its own process), removed when the process exits. */
static inline const char *tu_dir(void) {
  if (!tu_dir_buf[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(tu_dir_buf, sizeof(tu_dir_buf), "%s/flexmoe-traces-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(tu_dir_buf));
    atexit(tu_dir_remove);
  }
  return tu_dir_buf;
}

static inline const char *tu_path(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tu_dir(), name);
  return buf;
}

static inline void tu_write(const char *path, const void *data, size_t len) {
  FILE *fp = fopen(path, "wb");
  cr_assert_not_null(fp, "cannot create %s", path);
  cr_assert_eq(fwrite(data, 1, len, fp), len);
  cr_assert_eq(fclose(fp), 0);
}

static inline void tu_text(const char *path, const char *text) {
  tu_write(path, text, strlen(text));
}

/* An .npy v1 (or v2 when version == 2) with header dict `dict` and `len`
 * bytes of data; the header is padded to 64 bytes like NumPy does. */
static inline void tu_npy(const char *path, int version, const char *dict,
                          const void *data, size_t len) {
  unsigned char buf[4096];
  size_t pre = version == 1 ? 10 : 12, n = strlen(dict);
  size_t pad = (64 - (pre + n + 1) % 64) % 64, hlen = n + pad + 1;
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)version;
  buf[7] = 0;
  for (size_t i = 0; i < pre - 8; i++)
    buf[8 + i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + pre, dict, n);
  memset(buf + pre + n, ' ', pad);
  buf[pre + n + pad] = '\n';
  size_t off = pre + hlen;
  FILE *fp = fopen(path, "wb");
  cr_assert_not_null(fp);
  cr_assert_eq(fwrite(buf, 1, off, fp), off);
  if (len)
    cr_assert_eq(fwrite(data, 1, len, fp), len);
  cr_assert_eq(fclose(fp), 0);
}

/* Path of the bundled sample. */
static inline const char *tu_sample(void) {
  static char p[1024];
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  snprintf(p, sizeof(p), "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy", root ? root : ".");
  return p;
}

/* Path of a real trace (name without .npy) in shared/ beside the source
 * tree (or two levels up, for a git worktree), or NULL when absent. */
static inline const char *tu_real(const char *name) {
  static char p[2][1024];
  static int k;
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  char *b = p[k++ & 1];
  static const char *up[] = {"..", "../.."};
  for (int i = 0; i < 2; i++) {
    snprintf(b, sizeof(p[0]), "%s/%s/shared/traces/real/%s.npy", root ? root : ".", up[i],
             name);
    if (access(b, R_OK) == 0)
      return b;
  }
  return NULL;
}

#endif
