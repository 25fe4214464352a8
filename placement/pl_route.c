/*
 * pl_route.c - locality-first split of each source's tokens over an
 * expert's replicas (see pl_route.h for the rule).
 */
#include "placement/pl_route.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

#include "placement/pl_error.h"
#include "pl_internal.h"

int pl_routing_init(pl_routing *r, int gpus, int experts, int with_traffic) {
  if (!r || gpus < 1 || experts < 1)
    return PL_EINVAL;
  pl_routing t = {.gpus = gpus, .experts = experts, .capacity = -1, .gpus_per_node = 1};
  t.load = pl_calloc((size_t)gpus * (size_t)experts, sizeof(int64_t));
  t.gpu_load = pl_calloc((size_t)gpus, sizeof(int64_t));
  t.hose = pl_calloc(4 * (size_t)gpus, sizeof(int64_t));
  t.acc = pl_calloc(2 * (size_t)experts * ((size_t)gpus + 1), sizeof(int64_t));
  t.cap = pl_calloc((size_t)gpus, sizeof(int64_t));
  t.pad_hose = pl_calloc(4 * (size_t)gpus, sizeof(int64_t));
  if (with_traffic)
    t.traffic = pl_calloc((size_t)gpus * (size_t)gpus, sizeof(int64_t));
  if (!t.load || !t.gpu_load || !t.hose || !t.acc || !t.cap || !t.pad_hose ||
      (with_traffic && !t.traffic)) {
    pl_routing_fini(&t);
    return PL_ENOMEM;
  }
  for (int g = 0; g < gpus; g++)
    t.cap[g] = -1;
  *r = t;
  return PL_OK;
}

void pl_routing_fini(pl_routing *r) {
  if (!r)
    return;
  pl_free(r->load);
  pl_free(r->gpu_load);
  pl_free(r->traffic);
  pl_free(r->hose);
  pl_free(r->acc);
  pl_free(r->cap);
  pl_free(r->pad_load);
  pl_free(r->pad_hose);
  memset(r, 0, sizeof(*r));
}

