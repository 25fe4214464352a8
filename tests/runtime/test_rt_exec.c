/*
 * The runtime on the cpu backend (ranks are threads): ordering between
 * ranks, and the replay invariants a user relies on:
 *   - every token comes back (each token's combined output is there);
 *   - a layer's outputs, input gradients and expert gradients do not
 *     depend on the placement: every policy gives the single-device
 *     reference (rt_exec_check, float; outputs are computed row by row in a
 *     fixed order so they match exactly, gradients are sums in another
 *     order: 1e-5 relative);
 *   - expert parameters and optimizer state survive migration (checksums
 *     of every replica equal the expert's original).
 * Counts are synthetic (skewed, changing every iteration) so that dynamic
 * policies move experts.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kn_kernels.h"
#include "placement/pl_policy.h"
#include "runtime/rt_backend.h"
#include "runtime/rt_calib.h"
#include "runtime/rt_exec.h"

enum { E = 8, K = 2 };
/* Layers of the replays; a test may set more (Criterion runs each test in
 * a process of its own). */
static int L = 2;
static const double tok[] = {8, 64, 512};
static const double us[] = {10, 20, 100};
/* The backend's ops for the replays: the cpu backend's, or a test's
 * wrapper of them (the weights-first log below). */
static const rt_backend_ops *replay_ops;

static pl_env env_of(int G, int slots) {
  pl_env env = PL_ENV_INIT;
  env.layers = L;
  env.experts = E;
  env.cluster = (pl_cluster){G, G, slots, 100e9, 5e-6, 100e9, 5e-6, 1.0};
  env.model = (pl_model){16, 40, K, 2, 12.0};
  env.profile = (pl_profile){3, tok, us, 2.0, 0.0};
  env.seed = 3;
  return env;
}

/* Skewed counts that move: expert (i + l) mod E is hot at iteration i. */
static void counts_of(int G, int it, int64_t *c) {
  for (int l = 0; l < L; l++)
    for (int g = 0; g < G; g++)
      for (int e = 0; e < E; e++) {
        int hot = (e == (it + l) % E) ? 40 : 0;
        int warm = (e == (it * 3 + g) % E) ? 10 : 0;
        c[((size_t)l * G + g) * E + e] = 2 + hot + warm + (e * 7 + g * 3 + it) % 5;
      }
}

typedef struct outcome {
  rt_check check;
  int moves;
  double mean_ms;
  int wf_plans; /* layers served by a weights-first plan in their own iteration */
  int bg_plans; /* layers whose plan was in flight (plain background) */
} outcome;

static outcome replay_warm(int G, int slots, const char *policy, int iters, int64_t warm);
static outcome replay(int G, int slots, const char *policy, int iters) {
  return replay_warm(G, slots, policy, iters, 0);
}

static outcome replay_warm(int G, int slots, const char *policy, int iters, int64_t warm) {
  rt_backend *b = NULL;
  rt_backend_config bc = {G, 0, 0, 60.0, 0};
  char err[512] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0, "%s", err);
  if (replay_ops) b->ops = replay_ops;
  pl_env env = env_of(G, slots);
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, policy, &env, err, sizeof err), 0, "%s", err);
  rt_exec_config xc = {L, E, K, 16, 40, slots, 512, 12.0, 2, 11, warm};
  rt_exec *x = NULL;
  cr_assert_eq(rt_exec_create(&x, b, p, &env, &xc, err, sizeof err), 0, "%s", err);
  int64_t *c = malloc(sizeof(int64_t) * L * G * E);
  outcome o = {0};
  for (int i = 0; i < iters; i++) {
    rt_iter_result r;
    counts_of(G, i, c);
    cr_assert_eq(rt_exec_iteration(x, i, c, &r, err, sizeof err), 0, "iteration %d: %s", i, err);
    o.moves += i > 0 ? r.nmoves : 0;
    for (int l = 0; l < L; l++) {
      o.wf_plans += pl_policy_weights_first(p, l);
      o.bg_plans += pl_policy_inflight(p, l);
    }
    o.mean_ms += r.time_ms / iters;
    cr_assert_gt(r.time_ms, 0.0);
    cr_assert_eq(r.tokens_dropped, 0);
  }
  cr_assert_eq(rt_exec_check(x, &o.check, err, sizeof err), 0, "%s", err);
  free(c);
  rt_exec_destroy(x);
  pl_policy_destroy(p);
  rt_backend_destroy(b);
  return o;
}

