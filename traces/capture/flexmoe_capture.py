"""flexmoe_capture - record the routing of a PyTorch MoE model as a flexmoe trace.

A trace is counts[iteration][layer][rank][expert]: how many top-k slots the
tokens of data-parallel rank r sent to expert e at (iteration, layer). This
module finds a model's MoE routers, reads the experts each router really
chose from its own outputs, and writes flexmoe's ``.npy`` (int32, C order,
shape [I, L, R, E]) with a ``.json`` sidecar, which ``flexmoe trace info`` /
``flexmoe sim --trace`` read directly.

Use::

    rec = attach(model, "routing.npy")   # finds the routers (HF, DeepSpeed, Megatron-core)
    for batch in loader:
        loss = model(batch); loss.backward(); opt.step()
        rec.step()                        # one iteration (an optimizer step)
    rec.save()                            # routing.npy + routing.json (+ routing-kept.npy)

Design and invariants:

* Two counts per slot, both kept: **routed** = the expert the router chose,
  before any capacity limit (what a placement policy must serve: the trace,
  ``routing.npy``), and **kept** = the slots the framework really dispatched
  after capacity drops (``routing-kept.npy``, written when the router can drop:
  Switch, DeepSpeed, Megatron with a capacity factor). Routers without a
  capacity limit record the same slots into both.
* Counts stay on the device of the router: each call adds its slots to one
  int64 buffer with ``index_add_`` (``bincount`` on the CPU; CUDA's bincount
  reads its maximum back to the host, a sync per layer), and ``step()`` makes
  the one transfer of the iteration (after one reduce onto rank 0 under
  ``torch.distributed``). Nothing in a hook reads a value back to the host.
* An expert id outside [0, E) is counted in a per-(layer, rank) bucket, never
  raised inside the model's forward: a negative id is a slot the framework
  dropped (-1; the Megatron adapter turns its INT64_MAX marker into -1), an
  id >= E is out of range and ``save()`` warns about it.
* Ranks: under ``torch.distributed`` a process records its tokens as its rank
  in the data-parallel group (Megatron's when parallel_state is initialised,
  else ``dp_group``, else the world) and the trace has that group's size of
  ranks. ``step()`` sums the buffers of all processes onto rank 0: pipeline
  stages own disjoint layers, data-parallel ranks disjoint rows, and tensor-
  parallel replicas of the same tokens contribute once (``contributes``).
  In one process, ``virtual_ranks=R`` splits each call's batch into R
  contiguous groups of sequences, in the token order of the framework
  (batch-first for HF and DeepSpeed, sequence-first [s, b] for Megatron).
* Recomputation (activation checkpointing) re-runs the routers during
  backward: calls made while an autograd backward runs are not recorded, and
  neither are calls of modules in eval mode. Micro-batches between two
  ``step()`` calls add up (gradient accumulation).
* ``save()`` warns (``RuntimeWarning``) when the trace is all zero, when some
  (iteration, layer) or (iteration, layer, rank) recorded nothing, and when
  slots were out of range.

The bookkeeping and the writer work with plain lists and the standard library
(``record`` with nested lists); torch is needed for the hooks and tensors.
"""

import array
import contextlib
import json
import os
import struct
import sys
import tempfile
import threading
import warnings

__all__ = [
    "RoutingRecorder",
    "attach",
    "attach_topk",
    "attach_indices",
    "attach_counts",
    "deepspeed_gate_counts",
    "megatron_router_indices",
    "trainer_callback",
    "write_npy",
]

ROUTED, KEPT = 0, 1
_INT64_MAX = 2**63 - 1
_STAGES = {"both": (ROUTED, KEPT), "routed": (ROUTED,), "kept": (KEPT,)}


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _is_tensor(x):
    t = sys.modules.get("torch")
    return t is not None and isinstance(x, t.Tensor)


# --------------------------------------------------------------------------
# Backward watch: a router call made while autograd runs a backward pass is an
# activation recomputation (torch.utils.checkpoint reentrant or not, Megatron's
# and DeepSpeed's checkpointing), not a new forward. torch 1.13 has no public
# "inside backward" query, so the engine's run_backward (the one entry of
# backward(), autograd.grad() and Megatron's custom_backward) is wrapped while
# any recorder is attached, counting the backward passes in flight.


class _EngineProxy:
    def __init__(self, engine):
        self._engine = engine
        self._lock = threading.Lock()
        self.depth = 0

    def run_backward(self, *args, **kwargs):
        with self._lock:
            self.depth += 1
        try:
            return self._engine.run_backward(*args, **kwargs)
        finally:
            with self._lock:
                self.depth -= 1

    def __getattr__(self, name):
        return getattr(self._engine, name)


_watch = {"users": 0, "proxy": None}


def _watch_backward(on):
    torch = _torch()
    if torch is None:
        return
    var = torch.autograd.Variable
    if on:
        if _watch["users"] == 0:
            if not isinstance(var._execution_engine, _EngineProxy):
                var._execution_engine = _EngineProxy(var._execution_engine)
            _watch["proxy"] = var._execution_engine
        _watch["users"] += 1
    elif _watch["users"] > 0:
        _watch["users"] -= 1
        if _watch["users"] == 0 and isinstance(var._execution_engine, _EngineProxy) and \
                var._execution_engine.depth == 0:
            var._execution_engine = var._execution_engine._engine
            _watch["proxy"] = None


def in_backward():
    """True while an autograd backward pass runs (seen by an attached recorder)."""
    p = _watch["proxy"]
    return p is not None and p.depth > 0


# --------------------------------------------------------------------------
# File format


