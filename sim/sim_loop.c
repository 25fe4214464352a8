/*
 * sim_loop.c - the loop (see sim_loop.h). It only pops, sets now,
 * dispatches and counts; the queue keeps the counters.
 */
#include "sim/sim_loop.h"

#include <string.h>

#include "sim/sim_error.h"

int sim_init(sim_t *s) {
  memset(s, 0, sizeof(*s));
  return sim_evq_init(&s->q, 1024);
}

void sim_fini(sim_t *s) {
  if (!s)
    return;
  sim_evq_fini(&s->q);
  memset(s, 0, sizeof(*s));
}

int sim_add_model(sim_t *s, const sim_model_ops *ops, void *state, uint32_t *id) {
  if (!ops || !ops->handle || s->nmodels >= SIM_MAX_MODELS)
    return SIM_EINVAL;
  s->ops[s->nmodels] = ops;
  s->state[s->nmodels] = state;
  if (id)
    *id = (uint32_t)s->nmodels;
  s->nmodels++;
  return SIM_OK;
}

int sim_at(sim_t *s, int64_t t, uint32_t model, uint32_t kind, int64_t arg, uint64_t *id) {
  if (t < s->now || model >= (uint32_t)s->nmodels)
    return SIM_EINVAL;
  if (t > SIM_TIME_MAX)
    return SIM_ETIME;
  return sim_evq_push(&s->q, t, model, kind, arg, id);
}

int sim_cancel(sim_t *s, uint64_t id) { return sim_evq_cancel(&s->q, id); }

int sim_run(sim_t *s, int64_t until) {
  sim_event ev;
  while (s->q.size > 0) {
    if (s->q.heap[0].t > until)
      break;
    if (!sim_evq_pop(&s->q, &ev))
      break;
    if (ev.t < s->now)
      return SIM_EINVARIANT;
    s->now = ev.t;
    int rc = s->ops[ev.model]->handle(s, s->state[ev.model], &ev);
    if (rc < 0)
      return rc;
  }
  return SIM_OK;
}

int sim_step(sim_t *s) {
  sim_event ev;
  if (!sim_evq_pop(&s->q, &ev))
    return 0;
  if (ev.t < s->now)
    return SIM_EINVARIANT;
  s->now = ev.t;
  int rc = s->ops[ev.model]->handle(s, s->state[ev.model], &ev);
  return rc < 0 ? rc : 1;
}
