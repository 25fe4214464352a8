/* Every allocation of the traces library can fail: the calls return
 * TR_ENOMEM, never crash, and free everything they allocated through the
 * hook (counted here: LeakSanitizer does not see Criterion's workers). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "tr_testutil.h"
#include "traces/tr_gen.h"
#include "traces/tr_rescale.h"
#include "traces/tr_stats.h"
#include "traces/tr_trace.h"

static int budget; /* allocations left before failing; < 0: unlimited */
static long live;  /* blocks allocated through the hook and not freed */

static void *failing_malloc(size_t n) {
  if (budget == 0)
    return NULL;
  if (budget > 0)
    budget--;
  void *p = malloc(n);
  live += p != NULL;
  return p;
}
static void *failing_realloc(void *p, size_t n) {
  if (budget == 0)
    return NULL;
  if (budget > 0)
    budget--;
  void *q = realloc(p, n);
  live += q != NULL && p == NULL;
  return q;
}
static void counting_free(void *p) {
  live -= p != NULL;
  free(p);
}

/* Runs op with 0, 1, 2, ... allocations allowed until it succeeds. */
static void each_failure(int (*op)(void), const char *what) {
  tr_set_allocator(failing_malloc, failing_realloc, counting_free);
  int n;
  for (n = 0; n < 1000; n++) {
    budget = n;
    live = 0;
    int rc = op();
    cr_assert_eq(live, 0, "%s with %d allocations leaves %ld blocks", what, n, live);
    if (rc == TR_OK)
      break;
    cr_assert_eq(rc, TR_ENOMEM, "%s with %d allocations: %s", what, n, tr_strerror(rc));
  }
  budget = -1;
  tr_set_allocator(NULL, NULL, NULL);
  cr_assert(n > 0 && n < 1000, "%s: %d allocations", what, n);
}

static int open_csv(void) {
  char p[512];
  tu_path(p, sizeof(p), "a.csv");
  tr_trace t;
  tr_error err;
  int rc = tr_open(&t, p, &err);
  tr_close(&t);
  return rc;
}

static int stats_sample(void) {
  tr_trace t;
  tr_error err;
  int rc = tr_open(&t, tu_sample(), &err);
  if (rc)
    return rc;
  tr_stats s;
  rc = tr_stats_compute(&t, 0, 20, &s);
  tr_stats_fini(&s);
  tr_close(&t);
  return rc;
}

static int rescale_sample(void) {
  tr_trace t;
  tr_error err;
  int rc = tr_open(&t, tu_sample(), &err);
  if (rc)
    return rc;
  static int64_t out[16 * 32];
  rc = tr_rescale_slice(&t, 3, 2, 16, 500, 1, out);
  tr_close(&t);
  return rc;
}

static int gen_small(void) {
  tr_gen_config c;
  tr_gen_defaults(&c);
  c.iterations = 3;
  tr_gen_pattern(&c, "realistic");
  char p[512];
  tu_path(p, sizeof(p), "g.npy");
  tr_error err;
  return tr_gen_write(&c, p, &err);
}

Test(alloc, every_allocation_failure_is_enomem_and_clean) {
  char p[512];
  tu_path(p, sizeof(p), "a.csv");
  tu_text(p, "iteration,layer,rank,expert,tokens\n0,0,0,0,5\n1,1,1,1,2\n");
  each_failure(open_csv, "open csv");
  each_failure(stats_sample, "stats");
  each_failure(rescale_sample, "rescale");
  each_failure(gen_small, "gen");
}