def write_npy(path, counts, shape, meta=None):
    """Writes int32 counts (flat sequence in C order) with shape (I, L, R, E)
    to path as .npy v1.0, and meta (a dict) as the same-name .json sidecar;
    both under temporary names in the same directory, then renamed (sidecar
    first), so a reader never sees a half-written trace."""
    n = 1
    for d in shape:
        n *= d
    if len(counts) != n:
        raise ValueError("counts has %d values, shape %r needs %d" % (len(counts), shape, n))
    if n and (min(counts) < 0 or max(counts) > 2**31 - 1):
        raise ValueError("counts must be in [0, 2^31)")
    data = array.array("i", counts)
    if sys.byteorder != "little":
        data.byteswap()
    dims = ", ".join(str(d) for d in shape)
    header = "{'descr': '<i4', 'fortran_order': False, 'shape': (%s), }" % dims
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    d = os.path.dirname(os.path.abspath(path))
    base, _ = os.path.splitext(path)
    side = base + ".json"
    tmp_side = None
    if meta is not None:
        fd, tmp_side = tempfile.mkstemp(prefix=os.path.basename(side) + ".tmp.", dir=d)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)))
            f.write(header.encode("latin1"))
            f.write(data.tobytes())
        if tmp_side:
            os.replace(tmp_side, side)
            tmp_side = None
        elif os.path.exists(side):
            os.unlink(side)  # a stale sidecar would describe another trace
        os.replace(tmp, path)
    finally:
        for t in (tmp, tmp_side):
            if t and os.path.exists(t):
                os.unlink(t)


# --------------------------------------------------------------------------
# Plain-list ids (the standard-library path)


def _list_tokens(ids):
    """Nested lists [..., k] (or a flat list of ids, one slot per token) as a
    list of per-token id lists, in order, and the size of the first axis."""
    if isinstance(ids, int):
        return [[ids]], 1
    ids = list(ids)
    if ids and not isinstance(ids[0], (list, tuple)):
        return [[int(i)] for i in ids], len(ids)
    out = []

    def walk(x):
        if x and isinstance(x[0], (list, tuple)):
            for y in x:
                walk(y)
        else:
            out.append([int(i) for i in x])

    walk(ids)
    return out, len(ids)


def _token_batch(i, n, order, batch):
    """(sequence index, sequences) of token i of n, for the rank split."""
    if not batch or batch <= 0 or n % batch:
        return i, n
    if order == "sequence":
        return i % batch, batch
    return i // (n // batch), batch