static void assert_reference(const outcome *o, const char *policy) {
  cr_assert_gt(o->check.tokens_checked, 0);
  cr_assert_eq(o->check.tokens_missing, 0, "%s lost tokens", policy);
  cr_assert_leq(o->check.out_err, 1e-5, "%s outputs differ: %g", policy, o->check.out_err);
  cr_assert_leq(o->check.din_err, 1e-5, "%s input gradients differ: %g", policy, o->check.din_err);
  cr_assert_leq(o->check.grad_err, 1e-5, "%s expert gradients differ: %g", policy, o->check.grad_err);
  cr_assert_gt(o->check.replicas_checked, 0);
  cr_assert_eq(o->check.checksum_mismatches, 0, "%s corrupted parameters", policy);
}

Test(rt_exec, static_placement_matches_the_single_device_reference) {
  outcome o = replay(4, 3, "static", 2);
  assert_reference(&o, "static");
  cr_assert_eq(o.moves, 0);
}

Test(rt_exec, results_do_not_depend_on_the_placement, .timeout = 60) {
  const char *pol[] = {"eplb:period=1", "flexmoe:threshold=1.01", "smartmoe:period=1", "fastermoe", "oracle"};
  for (size_t i = 0; i < sizeof pol / sizeof *pol; i++) {
    outcome o = replay(4, 3, pol[i], 4);
    assert_reference(&o, pol[i]);
  }
}

Test(rt_exec, parameters_survive_migration, .timeout = 60) {
  /* oracle and smartmoe re-place every iteration on these moving counts */
  outcome a = replay(4, 3, "oracle", 6);
  cr_assert_gt(a.moves, 0, "the test needs moves");
  assert_reference(&a, "oracle");
  outcome b = replay(4, 2, "smartmoe:period=1", 6);
  cr_assert_gt(b.moves, 0, "the test needs moves");
  assert_reference(&b, "smartmoe");
}

/* Weights-first moves (pl_policy.h rule 6) on the cpu backend's mover:
 * layer 1's plans are weights-first (their 2.5 kB of weights hide behind
 * layer 0's forward) and serve their own iteration, so the new replicas'
 * parameters must have landed before layer 1's forward and their optimizer
 * state by the boundary; layer 0 has no non-MoE time to hide behind
 * (nonmoe_us 0), so its plans stay plain background moves, which start
 * after the weights' fence. Outputs, gradients and every replica's
 * parameter and optimizer-state checksums match the reference. */
Test(rt_exec, weights_first_moves_serve_their_own_iteration_with_parameters_intact,
     .timeout = 60) {
  outcome o = replay(4, 3, "flexmoe:threshold=1.01,weights_first=1", 8);
  cr_assert_gt(o.moves, 0, "the test needs moves");
  cr_assert_gt(o.wf_plans, 0, "no weights-first plan");
  cr_assert_gt(o.bg_plans, 0, "no plain background plan beside them");
  assert_reference(&o, "flexmoe:weights_first=1");
  outcome p = replay(4, 3, "flexmoe:threshold=1.01,weights_first=0", 8);
  cr_assert_eq(p.wf_plans, 0);
  assert_reference(&p, "flexmoe:weights_first=0");
}

/* The mover calls of the replays below, in order: 'B' begin, 'C' copy,
 * 'P' point, 'W' wait, 'J' join (id in wlog_id), 'F' fence. */
