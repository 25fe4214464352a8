/*
 * pl_placement.c - placement state of one layer: two sorted views kept in
 * step (expert -> GPUs, GPU -> experts), the static layout, and the diff
 * between two placements as a list of moves.
 */
#include "placement/pl_placement.h"

#include <string.h>

#include "placement/pl_error.h"

int pl_placement_init(pl_placement *p, int experts, int gpus, int slots) {
  if (!p || experts < 1 || gpus < 1 || slots < 1)
    return PL_EINVAL;
  if ((int64_t)gpus * slots < experts)
    return PL_ESLOTS;
  pl_placement t = {experts, gpus, slots, NULL, NULL, NULL, NULL};
  t.nrep = pl_calloc((size_t)experts, sizeof(int));
  t.rep = pl_calloc((size_t)experts * (size_t)gpus, sizeof(int));
  t.nhost = pl_calloc((size_t)gpus, sizeof(int));
  t.host = pl_calloc((size_t)gpus * (size_t)slots, sizeof(int));
  if (!t.nrep || !t.rep || !t.nhost || !t.host) {
    pl_placement_fini(&t);
    return PL_ENOMEM;
  }
  *p = t;
  return PL_OK;
}

void pl_placement_fini(pl_placement *p) {
  if (!p)
    return;
  pl_free(p->nrep);
  pl_free(p->rep);
  pl_free(p->nhost);
  pl_free(p->host);
  memset(p, 0, sizeof(*p));
}

static int same_dims(const pl_placement *a, const pl_placement *b) {
  return a->experts == b->experts && a->gpus == b->gpus && a->slots == b->slots;
}

int pl_placement_copy(pl_placement *dst, const pl_placement *src) {
  if (!dst || !src || !same_dims(dst, src))
    return PL_EINVAL;
  size_t E = (size_t)src->experts, G = (size_t)src->gpus, S = (size_t)src->slots;
  memcpy(dst->nrep, src->nrep, E * sizeof(int));
  memcpy(dst->nhost, src->nhost, G * sizeof(int));
  /* Only the live prefix of each row matters: copying just that keeps a
   * copy O(replicas) instead of O(E x G) (1 MB at 1,024 GPUs x 256). */
  for (size_t e = 0; e < E; e++)
    memcpy(dst->rep + e * G, src->rep + e * G, (size_t)src->nrep[e] * sizeof(int));
  for (size_t g = 0; g < G; g++)
    memcpy(dst->host + g * S, src->host + g * S, (size_t)src->nhost[g] * sizeof(int));
  return PL_OK;
}

void pl_placement_clear(pl_placement *p) {
  memset(p->nrep, 0, (size_t)p->experts * sizeof(int));
  memset(p->nhost, 0, (size_t)p->gpus * sizeof(int));
}

int pl_placement_equal(const pl_placement *a, const pl_placement *b) {
  if (!same_dims(a, b))
    return 0;
  for (int e = 0; e < a->experts; e++) {
    if (a->nrep[e] != b->nrep[e])
      return 0;
    if (memcmp(a->rep + (size_t)e * a->gpus, b->rep + (size_t)e * b->gpus,
               (size_t)a->nrep[e] * sizeof(int)))
      return 0;
  }
  return 1;
}

