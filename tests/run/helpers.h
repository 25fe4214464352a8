/*
 * helpers.h - what several tests of run/ share: the bundled sample trace's
 * path and a calibrated profile file with made-up but plausible numbers.
 * Header-only (static functions): each test program includes it once.
 */
#ifndef FLEXMOE_TESTS_RUN_HELPERS_H
#define FLEXMOE_TESTS_RUN_HELPERS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/fm_error.h"
#include "run/fm_profile.h"

/* The bundled sample trace under FLEXMOE_SOURCE_ROOT (set by meson). */
static inline const char *sample(void) {
  static char p[1024];
  const char *root = getenv("FLEXMOE_SOURCE_ROOT");
  cr_assert_not_null(root);
  snprintf(p, sizeof p, "%s/traces/samples/gpt-l6-e32-top2-aux-200.npy", root);
  return p;
}

/* A profile as `flexmoe calibrate --out` writes it into path: name, gpus
 * cpu ranks of d_model 16 / d_ff 32, the first npoints (1..4) of the FFN
 * points 8, 64, 512, 4096 tokens = 12, 30, 150, 1100 us, and fixed exchange
 * and local numbers (the cpu backend is measured anyway; only predictions
 * read these). */
static inline void write_test_profile(const char *path, const char *name, int gpus,
                                      int npoints) {
  fm_profile p;
  memset(&p, 0, sizeof p);
  snprintf(p.name, sizeof p.name, "%s", name);
  snprintf(p.device, sizeof p.device, "test cpu");
  p.d_model = 16;
  p.d_ff = 32;
  const double tok[] = {8, 64, 512, 4096}, us[] = {12.0, 30.0, 150.0, 1100.0};
  cr_assert(npoints >= 1 && npoints <= 4);
  p.npoints = npoints;
  for (int i = 0; i < npoints; i++) {
    p.tok[i] = tok[i];
    p.us[i] = us[i];
  }
  p.pl.bwd_ratio = 2.0;
  p.exchange_GBps = 5.0;
  p.exchange_latency_us = 8.0;
  p.local_lat_us = 3.0;
  p.local_us_per_row = 0.02;
  p.gpus = gpus;
  char em[512];
  cr_assert_eq(fm_profile_save(&p, path, em, sizeof em), FM_OK, "%s", em);
}

#endif