static char wlog[1 << 16];
static int wlog_id[1 << 16], nwlog;
static void wlog_add(char what, int id) {
  cr_assert_lt(nwlog, (int)sizeof wlog, "the log is full");
  wlog[nwlog] = what;
  wlog_id[nwlog++] = id;
}
static int log_begin(rt_backend *b) {
  wlog_add('B', -1);
  return rt_backend_cpu_ops.move_begin(b);
}
static int log_copy(rt_backend *b, int sr, const void *src, int dr, void *dst, size_t bytes) {
  wlog_add('C', -1);
  return rt_backend_cpu_ops.move_copy(b, sr, src, dr, dst, bytes);
}
static int log_fence(rt_backend *b) {
  wlog_add('F', -1);
  return rt_backend_cpu_ops.move_fence(b);
}
static int log_point(rt_backend *b, int id) {
  wlog_add('P', id);
  return rt_backend_cpu_ops.move_point(b, id);
}
static int log_wait(rt_backend *b, int id) {
  wlog_add('W', id);
  return rt_backend_cpu_ops.move_wait(b, id);
}
static int log_join(rt_backend *b, int id) {
  (void)b; /* the cpu mover is one queue: its order already joins */
  wlog_add('J', id);
  return 0;
}

/* Weights-first fences per layer (pl_policy.h rule 6): with four layers
 * and non-MoE time to hide behind, several layers of one iteration get
 * weights-first plans. Each such layer's forward waits for its own point
 * (its weights, given to the mover in layer order before the rest), never
 * a whole fence: one fence per iteration, at the boundary, and after the
 * last point the mover gets a join on it (the rest starts once every
 * source's weights have landed) and then the rest (optimizer state, plain
 * background copies). The replay still gives the single-device reference
 * with every replica's parameter and optimizer-state checksum intact. */
Test(rt_exec, weights_first_layers_wait_for_their_own_weights_only, .timeout = 120) {
  L = 4;
  rt_backend_ops ops = rt_backend_cpu_ops;
  ops.move_begin = log_begin;
  ops.move_copy = log_copy;
  ops.move_fence = log_fence;
  ops.move_point = log_point;
  ops.move_wait = log_wait;
  ops.move_join = log_join;
  replay_ops = &ops;
  outcome o = replay(4, 3, "flexmoe:threshold=1.01,weights_first=1", 10);
  replay_ops = NULL;
  cr_assert_gt(o.wf_plans, 1, "the test needs weights-first plans");
  assert_reference(&o, "flexmoe:weights_first=1 on 4 layers");
  int multi = 0, rest_after_points = 0;
  for (int i = 0; i < nwlog;) {
    cr_assert_eq(wlog[i], 'B', "mover calls out of order at %d", i);
    int j = i + 1, fences = 0, waits = 0, joins = 0, last_point = -1, last_wait = -1;
    for (; j < nwlog && wlog[j] != 'B'; j++) {
      if (wlog[j] == 'P') {
        cr_assert_eq(joins, 0, "a point after the join");
        cr_assert_gt(wlog_id[j], last_point, "points out of layer order");
        last_point = wlog_id[j];
      } else if (wlog[j] == 'W') {
        int put = 0; /* its point was put in this iteration, before it */
        for (int k = i; k < j; k++) put |= wlog[k] == 'P' && wlog_id[k] == wlog_id[j];
        cr_assert(put, "wait on layer %d without its point", wlog_id[j]);
        cr_assert_gt(wlog_id[j], last_wait, "waits out of layer order");
        last_wait = wlog_id[j];
        waits++;
      } else if (wlog[j] == 'J') {
        cr_assert_eq(wlog[j - 1], 'P', "the join follows the last point at once");
        cr_assert_eq(wlog_id[j], last_point, "the join is on the last point");
        joins++;
      } else if (wlog[j] == 'F') {
        fences++;
      } else if (wlog[j] == 'C' && joins && last_wait < 0) {
        rest_after_points = 1;
      }
    }
    cr_assert_eq(joins, last_point >= 0, "one join in an iteration with points (got %d)", joins);
    cr_assert_eq(fences, 1, "one fence per iteration, at the boundary (got %d)", fences);
    cr_assert_eq(wlog[j - 1], 'F', "the fence is the iteration's last mover call");
    multi += waits >= 2;
    i = j;
  }
  cr_assert_gt(multi, 0, "no iteration with weights-first plans on two layers");
  cr_assert(rest_after_points, "no copy given after the last point (the rest)");
}