class RoutingRecorder:
    """Collects per-(iteration, layer, rank, expert) slot counts.

    layers, experts, top_k: the model's MoE layers (all pipeline stages),
      experts per layer and slots per token.
    ranks: data-parallel ranks in the trace; None = the size of the data-
      parallel group under torch.distributed (1 without it), or virtual_ranks.
    virtual_ranks: one process standing for R data-parallel ranks: each call's
      sequences are split into R contiguous groups (token order per call).
    dp_group: the data-parallel process group (default: Megatron-core's when
      its parallel_state is initialised, else the world).
    contributes: whether this process's counts enter the trace (default: not
      on tensor-parallel ranks other than 0 when they route the same tokens).
    gather_group: the group step() sums over (default: the world).
    d_model, d_ff, bytes_per_elem, tokens_per_rank, source: sidecar metadata
      (tokens_per_rank defaults to the tokens one rank routed in iteration 0).
    skip_recompute: do not record router calls made during a backward pass.
    """

    def __init__(self, path, layers, experts, top_k, ranks=None, virtual_ranks=None,
                 d_model=0, d_ff=0, bytes_per_elem=0, tokens_per_rank=0, source="",
                 dp_group=None, contributes=None, gather_group=None, skip_recompute=True):
        if layers < 1 or experts < 1 or top_k < 1 or top_k > experts:
            raise ValueError("need layers >= 1, experts >= 1, 1 <= top_k <= experts "
                             "(got layers=%r experts=%r top_k=%r)" % (layers, experts, top_k))
        if virtual_ranks is not None and virtual_ranks < 1:
            raise ValueError("virtual_ranks must be >= 1 (got %r)" % (virtual_ranks,))
        self.path = path
        self.layers, self.experts, self.top_k = layers, experts, top_k
        self.virtual_ranks = virtual_ranks if virtual_ranks and virtual_ranks > 1 else None
        self.gather_group = gather_group
        self._layout(dp_group, contributes)
        if self.virtual_ranks and self.dist_world > 1:
            raise ValueError("virtual_ranks is for one process; under torch.distributed "
                             "every process records its own data-parallel rank")
        self.ranks = ranks or self.virtual_ranks or self.dp_size
        if self.dp_rank >= self.ranks:
            raise ValueError("ranks=%d, but this process is data-parallel rank %d"
                             % (self.ranks, self.dp_rank))
        self.meta = {"top_k": top_k, "d_model": d_model, "d_ff": d_ff,
                     "bytes_per_elem": bytes_per_elem, "tokens_per_rank": tokens_per_rank,
                     "source": source or "captured with flexmoe.capture"}
        self.enabled = True
        self.two_stage = False     # a router that can drop slots was recorded
        self.iterations = []       # per iteration: array("q") [2, L, R, E + 2]
        self.handles = []
        # per (stage, layer, rank): the slots dropped (id < 0, the frameworks'
        # marker), the E experts, then ids >= E (out of range): an id's slot
        # is clamp(id, -1, E) + 1, one pass on the device
        self._stride = experts + 2
        self._n = 2 * layers * self.ranks * self._stride
        self._buf = None           # torch int64 [n] on the routers' device, or a list
        self._tokens = [0] * layers  # tokens this process routed per layer, this iteration
        self._warned = set()
        self._skip_recompute = skip_recompute
        self._watching = False
        self._rank_cache = {}

    # -- layout ------------------------------------------------------------
    def _layout(self, dp_group, contributes):
        self.dist_rank, self.dist_world = 0, 1
        self.dp_rank, self.dp_size = 0, 1
        self.dp_group = dp_group
        self.contributes = True if contributes is None else bool(contributes)
        torch = _torch()
        if torch is None:
            return
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return
        self.dist_rank, self.dist_world = dist.get_rank(), dist.get_world_size()
        if dp_group is None:
            ps = _megatron_parallel_state()
            if ps is not None:
                self.dp_group = ps.get_data_parallel_group()
                if contributes is None:
                    # TP ranks see the same tokens unless sequence parallel splits
                    # them; the Megatron adapter sets contributes from its config
                    self.contributes = ps.get_tensor_model_parallel_rank() == 0
        self.dp_rank = dist.get_rank(group=self.dp_group) if self.dp_group else self.dist_rank
        self.dp_size = (dist.get_world_size(group=self.dp_group) if self.dp_group
                        else self.dist_world)

    # -- recording ---------------------------------------------------------
    @contextlib.contextmanager
    def paused(self):
        """Nothing is recorded inside."""
        was, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = was

    def active(self, module=None):
        """Whether a router call now is recorded: the recorder is enabled, the
        module is in training mode, and no backward pass runs (recompute)."""
        if not self.enabled:
            return False
        if module is not None and not getattr(module, "training", True):
            return False
        return not (self._skip_recompute and in_backward())

    def _check_layer(self, layer):
        if not 0 <= layer < self.layers:
            raise ValueError("layer %d outside [0, %d)" % (layer, self.layers))

    def _warn_once(self, key, msg):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn("flexmoe.capture: " + msg, RuntimeWarning, stacklevel=3)

    def record(self, layer, expert_ids, rank=None, stage="both", order="batch", batch=None):
        """Expert ids chosen by the tokens of one router call, shape [..., k]
        (a tensor or nested lists; a 1-D sequence is one slot per token). A
        negative id is a slot the framework dropped; an id >= E is counted as
        dropped too, and save() warns about it. rank: the data-parallel
        rank of these tokens (default: this process's, or the virtual_ranks
        split by sequence: order "batch" = tokens [b, s] batch-first,
        "sequence" = [s, b]; batch = sequences in the call, default the first
        axis for batch order, the second for sequence order of an [S, B, k]
        tensor). stage: "both" (a router without capacity), "routed" (before
        drops) or "kept" (after)."""
        if not self.enabled:
            return
        self._check_layer(layer)
        if _is_tensor(expert_ids):
            self._record_tensor(layer, expert_ids, rank, stage, order, batch)
        else:
            self._record_list(layer, expert_ids, rank, stage, order, batch)

    def record_mask(self, layer, mask, rank=None, stage="kept", order="batch", batch=None):
        """A [tokens, E] (or [..., E]) 0/1 mask of the experts each token was
        dispatched to (a dispatch mask); top_k minus the mask's row sum is
        counted as dropped. Tensors only."""
        if not self.enabled:
            return
        self._check_layer(layer)
        torch = _torch()
        E = self.experts
        m = mask.reshape(-1, E)
        n = m.shape[0]
        default_batch = None
        if mask.dim() >= 3:
            default_batch = mask.shape[1] if order == "sequence" else mask.shape[0]
        r = self._token_ranks(n, rank, order, batch, m.device, default_batch)
        buf = self._buffer(m.device)
        R, S = self.ranks, self._stride
        per = torch.zeros(R, S, dtype=torch.int64, device=buf.device)
        m = m.to(device=buf.device, dtype=torch.int64)
        if isinstance(r, int):
            per[r, 1:E + 1] += m.sum(0)
            per[r, 0] += self.top_k * n
        else:
            r = r.to(buf.device)
            per[:, 1:E + 1].index_add_(0, r, m)
            per[:, 0].index_add_(0, r, torch.full((n,), self.top_k, dtype=torch.int64,
                                                  device=buf.device))
        per[:, 0] -= per[:, 1:E + 1].sum(1)
        self._mark(stage)
        for s in _STAGES[stage]:
            base = (s * self.layers + layer) * R * S
            buf[base:base + R * S] += per.view(-1)
        self._count_tokens(layer, n, stage)

    def record_counts(self, layer, counts, rank=None, stage="both", tokens=None):
        """Per-expert slot counts [E] of one router call (for routers that
        expose counts, not ids). rank: default this process's rank; counts
        cannot be split into virtual ranks."""
        if not self.enabled:
            return
        self._check_layer(layer)
        if rank is None:
            if self.virtual_ranks:
                raise ValueError("per-expert counts cannot be split into virtual_ranks; "
                                 "record ids (record) or pass rank=")
            rank = self.dp_rank
        self._check_rank(rank)
        E, S = self.experts, self._stride
        if _is_tensor(counts):
            if counts.numel() != E:
                raise ValueError("expected %d expert counts, got %d" % (E, counts.numel()))
            buf = self._buffer(counts.device)
            c = counts.reshape(-1).to(device=buf.device, dtype=buf.dtype)
            for s in _STAGES[stage]:
                base = ((s * self.layers + layer) * self.ranks + rank) * S + 1
                buf[base:base + E] += c
            total = tokens * self.top_k if tokens is not None else None
        else:
            c = [int(x) for x in counts]
            if len(c) != E:
                raise ValueError("expected %d expert counts, got %d" % (E, len(c)))
            if any(x < 0 for x in c):
                raise ValueError("expert counts must be >= 0")
            buf = self._buffer(None)
            for s in _STAGES[stage]:
                base = ((s * self.layers + layer) * self.ranks + rank) * S + 1
                for e, x in enumerate(c):
                    buf[base + e] += x
            total = sum(c)
        self._mark(stage)
        if stage != "kept":
            n = tokens if tokens is not None else (
                total // self.top_k if total is not None else None)
            if n is not None:
                self._tokens[layer] += n

    def _check_rank(self, rank):
        if not 0 <= rank < self.ranks:
            raise ValueError("rank %d outside [0, %d)" % (rank, self.ranks))

    def _mark(self, stage):
        if stage != "both":
            self.two_stage = True

    def _count_tokens(self, layer, n, stage):
        if stage != "kept":
            self._tokens[layer] += n

    def _buffer(self, device):
        if self._buf is None:
            torch = _torch()
            if device is not None and torch is not None:
                self._buf = torch.zeros(self._n, dtype=torch.int64, device=device)
            elif torch is not None:
                self._buf = torch.zeros(self._n, dtype=torch.int64)
            else:
                self._buf = [0] * self._n
        elif isinstance(self._buf, list) and device is not None:
            torch = _torch()
            self._buf = torch.tensor(self._buf, dtype=torch.int64, device=device)
        return self._buf

    def _token_ranks(self, n, rank, order, batch, device, default_batch):
        """The rank of each of n tokens: an int (all one rank) or an int64
        tensor [n] on device (virtual ranks)."""
        if rank is not None:
            self._check_rank(rank)
            return rank
        if not self.virtual_ranks:
            return self.dp_rank
        torch = _torch()
        R = self.virtual_ranks
        b = batch or default_batch or n
        if n % b:
            self._warn_once(("batch", n, b), "%d tokens do not split into %d sequences; "
                            "virtual ranks split them token by token" % (n, b))
            b = n
        if b % R:
            self._warn_once(("split", b, R), "%d sequences per call do not split evenly into "
                            "%d virtual ranks" % (b, R))
        key = (n, b, order, str(device))
        r = self._rank_cache.get(key)
        if r is None:
            i = torch.arange(n, device=device)
            seq = i % b if order == "sequence" else i // (n // b)
            r = seq * R // b
            if len(self._rank_cache) > 64:
                self._rank_cache.clear()
            self._rank_cache[key] = r
        return r

    def _record_tensor(self, layer, ids, rank, stage, order, batch):
        torch = _torch()
        default_batch = None
        if ids.dim() >= 3:
            default_batch = ids.shape[1] if order == "sequence" else ids.shape[0]
        if ids.dim() <= 1:
            ids = ids.reshape(-1, 1)
        ids = ids.reshape(-1, ids.shape[-1])
        n, k = ids.shape
        buf = self._buffer(ids.device)
        if ids.device != buf.device:
            ids = ids.to(buf.device, non_blocking=True)
        r = self._token_ranks(n, rank, order, batch, ids.device, default_batch)
        E, S, R = self.experts, self._stride, self.ranks
        half = self.layers * R * S
        # slot of each id within its (layer, rank) stride, plus that stride's
        # start: 2 passes over the ids, then one count
        idx = ids.clamp(-1, E)
        if idx.dtype != torch.int64:
            idx = idx.long()
        if isinstance(r, int):
            idx = idx + ((layer * R + r) * S + 1)
        else:
            idx = idx + self._row_base(layer, r, n)
        idx = idx.reshape(-1)
        stages = _STAGES[stage]
        self._mark(stage)
        halves = buf.view(2, half)
        if buf.device.type == "cpu":
            c = torch.bincount(idx, minlength=half)
            for st in stages:
                halves[st] += c
        else:
            ones = torch.ones(1, dtype=torch.int64, device=buf.device).expand(idx.numel())
            for st in stages:
                halves[st].index_add_(0, idx, ones)
        self._count_tokens(layer, n, stage)

    def _row_base(self, layer, r, n):
        """[n, 1] start of each token's (layer, rank) stride (+1: the dropped
        slot comes first), cached per (layer, ranks tensor)."""
        key = ("base", layer, id(r))
        v = self._rank_cache.get(key)
        if v is None or v[0] is not r:
            base = ((layer * self.ranks + r) * self._stride + 1).view(-1, 1)
            v = (r, base)
            self._rank_cache[key] = v
        return v[1]

    def _record_list(self, layer, ids, rank, stage, order, batch):
        tokens, first = _list_tokens(ids)
        n = len(tokens)
        if rank is not None:
            self._check_rank(rank)
        buf = self._buffer(None)
        if not isinstance(buf, list):
            torch = _torch()
            flat = [e for t in tokens for e in t]
            k = max((len(t) for t in tokens), default=1)
            if all(len(t) == k for t in tokens):
                return self._record_tensor(layer, torch.tensor(flat, dtype=torch.int64)
                                           .reshape(n, k), rank, stage, order,
                                           batch or (first if first != n else None))
        E, S, R = self.experts, self._stride, self.ranks
        b = batch or (first if first != n else n)
        self._mark(stage)
        for i, t in enumerate(tokens):
            if rank is not None:
                r = rank
            elif self.virtual_ranks:
                seq, nb = _token_batch(i, n, order, b)
                r = seq * self.virtual_ranks // nb
            else:
                r = self.dp_rank
            for x in t:
                e = min(max(x, -1), E) + 1
                for s in _STAGES[stage]:
                    buf[((s * self.layers + layer) * R + r) * S + e] += 1
        self._count_tokens(layer, n, stage)

    # -- iterations ----------------------------------------------------------
    def step(self):
        """Closes the current iteration (call once per optimizer step): one
        reduce onto rank 0 over the processes, one transfer to the host there."""
        buf = self._buf
        if self.dist_world > 1:
            buf = self._reduce(buf)
        if self.dist_rank != 0:
            host = None
        elif buf is None:
            host = array.array("q", bytes(8 * self._n))
        elif isinstance(buf, list):
            host = array.array("q", buf)
        else:
            host = array.array("q", buf.cpu().tolist())  # the iteration's one transfer
        if host is not None and len(host) > self._n:
            self.two_stage = self.two_stage or host[self._n] > 0
            del host[self._n:]
        if self.dist_rank == 0:
            if not self.meta["tokens_per_rank"] and any(self._tokens):
                per = max(self._tokens)
                self.meta["tokens_per_rank"] = per // (self.virtual_ranks or 1)
            self.iterations.append(host)
        if self._buf is not None:
            if isinstance(self._buf, list):
                self._buf = [0] * self._n
            else:
                self._buf.zero_()
        self._tokens = [0] * self.layers

    def _reduce(self, buf):
        """Sums the buffers of all processes onto rank 0 (one reduce over
        gather_group, which must hold global rank 0). The last element
        carries whether any process saw a router that drops."""
        torch = _torch()
        import torch.distributed as dist
        dev = torch.device("cpu")
        if dist.get_backend(self.gather_group) == "nccl":
            dev = torch.device("cuda", torch.cuda.current_device())
        t = torch.zeros(self._n + 1, dtype=torch.int64, device=dev)
        if buf is not None and self.contributes:
            t[:self._n] = buf if not isinstance(buf, list) else torch.tensor(buf)
        t[self._n] = 1 if self.two_stage else 0
        dist.reduce(t, dst=0, group=self.gather_group)
        return t if self.dist_rank == 0 else None

    def _stage_counts(self, stage):
        """Flat [I, L, R, E] counts of one stage, the slots marked dropped and
        the ids out of range."""
        L, R, S, E = self.layers, self.ranks, self._stride, self.experts
        out = array.array("q")
        dropped = bad = 0
        half = L * R * S
        for it in self.iterations:
            part = it[stage * half:(stage + 1) * half]
            for j in range(L * R):
                out.extend(part[j * S + 1:j * S + E + 1])
                dropped += part[j * S]
                bad += part[j * S + E + 1]
        return out, dropped, bad

    def counts(self, stage="routed"):
        """The recorded counts as nested lists [I][L][R][E] (rank 0)."""
        flat = self._stage_counts(ROUTED if stage == "routed" else KEPT)[0]
        L, R, E = self.layers, self.ranks, self.experts
        return [[[list(flat[((i * L + l) * R + r) * E:((i * L + l) * R + r + 1) * E])
                  for r in range(R)] for l in range(L)] for i in range(len(self.iterations))]

    def kept_path(self, path=None):
        base, ext = os.path.splitext(path or self.path)
        return base + "-kept" + (ext or ".npy")

    def save(self, path=None):
        """Writes the recorded iterations (rank 0 only under torch.distributed):
        path = the routed slots (before capacity drops), and path-kept.npy =
        the slots dispatched after drops when a router that drops was seen.
        Warns when the trace is all or partly zero or slots were dropped as
        out of range. Returns the path (None on other ranks)."""
        if self.dist_rank != 0:
            return None
        if not self.iterations:
            raise ValueError("no iteration recorded (call step() after each iteration)")
        path = path or self.path
        I, L, R, E = len(self.iterations), self.layers, self.ranks, self.experts
        routed, _, bad = self._stage_counts(ROUTED)
        kept, _, bad_kept = self._stage_counts(KEPT)
        self._warn_zeros(path, routed)
        if bad or bad_kept:
            warnings.warn("flexmoe.capture: %s: %d slots had expert ids outside [0, %d) "
                          "(not a drop marker) and were counted as dropped"
                          % (path, max(bad, bad_kept), E), RuntimeWarning, stacklevel=2)
        meta = {k: v for k, v in self.meta.items() if v}  # 0 = unknown: left out
        meta.update({"layers": L, "ranks": R, "experts": E, "iterations": I,
                     "slots": "routed: the experts the router chose, before capacity drops"})
        if self.two_stage:
            kp = self.kept_path(path)
            meta["kept_trace"] = os.path.basename(kp)
            meta["dropped_slots"] = sum(routed) - sum(kept)
            kmeta = dict(meta, slots="kept: the slots dispatched after capacity drops",
                         routed_trace=os.path.basename(path))
            del kmeta["kept_trace"]
            write_npy(kp, kept, (I, L, R, E), kmeta)
        write_npy(path, routed, (I, L, R, E), meta)
        return path

    def _warn_zeros(self, path, flat):
        L, R, E = self.layers, self.ranks, self.experts
        I = len(self.iterations)
        if not any(flat):
            warnings.warn("flexmoe.capture: %s: the trace is all zero (%d iterations): no "
                          "router call was recorded (model in eval mode? routers not found? "
                          "step() called before any forward?)" % (path, I),
                          RuntimeWarning, stacklevel=3)
            return
        empty_layers, empty_ranks = [], 0
        for i in range(I):
            for l in range(L):
                rows = [sum(flat[((i * L + l) * R + r) * E:((i * L + l) * R + r + 1) * E])
                        for r in range(R)]
                if not any(rows):
                    empty_layers.append((i, l))
                else:
                    empty_ranks += sum(1 for x in rows if x == 0)
        if empty_layers:
            i, l = empty_layers[0]
            warnings.warn("flexmoe.capture: %s: %d of %d (iteration, layer) cells recorded no "
                          "slot (first: iteration %d, layer %d): a layer not attached, a "
                          "pipeline stage missing, or step() without a forward"
                          % (path, len(empty_layers), I * L, i, l), RuntimeWarning, stacklevel=3)
        if empty_ranks:
            warnings.warn("flexmoe.capture: %s: %d (iteration, layer, rank) cells recorded no "
                          "slot while other ranks did" % (path, empty_ranks),
                          RuntimeWarning, stacklevel=3)

    # -- hooks -------------------------------------------------------------
    def _hooked(self, handle):
        self.handles.append(handle)
        if self._skip_recompute and not self._watching:
            _watch_backward(True)
            self._watching = True
        return handle

    def step_with(self, optimizer):
        """Calls step() after every optimizer.step() (wraps the instance's
        step method: torch optimizers, Megatron's and DeepSpeed's)."""
        orig = optimizer.step
        rec = self

        def step(*args, **kwargs):
            out = orig(*args, **kwargs)
            rec.step()
            return out

        optimizer.step = step
        self.handles.append(_Restore(optimizer, "step", orig))
        return optimizer

    def detach(self):
        """Removes every hook this recorder added."""
        for h in self.handles:
            h.remove()
        self.handles = []
        if self._watching:
            _watch_backward(False)
            self._watching = False


class _Restore:
    def __init__(self, obj, name, value):
        self.obj, self.name, self.value = obj, name, value

    def remove(self):
        if self.value is None:
            try:
                delattr(self.obj, self.name)
            except AttributeError:
                pass
        else:
            setattr(self.obj, self.name, self.value)


def _megatron_parallel_state():
    ps = sys.modules.get("megatron.core.parallel_state")
    if ps is None:
        return None
    try:
        if ps.model_parallel_is_initialized():
            return ps
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------
# Hooks for any router


def attach_topk(recorder, gate, layer, top_k=None, rank=None, order="batch"):
    """Plain top-k gate: `gate` is the module whose output is the expert
    logits [..., E] (e.g. the nn.Linear of the router); the recorded experts
    are output.topk(k).indices, what a softmax/top-k router without capacity
    picks. Returns the hook handle."""
    k = top_k or recorder.top_k

    def hook(module, inputs, output):
        if recorder.active(module):
            logits = output[0] if isinstance(output, (tuple, list)) else output
            recorder.record(layer, logits.detach().topk(k, dim=-1).indices, rank=rank,
                            order=order)

    return recorder._hooked(gate.register_forward_hook(hook))


def attach_indices(recorder, module, layer, extract, rank=None, stage="both", order="batch"):
    """Any router: extract(output) returns the chosen expert ids [..., k]
    (or None to skip the call); ids outside [0, E) count as dropped."""

    def hook(mod, inputs, output):
        if recorder.active(mod):
            ids = extract(output)
            if ids is not None:
                recorder.record(layer, ids, rank=rank, stage=stage, order=order)

    return recorder._hooked(module.register_forward_hook(hook))


def attach_counts(recorder, module, layer, extract, rank=None, stage="both"):
    """Any router: extract(output) returns per-expert slot counts [E]. Not
    with virtual_ranks (counts say nothing of which rank sent the tokens)."""
    if recorder.virtual_ranks and rank is None:
        raise ValueError("attach_counts cannot split counts into virtual_ranks: record ids "
                         "(attach_indices, attach) or give rank=")

    def hook(mod, inputs, output):
        if recorder.active(mod):
            counts = extract(output)
            if counts is not None:
                recorder.record_counts(layer, counts, rank=rank, stage=stage)

    return recorder._hooked(module.register_forward_hook(hook))


def megatron_router_indices(output):
    """Megatron-core TopKRouter output -> expert ids [tokens, k]. Releases up
    to 0.9 return (probs, indices [tokens, k]) with INT64_MAX for a slot
    dropped by the capacity (counted as dropped); newer ones (probs,
    routing_map [tokens, E] bool), whose True entries are the kept experts."""
    second = output[1]
    if str(getattr(second, "dtype", "")) == "torch.bool":
        k = max(1, int(second.sum(dim=-1).max().item())) if second.numel() else 1
        idx = second.float().topk(k, dim=-1).indices  # chosen experts sort first
        return idx.masked_fill(~second.gather(-1, idx), -1)
    return second


def deepspeed_gate_counts(output):
    """DeepSpeed TopKGate output -> slots dispatched per expert after capacity
    drops: (l_aux, combine_weights, dispatch_mask [S, E, C], exp_counts)
    gives dispatch_mask summed; the 7-tuple (l_aux, capacity, E, indices,
    locations, gates, exp_counts) gives the non-negative indices counted."""
    if len(output) == 4:
        return output[2].sum(dim=(0, 2))
    E = int(output[2])
    ids = _ds_ids(output[3])
    torch = _torch()
    ids = ids.reshape(-1).long()
    return torch.bincount(torch.where(ids >= 0, ids, torch.full_like(ids, E)),
                          minlength=E + 1)[:E]


def _ds_ids(indices):
    """DeepSpeed's sparse gate indices ([k, S] tensor, or a list of k [S]
    tensors) as [S, k] ids, -1 for a dropped slot."""
    torch = _torch()
    if isinstance(indices, (list, tuple)):
        indices = torch.stack(list(indices))
    return indices.t()


# --------------------------------------------------------------------------
# Adapters: attach(model) finds the routers


class _Batch:
    """The shape of the hidden states a router's parent block saw last (for
    routers that receive flattened tokens)."""

    def __init__(self):
        self.batch = None


def _pre_batch(module, slot, axis):
    def pre(mod, inputs):
        x = inputs[0] if inputs else None
        slot.batch = x.shape[axis] if _is_tensor(x) and x.dim() >= 3 else None
    return module.register_forward_pre_hook(pre)


def _hf_sparse_block(rec, block, layer, k, E):
    """Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, PhiMoE-style blocks: `gate` is a
    Linear giving logits over flattened [B*T] tokens, batch-first; the router
    takes the top-k of softmax(logits) in float32, done here the same way (not
    topk(logits): values 1 ulp apart can tie after the softmax, and ties break
    by position)."""
    slot = _Batch()
    rec._hooked(_pre_batch(block, slot, 0))

    def hook(mod, inputs, output):
        if not rec.active(block):
            return
        ids = _int_tensor(output)
        if ids is None:
            logits = output[0] if isinstance(output, (tuple, list)) else output
            probs = _torch().softmax(logits.detach(), dim=-1, dtype=_torch().float)
            ids = probs.topk(k, dim=-1).indices
        rec.record(layer, ids, batch=slot.batch)

    rec._hooked(block.gate.register_forward_hook(hook))


def _int_tensor(output):
    """The first integer tensor in a router's output tuple (its chosen ids)."""
    if isinstance(output, (tuple, list)):
        for x in output:
            if _is_tensor(x) and not x.is_floating_point() and x.dtype != _torch().bool:
                return x
    return None


def _hf_gate_module(rec, block, layer):
    """DeepSeek-V2/V3-style: the block's `gate` is a module returning
    (topk_idx, topk_weight[, aux_loss]) for hidden states [B, T, d]."""
    slot = _Batch()
    rec._hooked(_pre_batch(block, slot, 0))

    def hook(mod, inputs, output):
        if not rec.active(block):
            return
        ids = _int_tensor(output)
        if ids is not None:
            x = inputs[0] if inputs else None
            b = x.shape[0] if _is_tensor(x) and x.dim() >= 3 else slot.batch
            rec.record(layer, ids, batch=b)

    rec._hooked(block.gate.register_forward_hook(hook))


def _switch_router(rec, router, layer):
    """SwitchTransformers Top1Router: (expert_index one-hot [B, T, E] after
    capacity, router_probs, router_logits): routed = argmax of the logits
    (after the router's jitter), kept = the one-hot mask."""

    def hook(mod, inputs, output):
        if not rec.active(mod):
            return
        mask, _, logits = output[0], output[1], output[2]
        probs = _torch().softmax(logits.detach(), dim=-1)   # as the router does
        rec.record(layer, probs.argmax(-1, keepdim=True), stage="routed")
        rec.record_mask(layer, mask, stage="kept")

    rec._hooked(router.register_forward_hook(hook))


def _deepspeed_gate(rec, gate, layer, order, moe_layer):
    """DeepSpeed TopKGate, every output form (4-tuple with dispatch_mask
    [S, E, C]; 7-tuple with indices [k, S] or a list of k [S], negative =
    dropped): kept = the dispatched slots per token; routed = the gate's own
    choices before drops, per token, rebuilt from its logits and the noise it
    sampled (_DeepSpeedReplay)."""
    slot = _Batch()
    if moe_layer is not None:
        rec._hooked(_pre_batch(moe_layer, slot, 1 if order == "sequence" else 0))
    replay = _DeepSpeedReplay.get(gate)
    rec.handles.append(replay.user())

    def pre(mod, inputs):
        replay.begin(mod.training and rec.active(mod))

    def hook(mod, inputs, output):
        got = replay.end()
        if not rec.active(mod):
            return
        if len(output) == 4:
            rec.record_mask(layer, output[2].any(-1), stage="kept", order=order,
                            batch=slot.batch)
        else:
            rec.record(layer, _ds_ids(output[3]), stage="kept", order=order, batch=slot.batch)
        ids = replay.routed(mod, inputs, got)
        if ids is not None:
            rec.record(layer, ids, stage="routed", order=order, batch=slot.batch)
        else:
            rec._warn_once(("ds", layer), "DeepSpeed layer %d: the gate's logits were not seen "
                           "(unknown gating function); its routed slots are missing" % layer)

    rec._hooked(gate.register_forward_pre_hook(pre))
    rec._hooked(gate.register_forward_hook(hook))


class _DeepSpeedReplay:
    """The per-token choices of a DeepSpeed TopKGate before capacity drops.

    Its outputs carry the slots kept after drops; its choices before drops
    are a function of the logits it computed and the Gumbel noise it sampled
    (top-2's second expert; top-1's RSample policy). While a recorded gate
    runs, the module functions top1gating / top2gating / topkgating keep a
    copy of their logits (top-2 adds the noise in place) and gumbel_rsample
    keeps what it returned; the choices are then rebuilt with DeepSpeed's own
    rule: top-1 argmax(logits + noise) (RSample) or argmax(softmax(logits)),
    masked by used_token; top-2 first = argmax(softmax(logits)), second =
    argmax of (logits + noise) without the first; top-k = topk(softmax).
    The wrappers are installed once per module and removed with the last
    recorder; outside a recorded gate call they only pass through."""

    _mods = {}

    @classmethod
    def get(cls, gate):
        import importlib
        mod = importlib.import_module(type(gate).__module__)
        r = cls._mods.get(mod.__name__)
        if r is None:
            r = cls._mods[mod.__name__] = cls(mod)
        return r

    def __init__(self, mod):
        self.mod = mod
        self.users = 0
        self.orig = {}
        self.on = False
        self.got = {}

    def user(self):
        if self.users == 0:
            self._install()
        self.users += 1
        return self

    def remove(self):
        self.users -= 1
        if self.users == 0:
            for name, f in self.orig.items():
                setattr(self.mod, name, f)
            self.orig = {}

    def _install(self):
        for name in ("top1gating", "top2gating", "topkgating", "gumbel_rsample"):
            f = getattr(self.mod, name, None)
            if f is None:
                continue
            self.orig[name] = f
            setattr(self.mod, name, self._wrap(name, f))

    def _wrap(self, name, f):
        def wrapper(*args, **kwargs):
            if self.on and name != "gumbel_rsample":
                logits = args[0] if args else kwargs["logits"]
                self.got["logits"] = logits.detach().clone()
                self.got["fn"] = name
            out = f(*args, **kwargs)
            if self.on and name == "gumbel_rsample":
                self.got["noise"] = out.detach()
            return out
        return wrapper

    def begin(self, on):
        self.on, self.got = on, {}

    def end(self):
        got, self.on, self.got = self.got, False, {}
        return got

    def routed(self, gate, inputs, got):
        torch = _torch()
        logits = got.get("logits")
        if logits is None:
            return None
        noise = got.get("noise")
        F = torch.nn.functional
        with torch.no_grad():
            if got["fn"] == "top1gating":
                if noise is not None and getattr(gate, "noisy_gate_policy", None) == "RSample":
                    ids = (logits + noise).argmax(1, keepdim=True)
                else:
                    ids = F.softmax(logits, dim=1).argmax(1, keepdim=True)
                used = inputs[1] if len(inputs) > 1 and _is_tensor(inputs[1]) else None
                if used is not None:
                    ids = ids.masked_fill(used.reshape(-1, 1) == 0, -1)
            elif got["fn"] == "top2gating":
                first = F.softmax(logits, dim=1).argmax(1, keepdim=True)
                rest = logits + noise if noise is not None else logits
                mask1 = torch.zeros_like(rest, dtype=torch.bool).scatter_(1, first, True)
                second = rest.masked_fill(mask1, float("-inf")).argmax(1, keepdim=True)
                ids = torch.cat([first, second], 1)
            else:
                ids = torch.topk(F.softmax(logits, dim=1), k=gate.k, dim=1).indices
        return ids


def _megatron_router(rec, router, layer):
    """Megatron-core TopKRouter: input [S, B, H] (sequence-first), output
    (probs, indices). indices [S*B, k] with INT64_MAX for a slot dropped by
    the capacity (kept = indices); with pad_to_capacity indices are [E, C]
    token ids per expert, probs 0 for padding (kept = the real ones). The
    routed choices before drops are the top-k of the router's logits (its
    gating method is wrapped to keep them) when a capacity is set; without
    a capacity routed = kept. Newer releases return a routing_map [S*B, E]."""
    cfg = router.config
    E, k = cfg.num_moe_experts, cfg.moe_router_topk
    capacity = getattr(cfg, "moe_expert_capacity_factor", None) is not None
    padded = capacity and getattr(cfg, "moe_pad_expert_input_to_capacity", False)
    state = {"logits": None}
    if capacity:
        orig = router.gating

        def gating(input):
            out = orig(input)
            if rec.active(router):
                state["logits"] = out.detach()
            return out

        router.gating = gating
        rec.handles.append(_Restore(router, "gating", None))

    def hook(mod, inputs, output):
        if not rec.active(mod):
            return
        x = inputs[0]
        b = x.shape[1] if x.dim() >= 3 else None
        probs, idx = output[0], output[1]
        if idx.dtype == _torch().bool:
            rec.record_mask(layer, idx, stage="kept" if capacity else "both", order="sequence",
                            batch=b)
        elif padded:
            _megatron_padded(rec, layer, probs, idx, E, b)
        else:
            if capacity:  # INT64_MAX marks a dropped slot: -1 is the recorder's marker
                idx = idx.masked_fill(idx == _INT64_MAX, -1)
            rec.record(layer, idx, stage="kept" if capacity else "both", order="sequence",
                       batch=b)
        if capacity and state["logits"] is not None:
            logits = state["logits"].reshape(-1, E)
            rec.record(layer, logits.topk(k, dim=-1).indices, stage="routed",
                       order="sequence", batch=b)
            state["logits"] = None

    rec._hooked(router.register_forward_hook(hook))


def _megatron_padded(rec, layer, probs, idx, E, b):
    """pad_to_capacity: idx [E, C] holds the token ids each expert took (a
    token's id is its position in the router's [S*B] tokens, sequence-first),
    probs [E, C] is 0 for a padding entry. kept = the real entries."""
    torch = _torch()
    C = idx.shape[1]
    buf = rec._buffer(idx.device)
    real = (probs.detach() > 0).reshape(-1).long().to(buf.device)
    tok = idx.reshape(-1).long().to(buf.device)
    if rec.virtual_ranks:
        seqs = b or int(tok.numel())
        r = (tok % seqs) * rec.virtual_ranks // seqs
    else:
        r = torch.full_like(tok, rec.dp_rank)
    e = torch.arange(1, E + 1, device=buf.device).repeat_interleave(C)
    base = (KEPT * rec.layers + layer) * rec.ranks
    buf.index_add_(0, (base + r) * rec._stride + e, real)
    rec._mark("kept")


def _megatron_contributes(router):
    ps = _megatron_parallel_state()
    if ps is None:
        return True
    tp = ps.get_tensor_model_parallel_world_size()
    if tp == 1:
        return True
    cfg = router.config
    if getattr(cfg, "moe_token_dispatcher_type", "") == "alltoall" or \
            not getattr(cfg, "sequence_parallel", False):
        # the router's indices cover the whole TP group's tokens on every TP rank
        return ps.get_tensor_model_parallel_rank() == 0
    return True


def _find_routers(model):
    """[(kind, module, parent)] in module order; nested matches skipped."""
    torch = _torch()
    found, taken = [], []
    parents = {}
    for name, mod in model.named_modules():
        for cname, child in mod.named_children():
            parents[id(child)] = mod
    for name, mod in model.named_modules():
        if any(name.startswith(t + ".") or name == t for t in taken):
            continue
        cls = type(mod).__name__
        kind = None
        if cls == "TopKGate" and hasattr(mod, "wg") and hasattr(mod, "k"):
            kind = "deepspeed"
        elif cls == "TopKRouter" and hasattr(getattr(mod, "config", None), "num_moe_experts"):
            kind = "megatron"
        elif cls.endswith("Top1Router") and hasattr(mod, "classifier"):
            kind = "switch"
        elif hasattr(mod, "gate") and isinstance(getattr(mod, "experts", None),
                                                 torch.nn.ModuleList) and \
                isinstance(mod.gate, torch.nn.Module):
            kind = "hf-linear" if isinstance(mod.gate, torch.nn.Linear) else "hf-gate"
        if kind:
            found.append((kind, name, mod, parents.get(id(mod))))
            taken.append(name)
    return found


def _geometry(kind, mod):
    """(experts, top_k) of a found router."""
    if kind == "deepspeed":
        return mod.wg.out_features, mod.k
    if kind == "megatron":
        return mod.config.num_moe_experts, mod.config.moe_router_topk
    if kind == "switch":
        return mod.num_experts, 1
    E = len(mod.experts)
    for a in ("top_k", "num_experts_per_tok"):
        k = getattr(mod, a, None)
        if k is None:
            k = getattr(getattr(mod, "gate", None), a, None)
        if k is None:
            k = getattr(getattr(mod, "config", None), a, None)
        if isinstance(k, int):
            return getattr(mod, "num_experts", None) or getattr(mod.gate, "n_routed_experts",
                                                                 None) or E, k
    raise ValueError("attach: found the MoE block %s but not its top-k (top_k or "
                     "num_experts_per_tok)" % type(mod).__name__)


def attach(model, path="routing.npy", layers=None, token_order=None, **kwargs):
    """Finds the MoE routers of model and returns a RoutingRecorder with their
    hooks attached (rec.detach() removes them). Recognised: HF transformers
    sparse blocks (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, PhiMoE: a `gate`
    Linear and `experts`), DeepSeek-V2/V3-style gates returning (topk_idx,
    topk_weight, ...), SwitchTransformers' Top1Router, DeepSpeed's TopKGate
    (any output form), Megatron-core's TopKRouter. Layers are numbered in
    module order (Megatron: the router's layer_number - 1, global across
    pipeline stages); layers= the total over all stages (default: the
    largest number found). token_order: "batch" or "sequence" for DeepSpeed
    (Megatron-DeepSpeed feeds [S, B, H]: "sequence"); HF is batch-first and
    Megatron sequence-first. Other keywords go to RoutingRecorder."""
    found = _find_routers(model)
    if not found:
        raise ValueError("attach: no MoE router found in %s (for a custom top-k gate use "
                         "attach_topk on its logits module)" % type(model).__name__)
    geo = {_geometry(kind, mod) for kind, _, mod, _ in found}
    if len(geo) != 1:
        raise ValueError("attach: routers disagree on (experts, top_k): %s" % sorted(geo))
    E, k = geo.pop()
    numbers = []
    for i, (kind, name, mod, parent) in enumerate(found):
        ln = getattr(mod, "layer_number", None) if kind == "megatron" else None
        numbers.append(ln - 1 if isinstance(ln, int) and ln >= 1 else i)
    if len(set(numbers)) != len(numbers):
        numbers = list(range(len(found)))
    L = layers or max(numbers) + 1
    kinds = sorted({kind for kind, _, _, _ in found})
    if "megatron" in kinds and "contributes" not in kwargs:
        kwargs["contributes"] = _megatron_contributes(found[0][2])
    kwargs.setdefault("source", "captured with flexmoe.capture.attach (%s)" % ", ".join(kinds))
    rec = RoutingRecorder(path, layers=L, experts=E, top_k=k, **kwargs)
    for (kind, name, mod, parent), layer in zip(found, numbers):
        if kind == "deepspeed":
            _deepspeed_gate(rec, mod, layer, token_order or "batch", parent)
        elif kind == "megatron":
            _megatron_router(rec, mod, layer)
        elif kind == "switch":
            _switch_router(rec, mod, layer)
        elif kind == "hf-linear":
            _hf_sparse_block(rec, mod, layer, k, E)
        else:
            _hf_gate_module(rec, mod, layer)
    rec.routers = [(name, kind, layer) for (kind, name, _, _), layer in zip(found, numbers)]
    return rec


def trainer_callback(rec, save=True):
    """An HF transformers TrainerCallback that calls rec.step() at the end of
    every optimizer step (after all gradient-accumulation micro-batches) and
    rec.save() at the end of training. Evaluation runs the model in eval mode
    and is not recorded."""
    from transformers import TrainerCallback

    class FlexmoeCapture(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            rec.step()

        def on_train_end(self, args, state, control, **kw):
            if save and rec.iterations:
                rec.save()

    return FlexmoeCapture()
