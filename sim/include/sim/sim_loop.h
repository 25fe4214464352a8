/*
 * sim_loop.h - the simulation loop: pop, set now, dispatch, count.
 *
 * A simulation owns an event queue and a table of models. A model is an ops
 * table (name, handle) plus its own state; the loop knows nothing about
 * what models do. There is no global simulator state: every call takes the
 * sim_t explicitly. Time is integer nanoseconds and never runs backwards
 * (an event scheduled in the past is refused; the loop checks monotonicity).
 */
#ifndef FLEXMOE_SIM_LOOP_H
#define FLEXMOE_SIM_LOOP_H

#include <stdint.h>

#include "sim/sim_evq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_MAX_MODELS 8

typedef struct sim sim_t;

typedef struct sim_model_ops {
  const char *name;
  /* Handles one event addressed to this model; a negative return stops the
   * loop with that code. */
  int (*handle)(sim_t *s, void *state, const sim_event *ev);
} sim_model_ops;

struct sim {
  sim_evq q;
  int64_t now;
  int nmodels;
  const sim_model_ops *ops[SIM_MAX_MODELS];
  void *state[SIM_MAX_MODELS];
};

int sim_init(sim_t *s);
void sim_fini(sim_t *s);
/* Registers a model; its id (the `model` of its events) in *id. */
int sim_add_model(sim_t *s, const sim_model_ops *ops, void *state, uint32_t *id);
/* Schedules an event at absolute time t >= now (SIM_EINVAL otherwise);
 * SIM_ETIME when t > SIM_TIME_MAX. */
int sim_at(sim_t *s, int64_t t, uint32_t model, uint32_t kind, int64_t arg, uint64_t *id);
int sim_cancel(sim_t *s, uint64_t id);
/* Runs until the queue is empty or the next event is after `until`
 * (INT64_MAX: to the end). Returns 0 or the first negative handler code;
 * SIM_EINVARIANT if time would run backwards. */
int sim_run(sim_t *s, int64_t until);
/* Processes one event: 1 if one ran, 0 if the queue is empty, or a
 * negative code. */
int sim_step(sim_t *s);

#ifdef __cplusplus
}
#endif
#endif