Test(rt_exec, replica_counts_that_do_not_divide_the_gradient_reduce_correctly, .timeout = 60) {
  /* 3 ranks: shadowed experts have 3 replicas; 2 x 16 x 40 = 1280
   * gradient elements are not a multiple of 3 (the all-reduce chunking
   * once overran its staging buffer in exactly this case) */
  outcome o = replay(3, 4, "fastermoe", 4);
  assert_reference(&o, "fastermoe on 3 ranks");
}

Test(rt_exec, warm_up_leaves_the_results_untouched, .timeout = 60) {
  /* the warm-up runs the FFN with the spare slot and layer 0's buffers */
  outcome o = replay_warm(4, 3, "oracle", 3, 24);
  assert_reference(&o, "oracle after a warm-up");
}

Test(rt_exec, bad_configuration_is_refused_with_a_message) {
  rt_backend *b = NULL;
  rt_backend_config bc = {2, 0, 0, 60.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  pl_env env = env_of(4, 2); /* 4 GPUs for a 2-rank backend */
  pl_policy *p = NULL;
  cr_assert_eq(pl_policy_create(&p, "static", &env, err, sizeof err), 0);
  rt_exec_config xc = {L, E, K, 16, 40, 2, 64, 12.0, 2, 1, 0};
  rt_exec *x = NULL;
  cr_assert_eq(rt_exec_create(&x, b, p, &env, &xc, err, sizeof err), RT_EINVAL);
  cr_assert(strstr(err, "ranks"), "%s", err);
  cr_assert_null(x);
  pl_policy_destroy(p);
  rt_backend_destroy(b);
}

Test(rt_backend, unknown_and_absent_backends_say_so) {
  rt_backend *b = NULL;
  rt_backend_config bc = {2, 0, 0, 1.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "tpu", &bc, err, sizeof err), RT_EBACKEND);
  cr_assert(strstr(err, "unknown backend 'tpu'"), "%s", err);
  cr_assert_null(b);
  bc.partitions = 2;
  cr_assert_neq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  cr_assert(strstr(err, "--partitions"), "%s", err);
  cr_assert_not_null(rt_backend_find("cpu"));
  cr_assert_str_eq(rt_strerror(RT_ETIMEOUT), "timed out waiting for the device");
}

/* Background moves on the cpu backend's mover thread (rt_backend.h):
 * a copy given after move_begin reads what every rank wrote before it,
 * and after move_fence every rank reads what it wrote; the ranks' own
 * work in between runs beside it. Repeated, so an ordering that only
 * holds by luck fails one of the rounds. */
