/*
 * fuzz_trace.c - libFuzzer targets of the trace readers. One source, three
 * targets (FUZZ_WHAT): the .npy reader (the input is the file), the long
 * CSV reader (the input is the file), and the JSON sidecar (the input is
 * the sidecar of a fixed, valid 1 x 1 x 2 x 2 .npy). An opened trace is
 * read at a few indices and its slices summed, so a header that lies about
 * its shape is caught by ASan rather than by luck.
 */
#include <stdint.h>

#include "fuzz_io.h"
#include "traces/tr_trace.h"

#define FUZZ_NPY 1
#define FUZZ_CSV 2
#define FUZZ_SIDECAR 3

#if FUZZ_WHAT == FUZZ_SIDECAR
/* int32 [1, 1, 2, 2] = {1, 2, 3, 4}, NumPy format 1.0 */
static const char npy_hdr[] =
    "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }";

static void tiny_npy(void) {
  uint8_t buf[128 + 16];
  size_t hl = sizeof(npy_hdr) - 1, pad = 128 - 10 - hl;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (uint8_t)(118 & 0xff);
  buf[9] = 0;
  memcpy(buf + 10, npy_hdr, hl);
  memset(buf + 10 + hl, ' ', pad - 1);
  buf[127] = '\n';
  int32_t v[4] = {1, 2, 3, 4};
  memcpy(buf + 128, v, sizeof(v));
  fuzz_file("t.npy", buf, sizeof(buf));
}
#endif

static void touch(const tr_trace *t) {
  volatile int64_t sum = 0;
  if (t->iterations < 1 || t->layers < 1 || t->ranks < 1 || t->experts < 1)
    return;
  sum += tr_at(t, 0, 0, 0, 0);
  sum += tr_at(t, t->iterations - 1, t->layers - 1, t->ranks - 1, t->experts - 1);
  if ((int64_t)t->ranks * t->experts <= 4096) {
    int64_t *s = malloc(sizeof(int64_t) * (size_t)t->ranks * (size_t)t->experts);
    if (!s)
      abort();
    tr_slice(t, t->iterations - 1, 0, s);
    sum += s[0];
    free(s);
  }
  (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#if FUZZ_WHAT == FUZZ_NPY
  const char *path = fuzz_file("t.npy", data, size);
#elif FUZZ_WHAT == FUZZ_CSV
  const char *path = fuzz_file("t.csv", data, size);
#else
  tiny_npy();
  fuzz_file("t.json", data, size); /* the sidecar of t.npy */
  static char path[160];
  snprintf(path, sizeof(path), "%s/t.npy", fuzz_dir);
#endif
  tr_trace t;
  tr_error err;
  memset(&err, 0, sizeof(err));
  if (tr_open(&t, path, &err) == 0) {
    touch(&t);
    tr_close(&t);
  }
  return 0;
}
