/*
 * sim_evq.h - the simulator's event queue.
 *
 * Events are ordered by (time in integer nanoseconds, sequence number): the
 * sequence number is assigned at scheduling and strictly increases, so two
 * events at the same time run in the order they were scheduled, never by
 * address, and every run is deterministic.
 *
 * Implementation: an implicit 4-ary min-heap of 16-byte entries (time, and
 * sequence number << 24 | payload slot, compared as one 128-bit key); the
 * payload (model, kind, arg) sits in a side array read once per pop. The
 * array is offset so each group of 4 children is one aligned cache line: a
 * 4-ary heap has half the depth of a binary one and each level of a
 * sift-down touches one line. Pop moves the hole to a leaf along the smallest
 * children, then lets the last element rise (bottom-up heapsort). Limits:
 * 2^24 pending events, 2^40 events scheduled in a queue's life, times
 * 0..SIM_TIME_MAX.
 *
 * Cancellation is lazy: sim_evq_cancel records the event's sequence number
 * in a small open-addressing set; sim_evq_pop discards cancelled entries when
 * they surface. While nothing is cancelled the set is never consulted.
 * Invariant: scheduled == executed + cancelled + pending at all times
 * (sim_evq_check); only a pending event may be cancelled.
 */
#ifndef FLEXMOE_SIM_EVQ_H
#define FLEXMOE_SIM_EVQ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The simulator's clock runs from 0 to 2^62 ns (146 years). Anything later
 * is an error (SIM_ETIME), never a wrapped or saturated time: a completion
 * time plus a latency (at most 1 s) then still fits an int64. */
#define SIM_TIME_MAX ((int64_t)1 << 62)

typedef struct sim_event {
  int64_t t;    /* ns */
  uint64_t seq; /* 1, 2, ... in scheduling order; also the event's id */
  uint32_t model;
  uint32_t kind;
  int64_t arg;
} sim_event;

/* A heap entry: 16 bytes, so a group of 4 children is one cache line. */
typedef struct sim_evq_entry {
  int64_t t;
  uint64_t k; /* seq << 24 | payload slot */
} sim_evq_entry;

typedef struct sim_evq_slot {
  uint32_t model, kind;
  int64_t arg;
} sim_evq_slot;

typedef struct sim_evq {
  void *base;           /* allocation */
  sim_evq_entry *heap;  /* heap[0] is the root; children of i: 4i+1..4i+4 */
  sim_evq_slot *slots;  /* payloads, [cap] */
  uint32_t *freel;      /* free payload slots */
  int64_t nfree;
  int64_t size, cap;
  uint64_t next_seq;
  uint64_t scheduled, executed, cancelled;
  /* cancelled-but-pending sequence numbers (open addressing, 0 = empty) */
  uint64_t *cset;
  int64_t ccap, ccount;
} sim_evq;

int sim_evq_init(sim_evq *q, int64_t initial_cap);
void sim_evq_fini(sim_evq *q); /* accepts NULL and zeroed */

/* Schedules an event; its id (the sequence number) in *id if non-NULL.
 * SIM_EINVAL for t < 0, SIM_ENOMEM. */
int sim_evq_push(sim_evq *q, int64_t t, uint32_t model, uint32_t kind, int64_t arg,
                 uint64_t *id);

/* Removes the earliest live event into *ev: 1 if one was returned, 0 if the
 * queue holds no live event. */
int sim_evq_pop(sim_evq *q, sim_event *ev);

/* Cancels pending event `id`. SIM_EINVAL if id was never issued. */
int sim_evq_cancel(sim_evq *q, uint64_t id);

/* Live events pending. */
static inline int64_t sim_evq_pending(const sim_evq *q) { return q->size - q->ccount; }

/* Time of the earliest pending entry (it may be a cancelled one: a lower
 * bound of the next live event), INT64_MAX when none. */
static inline int64_t sim_evq_peek_time(const sim_evq *q) {
  return q->size > 0 ? q->heap[0].t : INT64_MAX;
}

/* 0 when scheduled == executed + cancelled + pending, SIM_EINVARIANT else. */
int sim_evq_check(const sim_evq *q);

#ifdef __cplusplus
}
#endif
#endif
