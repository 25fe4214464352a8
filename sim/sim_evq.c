/*
 * sim_evq.c - 4-ary heap event queue with lazy cancellation (see sim_evq.h).
 */
#include "sim/sim_evq.h"

#include <string.h>

#include "sim/sim_error.h"

/* The heap starts 3 entries into a 128-byte aligned block, so children
 * 4i+1..4i+4 live at block offsets 4i+4..4i+7: one aligned 128-byte group. */
#define HEAP_OFFSET 3

static inline int before(const sim_event *a, const sim_event *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int grow(sim_evq *q, int64_t need) {
  int64_t cap = q->cap ? q->cap : 64;
  while (cap < need)
    cap *= 2;
  size_t bytes = (size_t)(cap + HEAP_OFFSET + 4) * sizeof(sim_event) + 128;
  void *raw = sim_malloc(bytes);
  if (!raw)
    return SIM_ENOMEM;
  uintptr_t p = ((uintptr_t)raw + 127) & ~(uintptr_t)127;
  sim_event *heap = (sim_event *)p + HEAP_OFFSET;
  if (q->size)
    memcpy(heap, q->heap, (size_t)q->size * sizeof(sim_event));
  sim_free(q->base);
  q->base = raw;
  q->heap = heap;
  q->cap = cap;
  return SIM_OK;
}

int sim_evq_init(sim_evq *q, int64_t initial_cap) {
  memset(q, 0, sizeof(*q));
  q->next_seq = 1;
  return grow(q, initial_cap > 0 ? initial_cap : 64);
}

void sim_evq_fini(sim_evq *q) {
  if (!q)
    return;
  sim_free(q->base);
  sim_free(q->cset);
  memset(q, 0, sizeof(*q));
}

int sim_evq_push(sim_evq *q, int64_t t, uint32_t model, uint32_t kind, int64_t arg,
                 uint64_t *id) {
  if (t < 0)
    return SIM_EINVAL;
  if (q->size == q->cap && grow(q, q->size + 1))
    return SIM_ENOMEM;
  sim_event ev = {t, q->next_seq++, model, kind, arg};
  sim_event *h = q->heap;
  int64_t i = q->size++;
  while (i > 0) {
    int64_t parent = (i - 1) >> 2;
    if (!before(&ev, &h[parent]))
      break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = ev;
  q->scheduled++;
  if (id)
    *id = ev.seq;
  return SIM_OK;
}

static void pop_root(sim_evq *q, sim_event *out) {
  sim_event *h = q->heap;
  *out = h[0];
  int64_t n = --q->size;
  if (n == 0)
    return;
  sim_event last = h[n];
  int64_t i = 0;
  for (;;) {
    int64_t c = 4 * i + 1;
    if (c >= n)
      break;
    int64_t best = c, end = c + 4 < n ? c + 4 : n;
    for (int64_t k = c + 1; k < end; k++)
      if (before(&h[k], &h[best]))
        best = k;
    if (!before(&h[best], &last))
      break;
    h[i] = h[best];
    i = best;
  }
  h[i] = last;
}

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

/* Removes seq from the cancelled set; 1 if it was there. */
static int cset_take(sim_evq *q, uint64_t seq) {
  uint64_t mask = (uint64_t)q->ccap - 1;
  uint64_t i = mix(seq) & mask;
  while (q->cset[i]) {
    if (q->cset[i] == seq) {
      /* backward-shift deletion keeps probe chains intact */
      uint64_t j = i;
      for (;;) {
        q->cset[i] = 0;
        for (;;) {
          j = (j + 1) & mask;
          if (!q->cset[j])
            goto removed;
          uint64_t home = mix(q->cset[j]) & mask;
          if ((i <= j) ? (i < home && home <= j) : (i < home || home <= j))
            continue;
          break;
        }
        q->cset[i] = q->cset[j];
        i = j;
      }
    removed:
      q->ccount--;
      return 1;
    }
    i = (i + 1) & mask;
  }
  return 0;
}

int sim_evq_pop(sim_evq *q, sim_event *ev) {
  while (q->size > 0) {
    pop_root(q, ev);
    if (q->ccount && cset_take(q, ev->seq)) {
      q->cancelled++;
      continue;
    }
    q->executed++;
    return 1;
  }
  return 0;
}

static int cset_insert(sim_evq *q, uint64_t seq) {
  if ((q->ccount + 1) * 2 > q->ccap) {
    int64_t ncap = q->ccap ? q->ccap * 2 : 64;
    uint64_t *nset = sim_calloc((size_t)ncap, sizeof(uint64_t));
    if (!nset)
      return SIM_ENOMEM;
    for (int64_t k = 0; k < q->ccap; k++) {
      uint64_t s = q->cset[k];
      if (!s)
        continue;
      uint64_t i = mix(s) & (uint64_t)(ncap - 1);
      while (nset[i])
        i = (i + 1) & (uint64_t)(ncap - 1);
      nset[i] = s;
    }
    sim_free(q->cset);
    q->cset = nset;
    q->ccap = ncap;
  }
  uint64_t mask = (uint64_t)q->ccap - 1, i = mix(seq) & mask;
  while (q->cset[i]) {
    if (q->cset[i] == seq)
      return SIM_OK; /* cancelled twice: once counts */
    i = (i + 1) & mask;
  }
  q->cset[i] = seq;
  q->ccount++;
  return SIM_OK;
}

int sim_evq_cancel(sim_evq *q, uint64_t id) {
  if (id == 0 || id >= q->next_seq)
    return SIM_EINVAL;
  return cset_insert(q, id);
}

int sim_evq_check(const sim_evq *q) {
  return q->scheduled == q->executed + q->cancelled + (uint64_t)q->size
             ? SIM_OK
             : SIM_EINVARIANT;
}