/* Index of v in sorted a[0..n), or -(insertion point) - 1. */
static int find_sorted(const int *a, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (a[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (lo < n && a[lo] == v) ? lo : -lo - 1;
}

static void insert_at(int *a, int n, int pos, int v) {
  memmove(a + pos + 1, a + pos, (size_t)(n - pos) * sizeof(int));
  a[pos] = v;
}

static void erase_at(int *a, int n, int pos) {
  memmove(a + pos, a + pos + 1, (size_t)(n - pos - 1) * sizeof(int));
}

int pl_placement_has(const pl_placement *p, int expert, int gpu) {
  if (expert < 0 || expert >= p->experts || gpu < 0 || gpu >= p->gpus)
    return 0;
  return find_sorted(p->rep + (size_t)expert * p->gpus, p->nrep[expert], gpu) >= 0;
}

int pl_placement_add(pl_placement *p, int expert, int gpu) {
  if (expert < 0 || expert >= p->experts || gpu < 0 || gpu >= p->gpus)
    return PL_ERANGE;
  int *rep = p->rep + (size_t)expert * p->gpus;
  int at = find_sorted(rep, p->nrep[expert], gpu);
  if (at >= 0)
    return PL_EEXIST;
  if (p->nhost[gpu] >= p->slots)
    return PL_EFULL;
  insert_at(rep, p->nrep[expert], -at - 1, gpu);
  p->nrep[expert]++;
  int *host = p->host + (size_t)gpu * p->slots;
  int hat = find_sorted(host, p->nhost[gpu], expert);
  insert_at(host, p->nhost[gpu], -hat - 1, expert);
  p->nhost[gpu]++;
  return PL_OK;
}

int pl_placement_remove(pl_placement *p, int expert, int gpu) {
  if (expert < 0 || expert >= p->experts || gpu < 0 || gpu >= p->gpus)
    return PL_ERANGE;
  int *rep = p->rep + (size_t)expert * p->gpus;
  int at = find_sorted(rep, p->nrep[expert], gpu);
  if (at < 0)
    return PL_ENOENT;
  erase_at(rep, p->nrep[expert], at);
  p->nrep[expert]--;
  int *host = p->host + (size_t)gpu * p->slots;
  int hat = find_sorted(host, p->nhost[gpu], expert);
  erase_at(host, p->nhost[gpu], hat);
  p->nhost[gpu]--;
  return PL_OK;
}

int pl_placement_check(const pl_placement *p) {
  int64_t total_rep = 0, total_host = 0;
  for (int e = 0; e < p->experts; e++) {
    const int *rep = p->rep + (size_t)e * p->gpus;
    if (p->nrep[e] < 1 || p->nrep[e] > p->gpus)
      return PL_EINVARIANT;
    for (int i = 0; i < p->nrep[e]; i++) {
      if (rep[i] < 0 || rep[i] >= p->gpus || (i && rep[i] <= rep[i - 1]))
        return PL_EINVARIANT;
      const int *host = p->host + (size_t)rep[i] * p->slots;
      if (find_sorted(host, p->nhost[rep[i]], e) < 0)
        return PL_EINVARIANT;
    }
    total_rep += p->nrep[e];
  }
  for (int g = 0; g < p->gpus; g++) {
    if (p->nhost[g] < 0 || p->nhost[g] > p->slots)
      return PL_EINVARIANT;
    const int *host = p->host + (size_t)g * p->slots;
    for (int j = 1; j < p->nhost[g]; j++)
      if (host[j] <= host[j - 1])
        return PL_EINVARIANT;
    total_host += p->nhost[g];
  }
  return total_rep == total_host ? PL_OK : PL_EINVARIANT;
}

int pl_placement_static(pl_placement *p) {
  int E = p->experts, G = p->gpus;
  int need = (E + G - 1) / G;
  if (p->slots < need)
    return PL_ESLOTS;
  pl_placement_clear(p);
  if (G <= E) {
    for (int e = 0; e < E; e++) {
      int rc = pl_placement_add(p, e, (int)((int64_t)e * G / E));
      if (rc)
        return rc;
    }
  } else {
    for (int g = 0; g < G; g++) {
      int rc = pl_placement_add(p, g % E, g);
      if (rc)
        return rc;
    }
  }
  return PL_OK;
}

/* Old replica to copy a new replica on `to` from: one on the same node if
 * there is one (the intra-node link is several times the NIC), else any;
 * among those, the one that sends the fewest copies of this diff so far
 * (`sent`, per GPU), ties to the lowest GPU id. Spreading the copies over
 * the old replicas matters at scale: a hot expert replicated to 50 GPUs from
 * one owner puts 50 copies on that owner's NIC, while its 16 old replicas
 * can each send 3 or 4; the engines charge every move on its `from` link. */
static int copy_source(const int *old, int nold, int to, int gpus_per_node, const int *sent) {
  int best = -1, near = 0;
  for (int i = 0; i < nold; i++) {
    int g = old[i], same = g / gpus_per_node == to / gpus_per_node;
    if (best < 0 || same > near || (same == near && sent[g] < sent[best])) {
      best = g;
      near = same;
    }
  }
  return best;
}

/* Appends one move. Written field by field over zeroed bytes, so the
 * struct's padding is zero too and equal plans are equal byte for byte
 * (callers memcmp them; a struct copy may carry indeterminate padding). */
static void emit(pl_move *moves, int *n, int layer, int expert, int from, int to,
                 pl_move_kind kind, int64_t bytes) {
  if (moves) {
    pl_move *m = &moves[*n];
    memset(m, 0, sizeof(*m));
    m->layer = layer;
    m->expert = expert;
    m->from = from;
    m->to = to;
    m->kind = kind;
    m->bytes = bytes;
  }
  (*n)++;
}

int pl_placement_diff(const pl_placement *old, const pl_placement *new_,
                      int layer, int gpus_per_node, int64_t expert_bytes,
                      pl_move *moves, int *nmoves) {
  if (!old || !new_ || !nmoves || !same_dims(old, new_) || gpus_per_node < 1)
    return PL_EINVAL;
  int G = old->gpus, n = 0;
  int *add = pl_malloc((size_t)G * 3 * sizeof(int)), *rem = add + G, *sent = rem + G;
  if (!add)
    return PL_ENOMEM;
  memset(sent, 0, (size_t)G * sizeof(int));
  for (int e = 0; e < old->experts; e++) {
    const int *o = old->rep + (size_t)e * G, *w = new_->rep + (size_t)e * G;
    int no = old->nrep[e], nw = new_->nrep[e], nadd = 0, nrem = 0;
    if (no < 1 || nw < 1) {
      pl_free(add);
      return PL_EINVARIANT;
    }
    /* Sorted set differences, walked in step. */
    int i = 0, j = 0;
    while (i < no || j < nw) {
      if (j >= nw || (i < no && o[i] < w[j]))
        rem[nrem++] = o[i++];
      else if (i >= no || w[j] < o[i])
        add[nadd++] = w[j++];
      else
        i++, j++;
    }
    int pairs = nadd < nrem ? nadd : nrem;
    for (int k = 0; k < pairs; k++)
      emit(moves, &n, layer, e, rem[k], add[k], PL_MOVE_MIGRATE, expert_bytes);
    for (int k = pairs; k < nadd; k++) {
      int src = copy_source(o, no, add[k], gpus_per_node, sent);
      sent[src]++;
      emit(moves, &n, layer, e, src, add[k], PL_MOVE_REPLICATE, expert_bytes);
    }
    for (int k = pairs; k < nrem; k++)
      emit(moves, &n, layer, e, rem[k], -1, PL_MOVE_DROP, 0);
  }
  pl_free(add);
  *nmoves = n;
  return PL_OK;
}

/* Removals first, then additions: a plan is a simultaneous change, so a GPU
 * may give up one expert's slot to another in the same plan. */
int pl_placement_apply(pl_placement *p, const pl_move *moves, int nmoves) {
  for (int k = 0; k < nmoves; k++) {
    const pl_move *m = &moves[k];
    if (m->kind == PL_MOVE_DROP || m->kind == PL_MOVE_MIGRATE) {
      int rc = pl_placement_remove(p, m->expert, m->from);
      if (rc)
        return rc;
    } else if (m->kind != PL_MOVE_REPLICATE) {
      return PL_EINVAL;
    }
  }
  for (int k = 0; k < nmoves; k++) {
    const pl_move *m = &moves[k];
    if (m->kind == PL_MOVE_REPLICATE || m->kind == PL_MOVE_MIGRATE) {
      int rc = pl_placement_add(p, m->expert, m->to);
      if (rc)
        return rc;
    }
  }
  return pl_placement_check(p);
}
