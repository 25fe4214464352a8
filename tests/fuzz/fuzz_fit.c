/*
 * fuzz_fit.c - libFuzzer target of the FIT.json reader (tr_fit_load). A
 * file that loads is applied to a small generator (2 layers x 2 ranks x 4
 * experts, another expert count than most fits, so the profile's quantiles
 * are taken too) and 3 iterations are generated: every model the reader
 * accepts must run.
 */
#include <stdint.h>

#include "fuzz_io.h"
#include "traces/tr_fit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tr_fit f;
  tr_error err;
  if (tr_fit_load(&f, fuzz_file("fit.json", data, size), &err) != TR_OK)
    return 0;
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.layers = 2;
  c.ranks = 2;
  c.experts = 4;
  c.top_k = 1;
  c.tokens_per_rank = 64;
  c.iterations = 3;
  c.max_memory = (uint64_t)64 << 20;
  double *owned = NULL;
  if (tr_fit_apply(&f, &c, &owned) == TR_OK) {
    tr_gen *g = NULL;
    if (tr_gen_new(&c, &g) != TR_OK)
      abort(); /* a model the reader accepted must make a generator */
    int64_t slice[2 * 4];
    for (int i = 0; i < 3 * 2; i++)
      if (tr_gen_next(g, slice) != TR_OK)
        abort();
    tr_gen_free(g);
  }
  tr_free(owned);
  tr_fit_fini(&f);
  return 0;
}