Test(rt_backend, moves_start_at_the_begin_and_land_by_the_fence) {
  rt_backend *b = NULL;
  rt_backend_config bc = {2, 0, 0, 10.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  const rt_backend_ops *o = b->ops;
  cr_assert(o->move_begin && o->move_copy && o->move_fence);
  enum { N = 1 << 16 };
  float *src = o->alloc(b, 0, N * sizeof(float)), *dst = o->alloc(b, 1, N * sizeof(float));
  float *acc = o->alloc(b, 1, N * sizeof(float)), *work = o->alloc(b, 0, N * sizeof(float));
  float *host = malloc(N * sizeof(float)), *want = malloc(N * sizeof(float));
  for (int round = 0; round < 20; round++) {
    cr_assert_eq(o->fill(b, 0, src, N, (uint64_t)round + 1, 1.0f), 0);
    cr_assert_eq(o->fill(b, 1, acc, N, 99, 0.0f), 0);
    cr_assert_eq(o->move_begin(b), 0);
    cr_assert_eq(o->move_copy(b, 0, src, 1, dst, N * sizeof(float)), 0);
    /* the ranks keep working while the copy runs */
    for (int k = 0; k < 4; k++) cr_assert_eq(o->fill(b, 0, work, N, 7, 1.0f), 0);
    cr_assert_eq(o->move_fence(b), 0);
    cr_assert_eq(o->add(b, 1, acc, dst, N), 0);
    cr_assert_eq(o->download(b, 1, host, acc, N * sizeof(float)), 0);
    kn_cpu_fill(want, N, (uint64_t)round + 1, 1.0f);
    for (int i = 0; i < N; i++)
      cr_assert_float_eq(host[i], want[i], 0.0f, "round %d element %d", round, i);
  }
  free(host);
  free(want);
  o->release(b, 0, src);
  o->release(b, 1, dst);
  o->release(b, 1, acc);
  o->release(b, 0, work);
  rt_backend_destroy(b);
}

/* move_point / move_wait on the cpu backend's mover (rt_backend.h): after
 * move_wait(id) every rank reads what the copies before point id wrote,
 * and does not wait for a large copy given after the point: the rank's
 * stamp after the wait comes well before the one after the fence, which
 * waits for it (the best of three tries: other jobs on the machine may
 * hold a rank thread for a while, but waiting for the large copy would
 * make every try fail). Repeated, so an ordering that holds by luck fails
 * one of the rounds. */
Test(rt_backend, a_wait_on_a_point_waits_for_the_copies_before_it_only, .timeout = 60) {
  rt_backend *b = NULL;
  rt_backend_config bc = {2, 0, 0, 30.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  const rt_backend_ops *o = b->ops;
  cr_assert(o->move_point && o->move_wait);
  enum { N = 1 << 16, BIG = 1 << 25 };
  float *src = o->alloc(b, 0, N * sizeof(float)), *dst = o->alloc(b, 1, N * sizeof(float));
  float *acc = o->alloc(b, 1, N * sizeof(float));
  char *bsrc = o->alloc(b, 0, BIG), *bdst = o->alloc(b, 1, BIG);
  float *host = malloc(N * sizeof(float)), *want = malloc(N * sizeof(float));
  cr_assert(src && dst && acc && bsrc && bdst && host && want);
  double best = INFINITY;
  for (int round = 0; round < 3; round++) {
    cr_assert_eq(o->fill(b, 0, src, N, (uint64_t)round + 5, 1.0f), 0);
    cr_assert_eq(o->fill(b, 1, acc, N, 99, 0.0f), 0);
    cr_assert_eq(o->barrier(b), 0);
    cr_assert_eq(o->mark(b, 0), 0);
    cr_assert_eq(o->move_begin(b), 0);
    cr_assert_eq(o->move_copy(b, 0, src, 1, dst, N * sizeof(float)), 0);
    cr_assert_eq(o->move_point(b, 7), 0);
    for (int k = 0; k < 4; k++) cr_assert_eq(o->move_copy(b, 0, bsrc, 1, bdst, BIG), 0);
    cr_assert_eq(o->move_wait(b, 7), 0);
    cr_assert_eq(o->add(b, 1, acc, dst, N), 0);
    cr_assert_eq(o->mark(b, 1), 0);
    cr_assert_eq(o->move_fence(b), 0);
    cr_assert_eq(o->mark(b, 2), 0);
    double ms[6];
    cr_assert_eq(o->collect(b, 3, ms), 0);
    cr_assert_eq(o->download(b, 1, host, acc, N * sizeof(float)), 0);
    kn_cpu_fill(want, N, (uint64_t)round + 5, 1.0f);
    for (int i = 0; i < N; i++)
      cr_assert_float_eq(host[i], want[i], 0.0f, "round %d element %d", round, i);
    /* rank 1 (the destination): from stamp 0 to the wait's and the fence's */
    double waited = ms[1 * 2 + 1] - ms[0 * 2 + 1], fenced = ms[2 * 2 + 1] - ms[0 * 2 + 1];
    cr_assert_gt(fenced, 0.0);
    if (waited / fenced < best) best = waited / fenced;
  }
  cr_assert_lt(best, 0.5, "the wait on the point took %.0f%% of the fence's time", 100 * best);
  cr_assert_eq(o->move_wait(b, 8), RT_EINVAL, "a wait on a point never put is refused");
  cr_assert_eq(o->move_point(b, RT_MOVE_POINTS), RT_EINVAL);
  free(host);
  free(want);
  o->release(b, 0, src);
  o->release(b, 1, dst);
  o->release(b, 1, acc);
  o->release(b, 0, bsrc);
  o->release(b, 1, bdst);
  rt_backend_destroy(b);
}

Test(rt_backend, barrier_orders_copies_between_rank_threads) {
  rt_backend *b = NULL;
  rt_backend_config bc = {3, 0, 0, 10.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  const rt_backend_ops *o = b->ops;
  float *buf[3];
  for (int r = 0; r < 3; r++) buf[r] = o->alloc(b, r, 64 * sizeof(float));
  /* rank r fills, sends to rank r+1, barrier, rank r+1 adds it twice */
  for (int r = 0; r < 3; r++) cr_assert_eq(o->fill(b, r, buf[r], 32, (uint64_t)r, 1.0f), 0);
  for (int r = 0; r < 3; r++)
    cr_assert_eq(o->copy(b, r, buf[r], (r + 1) % 3, buf[(r + 1) % 3] + 32, 32 * sizeof(float)), 0);
  cr_assert_eq(o->barrier(b), 0);
  for (int r = 0; r < 3; r++) cr_assert_eq(o->add(b, r, buf[r], buf[r] + 32, 32), 0);
  float host[64], want[32];
  for (int r = 0; r < 3; r++) {
    cr_assert_eq(o->download(b, r, host, buf[r], sizeof host), 0);
    kn_cpu_fill(want, 32, (uint64_t)r, 1.0f);
    float from[32];
    kn_cpu_fill(from, 32, (uint64_t)((r + 2) % 3), 1.0f);
    for (int i = 0; i < 32; i++) cr_assert_float_eq(host[i], want[i] + from[i], 1e-6);
  }
  for (int r = 0; r < 3; r++) o->release(b, r, buf[r]);
  rt_backend_destroy(b);
}

Test(rt_calib, measures_positive_times_on_the_cpu_backend) {
  rt_backend *b = NULL;
  rt_backend_config bc = {2, 0, 0, 60.0, 0};
  char err[256] = "";
  cr_assert_eq(rt_backend_create(&b, "cpu", &bc, err, sizeof err), 0);
  rt_calib_config cc;
  rt_calib_defaults(&cc, b, 16, 32);
  cc.reps = 1;
  rt_calib_result r;
  cr_assert_eq(rt_calibrate(b, &cc, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.ntokens, cc.ntokens);
  for (int i = 0; i < r.ntokens; i++) {
    cr_assert_gt(r.fwd_us[i], 0.0);
    cr_assert_gt(r.bwd_us[i], 0.0);
  }
  cr_assert_gt(r.bwd_ratio, 0.0);
  cr_assert(isfinite(r.exchange_latency_us) && r.exchange_latency_us > 0);
  cr_assert(isfinite(r.local_lat_us) && r.local_lat_us > 0);
  rt_backend_destroy(b);
}

/* Fails the Nth host allocation of the runtime. */
static long alloc_left = -1;
static void *fail_malloc(size_t n) {
  if (alloc_left == 0) return NULL;
  if (alloc_left > 0) alloc_left--;
  return malloc(n);
}
static void *fail_realloc(void *p, size_t n) {
  if (alloc_left == 0) return NULL;
  if (alloc_left > 0) alloc_left--;
  return realloc(p, n);
}

Test(rt_exec, every_failed_allocation_is_an_error_not_a_crash, .timeout = 120) {
  char err[512];
  int64_t c[1 * 2 * 4];
  for (int i = 0; i < 8; i++) c[i] = 3 + i;
  int succeeded = 0, fails = 0;
  for (long n = 0; n < 2000 && !succeeded; n++) {
    rt_set_allocator(fail_malloc, fail_realloc, free);
    alloc_left = n;
    rt_backend *b = NULL;
    rt_backend_config bc = {2, 0, 0, 10.0, 0};
    int rc = rt_backend_create(&b, "cpu", &bc, err, sizeof err);
    pl_env env = PL_ENV_INIT;
    env.layers = 1;
    env.experts = 4;
    env.cluster = (pl_cluster){2, 2, 3, 100e9, 5e-6, 100e9, 5e-6, 1.0};
    env.model = (pl_model){8, 8, 2, 2, 12.0};
    env.profile = (pl_profile){3, tok, us, 2.0, 0.0};
    pl_policy *p = NULL;
    rt_exec *x = NULL;
    if (!rc) rc = pl_policy_create(&p, "eplb:period=1", &env, err, sizeof err);
    rt_exec_config xc = {1, 4, 2, 8, 8, 3, 64, 12.0, 2, 1, 0};
    if (!rc) rc = rt_exec_create(&x, b, p, &env, &xc, err, sizeof err);
    for (int it = 0; it < 2 && !rc; it++) {
      rt_iter_result r;
      rc = rt_exec_iteration(x, it, c, &r, err, sizeof err);
    }
    rt_check ck;
    if (!rc) rc = rt_exec_check(x, &ck, err, sizeof err);
    if (!rc) {
      succeeded = 1;
      cr_assert_eq(ck.tokens_missing, 0);
      cr_assert_eq(ck.checksum_mismatches, 0);
    } else {
      cr_assert_lt(rc, 0, "allocation %ld: error codes are negative", n);
      fails++;
    }
    rt_exec_destroy(x);
    pl_policy_destroy(p);
    rt_backend_destroy(b);
    rt_set_allocator(NULL, NULL, NULL);
  }
  cr_assert(succeeded, "never succeeded within 2000 allocations");
  cr_assert_gt(fails, 20, "the test must fail many allocations on the way (%d)", fails);
}

/* flexmoe's temporaries (shadow=1, pl_policy.h's contract) replayed on the
 * cpu backend: copied in from their holders, served, their gradients added
 * back to the holders before the all-reduce, freed. Outputs and expert
 * gradients match the single-device reference and the parameters keep
 * their checksums; a second handle of the same policy, driven through the
 * same protocol, shows that temporaries were really made. */
Test(rt_exec, temporaries_are_copied_in_served_reduced_back_and_freed, .timeout = 60) {
  const int G = 4, slots = 3, iters = 4;
  const char *spec = "flexmoe:shadow=1,threshold=1000";
  outcome o = replay(G, slots, spec, iters);
  assert_reference(&o, spec);
  pl_env env = env_of(G, slots);
  pl_policy *p = NULL;
  char err[256];
  cr_assert_eq(pl_policy_create(&p, spec, &env, err, sizeof err), 0, "%s", err);
  pl_temps t;
  cr_assert_eq(pl_temps_init(&t, E, G, slots), 0);
  int64_t *c = malloc(sizeof(int64_t) * L * G * E);
  int made = 0;
  for (int i = 0; i < iters; i++) {
    counts_of(G, i, c);
    for (int l = 0; l < L; l++) {
      pl_plan plan;
      pl_plan_init(&plan);
      cr_assert_eq(pl_policy_plan(p, i, l, NULL, &plan), 0);
      pl_plan_fini(&plan);
      cr_assert_eq(pl_policy_temporaries(p, l, c + (size_t)l * G * E, &t), 0);
      made += t.n;
      cr_assert_eq(pl_policy_observe(p, i, l, c + (size_t)l * G * E), 0);
    }
  }
  cr_assert_gt(made, 0, "the test needs temporaries");
  free(c);
  pl_temps_fini(&t);
  pl_policy_destroy(p);
}
