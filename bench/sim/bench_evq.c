/*
 * bench_evq.c - event queue throughput: sim_evq (4-ary heap, inline payload,
 * lazy cancellation) against a plain binary heap of the same 32-byte events,
 * in the same process, at 1k / 100k / 1M pending events.
 *
 * Hold model (the classic priority-queue benchmark): N events pending; each
 * operation pops the earliest and schedules a new one at its time plus a
 * random increment (uniform 0..1 ms), so N stays constant. Warm-up of N
 * operations, then timed repetitions; events/s = operations / second (one
 * operation = one pop + one push). Correctness in the same run: both queues
 * pop exactly the same (time, sequence) stream, checked by a checksum.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flexmoe_config.h"
#include "sim/sim_evq.h"

typedef struct bh_event {
  int64_t t;
  uint64_t seq;
  uint32_t model, kind;
  int64_t arg;
} bh_event;

typedef struct bheap {
  bh_event *h;
  int64_t n, cap;
  uint64_t seq;
} bheap;

static inline int bh_less(const bh_event *a, const bh_event *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void bh_push(bheap *q, int64_t t, int64_t arg) {
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 1024;
    q->h = realloc(q->h, (size_t)q->cap * sizeof(bh_event));
    if (!q->h)
      abort();
  }
  bh_event e = {t, ++q->seq, 0, 0, arg};
  int64_t i = q->n++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!bh_less(&e, &q->h[p]))
      break;
    q->h[i] = q->h[p];
    i = p;
  }
  q->h[i] = e;
}

static void bh_pop(bheap *q, bh_event *out) {
  *out = q->h[0];
  bh_event last = q->h[--q->n];
  int64_t i = 0, n = q->n;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && bh_less(&q->h[c + 1], &q->h[c]))
      c++;
    if (!bh_less(&q->h[c], &last))
      break;
    q->h[i] = q->h[c];
    i = c;
  }
  if (n)
    q->h[i] = last;
}

static uint64_t rng;
static inline uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double run_evq(int64_t n, int64_t ops, uint64_t *sum) {
  sim_evq q;
  if (sim_evq_init(&q, n))
    abort();
  rng = 88172645463325252ULL;
  for (int64_t i = 0; i < n; i++)
    sim_evq_push(&q, (int64_t)(next_rand() % 1000000), 0, 0, i, NULL);
  sim_event e;
  for (int64_t i = 0; i < n; i++) { /* warm-up */
    sim_evq_pop(&q, &e);
    sim_evq_push(&q, e.t + (int64_t)(next_rand() % 1000000), 0, 0, i, NULL);
  }
  uint64_t s = 0;
  double t0 = now_s();
  for (int64_t i = 0; i < ops; i++) {
    sim_evq_pop(&q, &e);
    s += (uint64_t)e.t ^ e.seq;
    sim_evq_push(&q, e.t + (int64_t)(next_rand() % 1000000), 0, 0, i, NULL);
  }
  double dt = now_s() - t0;
  *sum = s;
  sim_evq_fini(&q);
  return (double)ops / dt;
}

static double run_bh(int64_t n, int64_t ops, uint64_t *sum) {
  bheap q = {0};
  rng = 88172645463325252ULL;
  for (int64_t i = 0; i < n; i++)
    bh_push(&q, (int64_t)(next_rand() % 1000000), i);
  bh_event e;
  for (int64_t i = 0; i < n; i++) {
    bh_pop(&q, &e);
    bh_push(&q, e.t + (int64_t)(next_rand() % 1000000), i);
  }
  uint64_t s = 0;
  double t0 = now_s();
  for (int64_t i = 0; i < ops; i++) {
    bh_pop(&q, &e);
    s += (uint64_t)e.t ^ e.seq;
    bh_push(&q, e.t + (int64_t)(next_rand() % 1000000), i);
  }
  double dt = now_s() - t0;
  *sum = s;
  free(q.h);
  return (double)ops / dt;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 3;
  printf("# bench_evq: flexmoe %s, event queue hold model (pop + push at t + U(0, 1 ms)), %d repetitions "
         "(best kept)\n", FLEXMOE_VERSION, reps);
  printf("# peer: plain binary heap (same events, same (time, seq) order) in this process\n");
  printf("%10s %12s %16s %16s %8s\n", "pending", "ops", "sim_evq_Mev/s", "binheap_Mev/s",
         "ratio");
  int64_t sizes[] = {1000, 100000, 1000000};
  int fail = 0;
  for (int k = 0; k < 3; k++) {
    int64_t n = sizes[k], ops = 3000000;
    double best_q = 0, best_b = 0;
    for (int r = 0; r < reps; r++) {
      uint64_t s1, s2;
      double q = run_evq(n, ops, &s1), b = run_bh(n, ops, &s2);
      if (s1 != s2) {
        fprintf(stderr, "bench_evq: the two queues popped different streams at %lld\n",
                (long long)n);
        fail = 1;
      }
      if (q > best_q)
        best_q = q;
      if (b > best_b)
        best_b = b;
    }
    printf("%10lld %12lld %16.2f %16.2f %7.2fx\n", (long long)n, (long long)ops, best_q / 1e6,
           best_b / 1e6, best_q / best_b);
  }
  return fail;
}
