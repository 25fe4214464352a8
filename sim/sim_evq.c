/*
 * sim_evq.c - 4-ary heap event queue with lazy cancellation (see sim_evq.h).
 */
#include "sim/sim_evq.h"

#include <string.h>

#include "sim/sim_error.h"

/* The heap starts 3 entries into a 64-byte aligned block, so the children
 * 4i+1..4i+4 of entry i live at block offsets 4i+4..4i+7: one cache line. */
#define HEAP_OFFSET 3
#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

__extension__ typedef unsigned __int128 key128;

/* (t, seq) as one 128-bit number: t >= 0 in the high half, seq above the
 * slot in the low half; seq is unique, so the slot never decides. */
static inline key128 key(const sim_evq_entry *e) {
  return ((key128)(uint64_t)e->t << 64) | e->k;
}

static int grow(sim_evq *q, int64_t need) {
  int64_t cap = q->cap ? q->cap : 64;
  while (cap < need)
    cap *= 2;
  if (cap > (int64_t)SLOT_MASK + 1)
    cap = (int64_t)SLOT_MASK + 1;
  if (cap < need)
    return SIM_ENOMEM;
  size_t bytes = (size_t)(cap + HEAP_OFFSET + 4) * sizeof(sim_evq_entry) + 64;
  void *raw = sim_malloc(bytes);
  sim_evq_slot *slots = sim_malloc((size_t)cap * sizeof(sim_evq_slot));
  uint32_t *freel = sim_malloc((size_t)cap * sizeof(uint32_t));
  if (!raw || !slots || !freel) {
    sim_free(raw);
    sim_free(slots);
    sim_free(freel);
    return SIM_ENOMEM;
  }
  uintptr_t p = ((uintptr_t)raw + 63) & ~(uintptr_t)63;
  sim_evq_entry *heap = (sim_evq_entry *)p + HEAP_OFFSET;
  if (q->size) {
    memcpy(heap, q->heap, (size_t)q->size * sizeof(sim_evq_entry));
    memcpy(slots, q->slots, (size_t)q->cap * sizeof(sim_evq_slot));
  }
  /* free slots: the old free list, then the new ones (LIFO reuse) */
  int64_t nf = 0;
  for (int64_t s = cap - 1; s >= q->cap; s--)
    freel[nf++] = (uint32_t)s;
  for (int64_t i = 0; i < q->nfree; i++)
    freel[nf++] = q->freel[i];
  sim_free(q->base);
  sim_free(q->slots);
  sim_free(q->freel);
  q->base = raw;
  q->heap = heap;
  q->slots = slots;
  q->freel = freel;
  q->nfree = nf;
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
  sim_free(q->slots);
  sim_free(q->freel);
  sim_free(q->cset);
  memset(q, 0, sizeof(*q));
}

int sim_evq_push(sim_evq *q, int64_t t, uint32_t model, uint32_t kind, int64_t arg,
                 uint64_t *id) {
  if (t < 0 || q->next_seq >> (64 - SLOT_BITS))
    return SIM_EINVAL;
  if (q->size == q->cap && grow(q, q->size + 1))
    return SIM_ENOMEM;
  uint32_t slot = q->freel[--q->nfree];
  q->slots[slot].model = model;
  q->slots[slot].kind = kind;
  q->slots[slot].arg = arg;
  uint64_t seq = q->next_seq++;
  sim_evq_entry ev = {t, (seq << SLOT_BITS) | slot};
  key128 k = key(&ev);
  sim_evq_entry *h = q->heap;
  int64_t i = q->size++;
  while (i > 0) {
    int64_t parent = (i - 1) >> 2;
    if (k >= key(&h[parent]))
      break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = ev;
  q->scheduled++;
  if (id)
    *id = seq;
  return SIM_OK;
}

/* Removes the root: the hole goes down to a leaf along the smallest
 * children (3 comparisons per level, none against the moved element), then
 * the last element rises from there - it usually belongs near the bottom. */
static void pop_root(sim_evq *q, sim_event *out) {
  sim_evq_entry *h = q->heap;
  const sim_evq_slot *sl = &q->slots[h[0].k & SLOT_MASK];
  out->t = h[0].t;
  out->seq = h[0].k >> SLOT_BITS;
  out->model = sl->model;
  out->kind = sl->kind;
  out->arg = sl->arg;
  q->freel[q->nfree++] = (uint32_t)(h[0].k & SLOT_MASK);
  int64_t n = --q->size;
  if (n == 0)
    return;
  sim_evq_entry last = h[n];
  key128 lk = key(&last);
  int64_t i = 0;
  for (;;) {
    int64_t c = 4 * i + 1;
    if (c >= n)
      break;
    int64_t best = c, end = c + 4 < n ? c + 4 : n;
    /* the next level is one of the 4 children's groups: fetch them while
     * this level's comparisons run (they are 4 lines of 64 bytes) */
    if (4 * c + 16 < n) {
      __builtin_prefetch(&h[4 * c + 1]);
      __builtin_prefetch(&h[4 * c + 5]);
      __builtin_prefetch(&h[4 * c + 9]);
      __builtin_prefetch(&h[4 * c + 13]);
    }
    key128 bk = key(&h[c]);
    for (int64_t j = c + 1; j < end; j++) {
      key128 kj = key(&h[j]);
      if (kj < bk) {
        bk = kj;
        best = j;
      }
    }
    h[i] = h[best];
    i = best;
  }
  while (i > 0) {
    int64_t parent = (i - 1) >> 2;
    if (lk >= key(&h[parent]))
      break;
    h[i] = h[parent];
    i = parent;
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
