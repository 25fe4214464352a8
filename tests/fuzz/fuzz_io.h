/*
 * fuzz_io.h - what the libFuzzer targets share: the parsers read files, so
 * each input is written to a file of a private directory (one per process,
 * removed at exit) and the parser is given its path.
 */
#ifndef FLEXMOE_FUZZ_IO_H
#define FLEXMOE_FUZZ_IO_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];

static inline void fuzz_cleanup(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

/* The path of `name` in the private directory, with data[size] written
 * there. Aborts (a harness failure, not a finding) if it cannot write. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
  static char path[128];
  if (!fuzz_dir[0]) {
    snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/flexmoe-fuzz-XXXXXX");
    if (!mkdtemp(fuzz_dir))
      abort();
    atexit(fuzz_cleanup);
  }
  snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
    abort();
  return path;
}

/* data[size] as a NUL-terminated string (owned by the caller). */
static inline char *fuzz_string(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    abort();
  memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

#endif