/* First index in sorted a[0..n) with a[i] >= v. */
static int lower_bound(const int *a, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (a[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The token slots a routing delivers for (src, e): the real ones within
 * src's capacity (cap NULL: all of them), or with pad set src's whole
 * padded buffer cap[src]. */
typedef struct slots_view {
  const int64_t *counts;
  const int64_t *cap;
  int pad;
  int experts;
} slots_view;

static int64_t slots_of(const slots_view *v, int src, int e) {
  if (v->pad)
    return v->cap[src];
  int64_t t = v->counts[(size_t)src * v->experts + e];
  return v->cap && t > v->cap[src] ? v->cap[src] : t;
}

/* Where delivered slots are added up: the real routing (r's load,
 * gpu_load, hose, traffic) or the padded one (pad_load, pad_hose). A NULL
 * array is not kept. */
typedef struct sink {
  int64_t *load, *gpu_load, *hose, *traffic;
} sink;

/* The replicas of e that serve src's slots, the locality rule of
 * pl_route.h: rep[*lo .. *hi) of e's ascending replica list (the one on src
 * alone when there is one). Returns 1 when they lie on other nodes. */
static int serving(const pl_placement *p, int gpn, int src, int e, int *lo, int *hi) {
  const int *rep = p->rep + (size_t)e * p->gpus;
  int n = p->nrep[e], node_lo = (src / gpn) * gpn;
  *lo = lower_bound(rep, n, node_lo);
  *hi = lower_bound(rep, n, node_lo + gpn);
  int self = lower_bound(rep + *lo, *hi - *lo, src) + *lo;
  if (self < *hi && rep[self] == src) {
    *lo = self;
    *hi = self + 1;
    return 0;
  }
  if (*hi == *lo) { /* no replica on this node: all replicas share */
    *lo = 0;
    *hi = n;
    return 1;
  }
  return 0;
}

/* Replica i's share (0 <= i < k) of `tokens` split evenly over k replicas
 * for source src: the remainder goes one each to indices src mod k, ... */
static int64_t share_of(int64_t tokens, int k, int i, int src) {
  return tokens / k + (((i - src % k + k) % k) < tokens % k ? 1 : 0);
}

/* Gives `tokens` from src to replica GPU dst of expert e. inter: dst is on
 * another node than src. */
static void deliver(const sink *s, int G, int E, int src, int dst, int inter, int e,
                    int64_t tokens) {
  s->load[(size_t)dst * E + e] += tokens;
  if (s->gpu_load)
    s->gpu_load[dst] += tokens;
  if (dst != src) {
    if (s->hose) {
      s->hose[2 * (size_t)G * (size_t)inter + (size_t)src] += tokens;
      s->hose[2 * (size_t)G * (size_t)inter + (size_t)G + (size_t)dst] += tokens;
    }
    if (s->traffic)
      s->traffic[(size_t)src * (size_t)G + (size_t)dst] += tokens;
  }
}

/* The general loop: every (src, e) share by share. O(sum over (src, e) of
 * the replicas sharing it). */
static void route_each(const pl_placement *p, int gpn, const slots_view *v, const sink *s) {
  int G = p->gpus, E = p->experts;
  for (int src = 0; src < G; src++)
    for (int e = 0; e < E; e++) {
      int64_t tokens = slots_of(v, src, e);
      if (tokens == 0)
        continue;
      const int *rep = p->rep + (size_t)e * G;
      int lo, hi;
      int inter = serving(p, gpn, src, e, &lo, &hi);
      int k = hi - lo;
      for (int i = 0; i < k; i++) {
        int64_t share = share_of(tokens, k, i, src);
        if (share)
          deliver(s, G, E, src, rep[lo + i], inter, e, share);
      }
    }
}

/*
 * The same result as route_each without the matrix (s->traffic unused, s->hose
 * needed), in O(G E + sum of replicas) - with data-parallel layouts at 1,024
 * GPUs (16 or more replicas per expert, mostly on other nodes) route_each
 * made 1M deliveries per layer. An even split hands `base` to a contiguous
 * range of e's replica list and one more token to a cyclic sub-range of it;
 * both are range additions, recorded in O(1) in a difference array per
 * expert (acc: one for intra-node shares, one for inter-node shares, so the
 * per-GPU in sums stay split) and summed once per expert at the end.
 * Integer arithmetic: bit-identical to delivering share by share.
 */
/* An even split of t over k (>= 1) parts: base = t / k, *rem = t % k. The
 * divisor is the same for many sources (an expert's replica count, or its
 * replicas on one node), so its reciprocal m = split_magic(k) is taken once
 * and t / k, for t < 2^32, is the high half of m x t (Lemire, Kaser and
 * Kurz, "Faster remainder by direct computation", 2019: exact for every
 * 32-bit t and k >= 2); k = 1 and larger t divide. */
static inline uint64_t split_magic(int k) { return k > 1 ? UINT64_MAX / (uint64_t)k + 1 : 0; }
static inline int64_t split_even(int64_t t, int k, uint64_t m, int64_t *rem) {
  if (k == 1) {
    *rem = 0;
    return t;
  }
  if (t <= (int64_t)UINT32_MAX) {
    uint64_t q = (uint64_t)(((unsigned __int128)m * (uint64_t)t) >> 64);
    *rem = t - (int64_t)q * k;
    return (int64_t)q;
  }
  *rem = t % k;
  return t / k;
}

/* One source's remainder (0 <= rem < k): one more token to the rem
 * replicas lo + a, ... cyclically in lo..lo+k-1, a = src mod k (0 <= a <
 * k), recorded in difference array d. A range that wraps past the end adds
 * its wrapped part's +1 at lo and -1 at lo + k: those two are counted in
 * *wraps for the caller to add once. Without branches (whether a range
 * wraps is a coin flip, mispredicted half the time): rem = 0 adds and
 * takes one at lo + a. */
static inline void split_rem_at(int64_t *d, int lo, int k, int a, int64_t rem, int64_t *wraps) {
  int64_t end = a + rem, w = end > k;
  d[lo + a] += 1;
  *wraps += w;
  d[lo + end - (w ? k : 0)] -= 1;
}

/* src mod k (k >= 1) for the first source of a node; the node's next
 * sources step it by one (next_mod). */
static inline int first_mod(int src, int k, uint64_t m) {
  int64_t a;
  split_even(src, k, m, &a);
  return (int)a;
}
static inline int next_mod(int a, int k) { return a + 1 == k ? 0 : a + 1; }

/* What route_sums_impl reads for (src, e): the real counts (dropless),
 * the real counts within src's capacity, or src's whole padded buffer. */
enum { SLOTS_REAL = 0, SLOTS_CAPPED = 1, SLOTS_PADDED = 2 };

/* Inlined into its callers (route_sums_real, route_sums_capped,
 * route_sums_padded) so that each is compiled for its own sink and slots:
 * the dropless routing of every run must not pay the others' generality.
 * Each source's rotation (src mod k) steps by one from the node's first
 * source instead of a division per source; a split's wrapped remainder
 * range adds its +1 at the range start and -1 at its end once per (node,
 * expert). Integer sums in any order: the same bits as share by share. */
static inline __attribute__((always_inline)) void
route_sums_impl(const pl_placement *p, int gpn, const slots_view *v, int64_t *acc,
                const sink *s, int mode) {
  int G = p->gpus, E = p->experts, padded = mode == SLOTS_PADDED;
  size_t W = (size_t)G + 1;
  int64_t *dI = acc, *dX = acc + (size_t)E * W;
  int64_t *io = s->hose, *ii = s->hose + G, *xo = s->hose + 2 * (size_t)G,
          *xi = s->hose + 3 * (size_t)G;
  const int64_t *counts = v->counts, *cap = v->cap;
  /* node by node, so each (node, expert) locates its replicas once: with a
   * cursor per expert (nodes ascend, and so do an expert's replicas: at most
   * one step per replica and node) when E fits the stack array, else by
   * binary search */
  enum { CURSORS = 1024 };
  int cur[CURSORS];
  uint64_t mall[CURSORS]; /* split_magic(nrep[e]) */
  size_t row[CURSORS];    /* where e's difference arrays start in dI and dX */
  int cursors = E <= CURSORS;
  /* e's difference arrays (nrep[e] + 1 each): packed one after another when
   * the cursors fit (a few KiB that stay in cache, where rows G + 1 apart
   * spread the same writes over 2 E pages), else at e x (G + 1) */
  size_t used = 0;
  for (int e = 0; cursors && e < E; e++) {
    cur[e] = 0;
    mall[e] = split_magic(p->nrep[e]);
    row[e] = used;
    used += (size_t)p->nrep[e] + 1;
  }
  if (cursors) {
    memset(dI, 0, used * sizeof(int64_t));
    memset(dX, 0, used * sizeof(int64_t));
  }
  for (int e = 0; !cursors && e < E; e++) {
    memset(dI + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
    memset(dX + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
  }
  for (int node_lo = 0; node_lo < G; node_lo += gpn) {
    int node_hi = node_lo + gpn;
    /* the next node's count rows, while this node's experts are walked
     * (strided rows: the hardware prefetcher does not follow them) */
    if (!padded && node_hi < G && (size_t)gpn * (size_t)E <= 4096)
      for (int src = node_hi; src < node_hi + gpn; src++)
        for (int e = 0; e < E; e += 8)
          __builtin_prefetch(counts + (size_t)src * E + e);
    for (int e = 0; e < E; e++) {
      const int *rep = p->rep + (size_t)e * G;
      int n = p->nrep[e], nlo, nhi;
      if (cursors) {
        nlo = cur[e];
        for (nhi = nlo; nhi < n && rep[nhi] < node_hi;)
          nhi++;
        cur[e] = nhi;
      } else {
        nlo = lower_bound(rep, n, node_lo);
        nhi = lower_bound(rep, n, node_hi);
      }
      if (nhi == nlo) {
        /* no replica on this node: every source's tokens go to all n
         * replicas, over the NIC; the bases add up into one range */
        int64_t *d = dX + (cursors ? row[e] : (size_t)e * W), bases = 0, wraps = 0;
        uint64_t m = cursors ? mall[e] : split_magic(n);
        int a = first_mod(node_lo, n, m);
        for (int src = node_lo; src < node_hi; src++, a = next_mod(a, n)) {
          int64_t tokens = padded ? cap[src] : counts[(size_t)src * E + e], rem;
          if (mode == SLOTS_CAPPED && tokens > cap[src])
            tokens = cap[src];
          xo[src] += tokens; /* none: adds 0, and +1 -1 at a */
          bases += split_even(tokens, n, m, &rem);
          split_rem_at(d, 0, n, a, rem, &wraps);
        }
        d[0] += bases + wraps;
        d[n] -= bases + wraps;
        continue;
      }
      /* replicas on this node: a source hosting e keeps its tokens, the
       * others split them over the node's replicas */
      int64_t *d = dI + (cursors ? row[e] : (size_t)e * W), bases = 0, wraps = 0;
      int k = nhi - nlo;
      uint64_t m = split_magic(k);
      int a = first_mod(node_lo, k, m);
      int self = nlo; /* first replica >= src: src ascends, so it only moves up */
      for (int src = node_lo; src < node_hi; src++, a = next_mod(a, k)) {
        int64_t tokens = padded ? cap[src] : counts[(size_t)src * E + e], rem;
        if (mode == SLOTS_CAPPED && tokens > cap[src])
          tokens = cap[src];
        while (self < nhi && rep[self] < src)
          self++;
        /* kept (a replica on src) or sent, the other 0: no branch on it */
        int64_t kept = self < nhi && rep[self] == src ? tokens : 0, sent = tokens - kept;
        s->load[(size_t)src * E + e] += kept;
        if (!padded)
          s->gpu_load[src] += kept;
        io[src] += sent;
        bases += split_even(sent, k, m, &rem);
        split_rem_at(d, nlo, k, a, rem, &wraps);
      }
      d[nlo] += bases + wraps;
      d[nhi] -= bases + wraps;
    }
  }
  for (int e = 0; e < E; e++) {
    const int *rep = p->rep + (size_t)e * G;
    size_t o = cursors ? row[e] : (size_t)e * W;
    const int64_t *a = dI + o, *b = dX + o;
    int64_t runI = 0, runX = 0;
    for (int i = 0; i < p->nrep[e]; i++) {
      runI += a[i];
      runX += b[i];
      int dst = rep[i];
      s->load[(size_t)dst * E + e] += runI + runX;
      if (!padded)
        s->gpu_load[dst] += runI + runX;
      ii[dst] += runI;
      xi[dst] += runX;
    }
  }
}

static void route_sums_real(const pl_placement *p, int gpn, const slots_view *v, int64_t *acc,
                            const sink *s) {
  route_sums_impl(p, gpn, v, acc, s, SLOTS_REAL);
}

static void route_sums_capped(const pl_placement *p, int gpn, const slots_view *v,
                              int64_t *acc, const sink *s) {
  route_sums_impl(p, gpn, v, acc, s, SLOTS_CAPPED);
}

static void route_sums_padded(const pl_placement *p, int gpn, const slots_view *v,
                              int64_t *acc, const sink *s) {
  route_sums_impl(p, gpn, v, acc, s, SLOTS_PADDED);
}

#ifndef NDEBUG
/* Routings of fewer than this many (source, expert) pairs are checked
 * against route_conserves by assert(); larger ones (the 1,024-GPU x
 * 64-expert benchmarks: 2^16 pairs, where the check was a tenth of the
 * routing time of every build that keeps assertions, debugoptimized
 * included) only get the O(G) sums, so a debug build's cost stays small
 * everywhere. The tests' routings are far below it. */
#define ROUTE_CHECK_MAX_PAIRS (1 << 15)

/* Token conservation of routing r on p of the kept slots v, for assert():
 *  - every GPU's load is the sum of its per-expert loads, and those are
 *    non-negative and only on replicas of their expert;
 *  - each expert's delivered slots are the slots its sources kept;
 *  - each source sends off-GPU (the hose sums, and the matrix when kept)
 *    exactly its kept slots of experts it does not host: the rest stays on
 *    it (the locality rule), so the sum over destinations is its count;
 *  - delivered = total - dropped.
 * One row-major pass, O(G E (+ G G with the matrix)); the per-expert
 * balance is kept in r->acc, route's scratch, whose content is dead here.
 * Returns 1 when all hold. */
static int route_conserves(const pl_placement *p, const slots_view *v, pl_routing *r) {
  int G = p->gpus, E = p->experts;
  int64_t delivered = 0, *bal = r->acc; /* [E] delivered - kept, per expert */
  if (!bal)
    return 1;
  memset(bal, 0, (size_t)E * sizeof(int64_t));
  for (int g = 0; g < G; g++) {
    const int *host = p->host + (size_t)g * p->slots;
    const int64_t *load = r->load + (size_t)g * E;
    int64_t sum = 0, off = 0, sent = 0;
    for (int e = 0, j = 0; e < E; e++) {
      while (j < p->nhost[g] && host[j] < e)
        j++;
      int hosted = j < p->nhost[g] && host[j] == e;
      int64_t kept = slots_of(v, g, e);
      if (load[e] < 0 || (load[e] && !hosted))
        return 0;
      sum += load[e];
      bal[e] += load[e] - kept;
      off += hosted ? 0 : kept;
    }
    if (sum != r->gpu_load[g] || (r->hose && r->hose[g] + r->hose[2 * (size_t)G + g] != off))
      return 0;
    for (int dst = 0; r->traffic && dst < G; dst++)
      sent += dst == g ? 0 : r->traffic[(size_t)g * G + dst];
    if (r->traffic && sent != off)
      return 0;
    delivered += sum;
  }
  for (int e = 0; e < E; e++)
    if (bal[e])
      return 0;
  return delivered == r->total - r->dropped;
}

/* The O(G) part of route_conserves, for routings too large for it: the
 * per-GPU loads add up to the slots kept, and the hose's out sums to its in
 * sums (what leaves a GPU arrives at another). */
static int route_sums_conserve(const pl_routing *r) {
  int64_t delivered = 0, out = 0, in = 0;
  size_t G = (size_t)r->gpus;
  for (size_t g = 0; g < G; g++) {
    delivered += r->gpu_load[g];
    if (r->hose) {
      out += r->hose[g] + r->hose[2 * G + g];
      in += r->hose[G + g] + r->hose[3 * G + g];
    }
  }
  return delivered == r->total - r->dropped && out == in;
}
#endif

/* pl_route and pl_route_caps: the capacity of source src is cap[src], or
 * ucap for all sources when cap is NULL (ucap < 0: dropless). */
static int route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
                 const int64_t *cap, int64_t ucap, pl_routing *r) {
  int capped = cap || ucap >= 0;
  if (!p || !c || !counts || !r || p->gpus != c->gpus || r->gpus != p->gpus ||
      r->experts != p->experts || c->gpus_per_node < 1 ||
      (capped && (!r->cap || !r->acc || !r->hose || !r->pad_hose)))
    return PL_EINVAL;
  int G = p->gpus, E = p->experts, gpn = c->gpus_per_node;
  int64_t total = 0, dropped = 0, maxcap = -1;
  if (!capped) { /* the common case: one branch-free pass */
    int64_t neg = 0;
    for (size_t i = 0; i < (size_t)G * E; i++) {
      total += counts[i];
      neg |= counts[i];
    }
    if (neg < 0)
      return PL_EINVAL;
  }
  for (int src = 0; capped && src < G; src++) {
    int64_t k = cap ? cap[src] : ucap;
    if (cap && k < 0)
      return PL_EINVAL;
    for (int e = 0; e < E; e++) {
      int64_t t = counts[(size_t)src * E + e];
      if (t < 0)
        return PL_EINVAL;
      total += t;
      if (t > k)
        dropped += t - k;
    }
    if (k > maxcap)
      maxcap = k;
  }
  if (capped && !r->pad_load &&
      !(r->pad_load = pl_calloc((size_t)G * (size_t)E, sizeof(int64_t))))
    return PL_ENOMEM;
  if (r->cap)
    for (int g = 0; g < G; g++)
      r->cap[g] = cap ? cap[g] : capped ? ucap : -1;
  memset(r->load, 0, (size_t)G * E * sizeof(int64_t));
  memset(r->gpu_load, 0, (size_t)G * sizeof(int64_t));
  if (r->traffic)
    memset(r->traffic, 0, (size_t)G * G * sizeof(int64_t));
  if (r->hose)
    memset(r->hose, 0, 4 * (size_t)G * sizeof(int64_t));
  r->dropped = dropped;
  r->total = total;
  r->capacity = capped ? maxcap : -1;
  r->padded = capped;
  r->gpus_per_node = gpn;
  /* the kept slots, dropless; without the matrix by range sums */
  slots_view kept = {.counts = counts, .cap = capped ? r->cap : NULL, .pad = 0, .experts = E};
  sink real = {.load = r->load, .gpu_load = r->gpu_load, .hose = r->hose, .traffic = r->traffic};
  if (!r->traffic && r->hose && r->acc && !kept.cap)
    route_sums_real(p, gpn, &kept, r->acc, &real);
  else if (!r->traffic && r->hose && r->acc)
    route_sums_capped(p, gpn, &kept, r->acc, &real);
  else
    route_each(p, gpn, &kept, &real);
  assert(route_sums_conserve(r));
  assert((size_t)G * E >= ROUTE_CHECK_MAX_PAIRS || route_conserves(p, &kept, r));
  if (!capped)
    return PL_OK;
  /* the padded buffers: cap[src] slots from every source to every expert */
  memset(r->pad_load, 0, (size_t)G * E * sizeof(int64_t));
  memset(r->pad_hose, 0, 4 * (size_t)G * sizeof(int64_t));
  slots_view pad = {.counts = counts, .cap = r->cap, .pad = 1, .experts = E};
  sink padded = {.load = r->pad_load, .gpu_load = NULL, .hose = r->pad_hose, .traffic = NULL};
  route_sums_padded(p, gpn, &pad, r->acc, &padded);
  return PL_OK;
}

/*
 * Adds sign (+1 or -1) x the dropless routing of the experts es[0..ne) of
 * placement p to r (load, gpu_load, hose; no matrix): route_sums_impl's
 * loop for a subset of the experts, node by node with a cursor per listed
 * expert, and the same difference arrays (r->acc, rows of the listed
 * experts). An expert's routing depends only on its own replicas and
 * counts column, and every sum is an integer: removing an expert's part
 * under one placement and adding it under another gives the same bits as
 * routing the other placement from scratch. ne <= ROUTE_CHANGE_MAX.
 */
enum { ROUTE_CHANGE_MAX = 256 };

/* The sources [node_lo, node_lo + gpn) of expert e split as
 * route_sums_impl splits them: over rep[lo..hi) (k = hi - lo >= 1), a
 * source that is one of the node's replicas rep[slo..shi) keeping its
 * tokens. The kept tokens times sign into load and gpu_load, the sent ones
 * into out (NULL, all three: a split alone); the split into difference
 * array d at lo..hi, and into d2 too unless NULL (the same split for
 * another placement), without the sign (applied when d is summed). */
static inline __attribute__((always_inline)) void
node_split(const int64_t *counts, int E, int e, int node_lo, int gpn, const int *rep, int lo,
           int hi, int slo, int shi, int64_t sign, int64_t *load, int64_t *gpu_load,
           int64_t *out, int64_t *d, int64_t *d2) {
  int k = hi - lo;
  uint64_t m = split_magic(k);
  int64_t bases = 0, wraps = 0, wraps2 = 0;
  int a = first_mod(node_lo, k, m), self = slo;
  for (int src = node_lo; src < node_lo + gpn; src++, a = next_mod(a, k)) {
    int64_t tokens = counts[(size_t)src * E + e], rem;
    while (self < shi && rep[self] < src)
      self++;
    int64_t kept = self < shi && rep[self] == src ? tokens : 0, sent = tokens - kept;
    if (out) {
      load[(size_t)src * E + e] += sign * kept;
      gpu_load[src] += sign * kept;
      out[src] += sign * sent;
    }
    bases += split_even(sent, k, m, &rem);
    split_rem_at(d, lo, k, a, rem, &wraps);
    if (d2)
      split_rem_at(d2, lo, k, a, rem, &wraps2);
  }
  d[lo] += bases + wraps;
  d[hi] -= bases + wraps;
  if (d2) {
    d2[lo] += bases + wraps2;
    d2[hi] -= bases + wraps2;
  }
}

/* sign x the per-replica sums of difference arrays dI (intra) and, less
 * h, x (inter; h NULL: x alone) of expert e's replicas rep[0..n) into r. */
static void sums_to_replicas(pl_routing *r, int e, const int *rep, int n, const int64_t *dI,
                             const int64_t *x, const int64_t *h, int64_t sign) {
  int G = r->gpus, E = r->experts;
  int64_t *ii = r->hose + G, *xi = r->hose + 3 * (size_t)G, runI = 0, runX = 0;
  for (int j = 0; j < n; j++) {
    runI += dI[j];
    runX += x[j] - (h ? h[j] : 0);
    int dst = rep[j];
    r->load[(size_t)dst * E + e] += sign * (runI + runX);
    r->gpu_load[dst] += sign * (runI + runX);
    ii[dst] += sign * runI;
    xi[dst] += sign * runX;
  }
}

static void route_sums_subset(const pl_placement *p, int gpn, const int64_t *counts,
                              const int *es, int ne, int64_t sign, pl_routing *r) {
  int G = p->gpus, E = p->experts;
  size_t W = (size_t)G + 1;
  int64_t *dI = r->acc, *dX = r->acc + (size_t)E * W;
  int64_t *io = r->hose, *xo = r->hose + 2 * (size_t)G;
  int cur[ROUTE_CHANGE_MAX];
  for (int i = 0; i < ne; i++) {
    int e = es[i];
    memset(dI + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
    memset(dX + (size_t)e * W, 0, ((size_t)p->nrep[e] + 1) * sizeof(int64_t));
    cur[i] = 0;
  }
  for (int node_lo = 0; node_lo < G; node_lo += gpn)
    for (int i = 0; i < ne; i++) {
      int e = es[i];
      const int *rep = p->rep + (size_t)e * G;
      int n = p->nrep[e], nlo = cur[i], nhi = nlo;
      while (nhi < n && rep[nhi] < node_lo + gpn)
        nhi++;
      cur[i] = nhi;
      /* the node's split (route_sums_impl's, each term times sign): over
       * all n replicas when none is on the node, else over its own */
      int inter = nhi == nlo;
      node_split(counts, E, e, node_lo, gpn, rep, inter ? 0 : nlo, inter ? n : nhi, nlo, nhi,
                 sign, r->load, r->gpu_load, inter ? xo : io, (inter ? dX : dI) + (size_t)e * W,
                 NULL);
    }
  for (int i = 0; i < ne; i++) {
    int e = es[i];
    sums_to_replicas(r, e, p->rep + (size_t)e * G, p->nrep[e], dI + (size_t)e * W,
                     dX + (size_t)e * W, NULL, sign);
  }
}

/*
 * Kept splits. A changed expert's tokens from a node without a replica of
 * it go to all n of its replicas, split as node_split splits them: the
 * same integers whichever placement, for the same n. So the split of
 * every node's tokens as if none held a replica (split_all) is kept per
 * expert and n while the counts stay, and a placement's inter-node split
 * is that less the split of the nodes that do hold one (a few, as many as
 * the expert's replicas at most), whose sources alone are walked; the
 * other nodes' out sums are the same under both placements. Integers
 * only: the same bits as routing every node (route_sums_subset).
 */
enum { SPLIT_WAYS = 4 };

int pl_route_delta_init(pl_route_delta *d, int gpus, int experts) {
  if (!d || gpus < 1 || experts < 1)
    return PL_EINVAL;
  size_t W = (size_t)gpus + 1, rows = (size_t)experts * SPLIT_WAYS;
  pl_route_delta t = {.all = 1, .id = 0, .gpus = gpus, .experts = experts};
  t.es = pl_calloc((size_t)experts, sizeof(int));
  t.gs = pl_calloc((size_t)gpus, sizeof(int));
  t.mark = pl_calloc((size_t)gpus, sizeof(uint32_t));
  t.split = pl_calloc(rows * W, sizeof(int64_t));
  t.split_n = pl_calloc(rows, sizeof(int));
  t.scratch = pl_calloc(4 * W, sizeof(int64_t));
  if (!t.es || !t.gs || !t.mark || !t.split || !t.split_n || !t.scratch) {
    pl_route_delta_fini(&t);
    return PL_ENOMEM;
  }
  *d = t;
  return PL_OK;
}

void pl_route_delta_fini(pl_route_delta *d) {
  if (!d)
    return;
  pl_free(d->es);
  pl_free(d->gs);
  pl_free(d->mark);
  pl_free(d->split);
  pl_free(d->split_n);
  pl_free(d->scratch);
  memset(d, 0, sizeof(*d));
}

void pl_route_delta_forget(pl_route_delta *d) {
  if (!d || !d->split_n)
    return;
  memset(d->split_n, 0, (size_t)d->experts * SPLIT_WAYS * sizeof(int));
  d->counts = NULL;
}

/* Expert e's tokens of every source split over n (>= 1) replicas as if no
 * node held one (difference array of n + 1 entries), kept in d. */
static const int64_t *split_all(pl_route_delta *d, const int64_t *counts, int gpn, int e,
                                int n) {
  int G = d->gpus, E = d->experts;
  size_t k = (size_t)e * SPLIT_WAYS + (size_t)(n % SPLIT_WAYS);
  int64_t *s = d->split + k * ((size_t)G + 1);
  if (d->split_n[k] == n)
    return s;
  memset(s, 0, ((size_t)n + 1) * sizeof(int64_t));
  for (int node_lo = 0; node_lo < G; node_lo += gpn)
    node_split(counts, E, e, node_lo, gpn, NULL, 0, n, 0, 0, 0, NULL, NULL, NULL, s, NULL);
  d->split_n[k] = n;
  return s;
}

/* sign x expert e's tokens of the sources of the node from node_lo into
 * r's inter out sums (a node without a replica of e sends them all over
 * the NIC). */
static void node_inter_out(pl_routing *r, const int64_t *counts, int e, int node_lo, int gpn,
                           int64_t sign) {
  int64_t *xo = r->hose + 2 * (size_t)r->gpus;
  for (int src = node_lo; src < node_lo + gpn; src++)
    xo[src] += sign * counts[(size_t)src * r->experts + e];
}

/* Empties d's GPU set for G GPUs (a new id: no clearing but once per 2^32). */
static void delta_clear(pl_route_delta *d, int G) {
  if (++d->id == 0) {
    memset(d->mark, 0, (size_t)G * sizeof(uint32_t));
    d->id = 1;
  }
  d->ng = 0;
}

/* Adds GPU g to d's set, once. */
static void delta_gpu(pl_route_delta *d, int g) {
  if (d->mark[g] != d->id) {
    d->mark[g] = d->id;
    d->gs[d->ng++] = g;
  }
}

/* Expert e's routing in r made to's from from's: the same integers as
 * route_sums_subset under from (-1) then under to (+1), walking only the
 * nodes that hold e under either ("Kept splits"). A node whose replicas of
 * e are the same under both keeps its intra-node routing: walked for its
 * inter-node split alone. The GPUs whose sums this can change go into d's
 * set: e's replicas under either (their loads, in sums and host lists),
 * and every GPU of a node that holds e under one placement only (its
 * sources' tokens switch between the intra and the inter out sums); every
 * other source sends e's tokens as before, and only replicas receive. */
static void change_expert(pl_route_delta *d, const pl_placement *from, const pl_placement *to,
                          int gpn, const int64_t *counts, int e, pl_routing *r) {
  int G = to->gpus, E = to->experts, nf = from->nrep[e], nt = to->nrep[e], i = 0, j = 0;
  const int *rf = from->rep + (size_t)e * G, *rt = to->rep + (size_t)e * G;
  size_t W = (size_t)G + 1;
  int64_t *If = d->scratch, *Hf = If + W, *It = Hf + W, *Ht = It + W, *io = r->hose;
  memset(If, 0, ((size_t)nf + 1) * sizeof(int64_t));
  memset(Hf, 0, ((size_t)nf + 1) * sizeof(int64_t));
  memset(It, 0, ((size_t)nt + 1) * sizeof(int64_t));
  memset(Ht, 0, ((size_t)nt + 1) * sizeof(int64_t));
  while (i < nf || j < nt) { /* the nodes of both ascending lists, merged */
    int ni = i < nf ? rf[i] / gpn : INT_MAX, nj = j < nt ? rt[j] / gpn : INT_MAX;
    int node_lo = (ni < nj ? ni : nj) * gpn, fi = i, tj = j;
    while (i < nf && rf[i] < node_lo + gpn)
      i++;
    while (j < nt && rt[j] < node_lo + gpn)
      j++;
    int hasf = i > fi, hast = j > tj;
    for (int k = fi; k < i; k++)
      delta_gpu(d, rf[k]);
    for (int k = tj; k < j; k++)
      delta_gpu(d, rt[k]);
    for (int g = node_lo; hasf != hast && g < node_lo + gpn; g++)
      delta_gpu(d, g);
    int same = hasf && hast && i - fi == j - tj &&
               !memcmp(rf + fi, rt + tj, (size_t)(i - fi) * sizeof(int));
    if (hasf && !same)
      node_split(counts, E, e, node_lo, gpn, rf, fi, i, fi, i, -1, r->load, r->gpu_load, io,
                 If, NULL);
    if (hast && !same)
      node_split(counts, E, e, node_lo, gpn, rt, tj, j, tj, j, +1, r->load, r->gpu_load, io,
                 It, NULL);
    if (!hasf || !hast) /* it sent e's tokens over the NIC under the other */
      node_inter_out(r, counts, e, node_lo, gpn, hasf ? +1 : -1);
    /* its part of the kept splits, which count it as holding none */
    int both = hasf && hast && nf == nt;
    if (hasf)
      node_split(counts, E, e, node_lo, gpn, NULL, 0, nf, 0, 0, 0, NULL, NULL, NULL, Hf,
                 both ? Ht : NULL);
    if (hast && !both)
      node_split(counts, E, e, node_lo, gpn, NULL, 0, nt, 0, 0, 0, NULL, NULL, NULL, Ht, NULL);
  }
  /* from's before to's: a kept split may take the other's row */
  sums_to_replicas(r, e, rf, nf, If, split_all(d, counts, gpn, e, nf), Hf, -1);
  sums_to_replicas(r, e, rt, nt, It, split_all(d, counts, gpn, e, nt), Ht, +1);
}

int pl_route_change_delta(const pl_placement *from, const pl_placement *to, const pl_cluster *c,
                          const int64_t *counts, pl_routing *r, pl_route_delta *d) {
  if (!from || !to || !c || !r || from->experts != to->experts || from->gpus != to->gpus ||
      (d && (d->gpus != to->gpus || d->experts != to->experts)))
    return PL_EINVAL;
  int E = to->experts, es[ROUTE_CHANGE_MAX], ne = 0;
  int fits = r->padded == 0 && r->capacity == -1 && !r->traffic && r->hose && r->acc &&
             r->gpus == to->gpus && r->experts == E && r->gpus_per_node == c->gpus_per_node &&
             to->gpus == c->gpus;
  /* the experts whose replica lists differ, while re-routing them is
   * cheaper than routing everything: 2 ne < E columns when every source is
   * walked twice (route_sums_subset); with d only the nodes that hold them
   * are (change_expert), cheaper than a routing for any number of them
   * (the oracle's node trades change most experts: 0.90x at 64 GPUs) */
  for (int e = 0; fits && e < E; e++) {
    if (from->nrep[e] == to->nrep[e] &&
        !memcmp(from->rep + (size_t)e * from->gpus, to->rep + (size_t)e * to->gpus,
                (size_t)to->nrep[e] * sizeof(int)))
      continue;
    if (ne == ROUTE_CHANGE_MAX || (!d && 2 * (ne + 1) >= E))
      fits = 0;
    else
      es[ne++] = e;
  }
  if (d)
    d->all = !fits;
  if (!fits)
    return pl_route(to, c, counts, -1, r);
  if (!d) {
    route_sums_subset(from, c->gpus_per_node, counts, es, ne, -1, r);
    route_sums_subset(to, c->gpus_per_node, counts, es, ne, +1, r);
    assert(route_sums_conserve(r));
    return PL_OK;
  }
  if (d->counts != counts || d->gpn != c->gpus_per_node) {
    pl_route_delta_forget(d);
    d->counts = counts;
    d->gpn = c->gpus_per_node;
  }
  delta_clear(d, to->gpus);
  d->ne = ne;
  for (int i = 0; i < ne; i++) {
    d->es[i] = es[i];
    change_expert(d, from, to, c->gpus_per_node, counts, es[i], r);
  }
  assert(route_sums_conserve(r));
  return PL_OK;
}

int pl_route_change(const pl_placement *from, const pl_placement *to, const pl_cluster *c,
                    const int64_t *counts, pl_routing *r) {
  return pl_route_change_delta(from, to, c, counts, r, NULL);
}

int pl_route_caps(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
                  const int64_t *cap, pl_routing *r) {
  return route(p, c, counts, cap, -1, r);
}

int pl_route(const pl_placement *p, const pl_cluster *c, const int64_t *counts,
             int64_t cap, pl_routing *r) {
  return route(p, c, counts, NULL, cap < 0 ? -1 : cap, r);
}

int64_t pl_routing_wire_tokens(const pl_routing *r, const pl_placement *p,
                               int src, int dst) {
  if (src == dst)
    return 0;
  if (!r->padded)
    return r->traffic ? r->traffic[(size_t)src * r->gpus + dst] : 0;
  /* dst's share of src's padded buffer of each expert it hosts */
  int gpn = r->gpus_per_node, node_lo = (src / gpn) * gpn;
  int in_node = dst >= node_lo && dst < node_lo + gpn;
  const int *host = p->host + (size_t)dst * p->slots;
  int64_t tok = 0;
  for (int j = 0; j < p->nhost[dst]; j++) {
    int e = host[j], lo, hi;
    int inter = serving(p, gpn, src, e, &lo, &hi);
    if (inter == in_node) /* served inside src's node, dst outside, or the reverse */
      continue;
    const int *rep = p->rep + (size_t)e * p->gpus;
    int i = lower_bound(rep, p->nrep[e], dst);
    if (i >= lo && i < hi && rep[i] == dst)
      tok += share_of(r->cap[src], hi - lo, i - lo, src);
  }
  return tok;
}

int64_t pl_routing_compute_tokens(const pl_routing *r, const pl_placement *p,
                                  int gpu, int expert) {
  (void)p;
  const int64_t *load = r->padded ? r->pad_load : r->load;
  return load[(size_t)gpu * r->experts + expert];
}

int pl_routing_wire_sums(const pl_routing *r, const pl_placement *p, int gpus_per_node,
                         int64_t *h) {
  if (!r || !p || !h || p->gpus != r->gpus || gpus_per_node < 1 ||
      r->gpus % gpus_per_node || (!r->hose && !r->traffic && !r->padded) ||
      (r->padded && (gpus_per_node != r->gpus_per_node || !r->pad_hose)))
    return PL_EINVAL;
  size_t G = (size_t)r->gpus, gpn = (size_t)gpus_per_node;
  if (r->padded) {
    memcpy(h, r->pad_hose, 4 * G * sizeof(int64_t));
    return PL_OK;
  }
  if (r->hose) {
    memcpy(h, r->hose, 4 * G * sizeof(int64_t));
    return PL_OK;
  }
  memset(h, 0, 4 * G * sizeof(int64_t));
  for (size_t s = 0; s < G; s++)
    for (size_t d = 0; d < G; d++) {
      int64_t t = d == s ? 0 : r->traffic[s * G + d];
      int x = s / gpn != d / gpn;
      h[2 * G * (size_t)x + s] += t;
      h[2 * G * (size_t)x + G + d] += t;
    }
  return PL_OK;
}

double pl_routing_balance(const pl_routing *r) {
  int64_t max = 0, sum = 0;
  for (int g = 0; g < r->gpus; g++) {
    sum += r->gpu_load[g];
    if (r->gpu_load[g] > max)
      max = r->gpu_load[g];
  }
  if (sum == 0)
    return 1.0;
  return (double)max * r->gpus / (double)sum;
}
