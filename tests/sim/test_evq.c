/* Event queue: (time, sequence) order, cancellation, conservation. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "sim/sim_error.h"
#include "sim/sim_evq.h"
#include "sim/sim_loop.h"

Test(evq, pops_in_time_order_and_same_time_in_scheduling_order) {
  sim_evq q;
  cr_assert_eq(sim_evq_init(&q, 4), SIM_OK);
  /* many events, several at equal times: order must be (t, seq) */
  unsigned s = 7;
  for (int i = 0; i < 5000; i++) {
    s = s * 1103515245u + 12345u;
    cr_assert_eq(sim_evq_push(&q, (int64_t)((s >> 16) % 100), 0, 0, i, NULL), SIM_OK);
  }
  sim_event ev, prev = {-1, 0, 0, 0, 0};
  int n = 0;
  while (sim_evq_pop(&q, &ev)) {
    cr_assert(ev.t > prev.t || (ev.t == prev.t && ev.seq > prev.seq),
              "event (%lld,%llu) after (%lld,%llu)", (long long)ev.t,
              (unsigned long long)ev.seq, (long long)prev.t, (unsigned long long)prev.seq);
    prev = ev;
    n++;
  }
  cr_assert_eq(n, 5000);
  cr_assert_eq(sim_evq_check(&q), SIM_OK);
  sim_evq_fini(&q);
}

Test(evq, cancelled_events_never_run_and_are_counted) {
  sim_evq q;
  uint64_t id[100];
  cr_assert_eq(sim_evq_init(&q, 8), SIM_OK);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(sim_evq_push(&q, 1000 - i, 0, 0, i, &id[i]), SIM_OK);
  for (int i = 0; i < 100; i += 3)
    cr_assert_eq(sim_evq_cancel(&q, id[i]), SIM_OK);
  cr_assert_eq(sim_evq_pending(&q), 100 - 34);
  sim_event ev;
  int n = 0;
  while (sim_evq_pop(&q, &ev)) {
    cr_assert_neq(ev.arg % 3, 0, "cancelled event %lld ran", (long long)ev.arg);
    n++;
  }
  cr_assert_eq(n, 66);
  cr_assert_eq(q.scheduled, 100);
  cr_assert_eq(q.executed, 66);
  cr_assert_eq(q.cancelled, 34);
  cr_assert_eq(sim_evq_check(&q), SIM_OK);
  cr_assert_eq(sim_evq_cancel(&q, 12345), SIM_EINVAL, "an id never issued is refused");
  sim_evq_fini(&q);
}

Test(evq, refuses_negative_time) {
  sim_evq q;
  cr_assert_eq(sim_evq_init(&q, 1), SIM_OK);
  cr_assert_eq(sim_evq_push(&q, -1, 0, 0, 0, NULL), SIM_EINVAL);
  cr_assert_eq(q.scheduled, 0);
  sim_evq_fini(&q);
}

/* A model that reschedules itself a few times and records times. */
typedef struct ticker {
  int64_t seen[16];
  int n;
} ticker;

static int tick(sim_t *s, void *state, const sim_event *ev) {
  ticker *t = state;
  t->seen[t->n++] = s->now;
  if (ev->arg > 0)
    return sim_at(s, s->now + 10, ev->model, 0, ev->arg - 1, NULL);
  return SIM_OK;
}

Test(loop, dispatches_to_models_and_time_never_runs_backwards) {
  static const sim_model_ops ops = {"ticker", tick};
  sim_t s;
  ticker t = {{0}, 0};
  uint32_t id;
  cr_assert_eq(sim_init(&s), SIM_OK);
  cr_assert_eq(sim_add_model(&s, &ops, &t, &id), SIM_OK);
  cr_assert_eq(sim_at(&s, 5, id, 0, 3, NULL), SIM_OK);
  cr_assert_eq(sim_run(&s, INT64_MAX), SIM_OK);
  cr_assert_eq(t.n, 4);
  cr_assert_eq(t.seen[0], 5);
  cr_assert_eq(t.seen[3], 35);
  cr_assert_eq(sim_at(&s, 1, id, 0, 0, NULL), SIM_EINVAL, "scheduling in the past is refused");
  cr_assert_eq(s.q.scheduled, s.q.executed + s.q.cancelled);
  sim_fini(&s);
}
