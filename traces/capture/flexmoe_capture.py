"""flexmoe_capture - record the routing of a PyTorch MoE model as a flexmoe trace.

A trace is counts[iteration][layer][rank][expert]: how many top-k slots the
tokens of data-parallel rank r sent to expert e at (iteration, layer). This
module collects those counts from forward hooks on the model's gates and
writes them as flexmoe's ``.npy`` (int32, C order, shape [I, L, R, E]) with a
``.json`` sidecar (top_k, d_model, d_ff, tokens_per_rank, source), which
``flexmoe trace info`` / ``flexmoe sim --trace`` read directly.

Pure Python (standard library) for the bookkeeping and the file format; torch
is only needed for the hooks themselves (``attach_*``) and for
``torch.distributed``. Nothing here changes the model's outputs.

Typical use (plain top-k gate = an ``nn.Linear`` producing expert logits)::

    rec = RoutingRecorder(path="routing.npy", layers=6, experts=32, top_k=2,
                          d_model=384, d_ff=768)
    for l, block in enumerate(model.blocks):
        attach_topk(rec, block.moe.gate, layer=l)
    for batch in loader:
        loss = model(batch); loss.backward(); opt.step()
        rec.step()                 # one iteration recorded
    rec.save()                     # routing.npy + routing.json (rank 0 only)

Data-parallel ranks: with ``torch.distributed`` initialised, every process
records its own tokens as rank ``dist.get_rank(dp_group)`` and ``step()``
all-gathers the [L, E] counts so rank 0 holds [L, R, E] per iteration (pass
``dp_group`` for Megatron/DeepSpeed's data-parallel group). In one process,
``virtual_ranks=R`` splits each gate call's tokens into R equal contiguous
chunks (batch-major), i.e. the batch as R data-parallel ranks would see it.

Iterations: call ``step()`` once per optimizer step; calls between two steps
add up (gradient-accumulation micro-batches count into the same iteration).
Only modules in training mode are recorded (evaluation passes are not), and
``with rec.paused():`` skips anything (e.g. activation recomputation, which
re-runs the gate during backward).
"""

import contextlib
import json
import os
import struct
import tempfile

__all__ = [
    "RoutingRecorder",
    "attach_topk",
    "attach_indices",
    "attach_counts",
    "deepspeed_gate_counts",
    "megatron_router_indices",
    "write_npy",
]


def _tolist(x):
    """A tensor / ndarray / nested sequence as nested Python lists."""
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    if hasattr(x, "tolist"):
        return x.tolist()
    return x


def _flatten_ids(ids, top_k):
    """Expert ids of shape [..., k] as a list of per-token lists of k ids."""
    ids = _tolist(ids)
    if isinstance(ids, int):
        return [[ids]]
    out = []

    def walk(x):
        if x and isinstance(x[0], (list, tuple)):
            for y in x:
                walk(y)
        else:
            out.append(list(x))

    walk(ids)
    if top_k == 1 and out and all(len(t) != 1 for t in out):
        # [tokens] of single ids given flat
        return [[i] for t in out for i in t]
    return out


def write_npy(path, counts, shape, meta=None):
    """Writes int32 counts (flat list in C order) with shape (I, L, R, E) to
    path as .npy v1.0, and meta (a dict) as the same-name .json sidecar; both
    under temporary names in the same directory, then renamed (sidecar first),
    so a reader never sees a half-written trace."""
    n = 1
    for d in shape:
        n *= d
    if len(counts) != n:
        raise ValueError("counts has %d values, shape %r needs %d" % (len(counts), shape, n))
    if any(c < 0 or c > 2**31 - 1 for c in counts):
        raise ValueError("counts must be in [0, 2^31)")
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
            f.write(struct.pack("<%di" % n, *counts))
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


class RoutingRecorder:
    """Collects per-(iteration, layer, rank, expert) slot counts.

    layers, experts, top_k: the model's MoE layers, experts per layer and k.
    ranks: data-parallel ranks in the trace; None = the torch.distributed
      world size of dp_group (1 without torch.distributed), or virtual_ranks.
    virtual_ranks: split each call's tokens into this many contiguous chunks
      (one process standing for R data-parallel ranks).
    d_model, d_ff, bytes_per_elem, tokens_per_rank: metadata for the sidecar
      (tokens_per_rank defaults to the tokens seen per rank in iteration 0).
    """

    def __init__(self, path, layers, experts, top_k, ranks=None, virtual_ranks=None,
                 d_model=0, d_ff=0, bytes_per_elem=0, tokens_per_rank=0, source="",
                 dp_group=None):
        if layers < 1 or experts < 1 or top_k < 1 or top_k > experts:
            raise ValueError("need layers >= 1, experts >= 1, 1 <= top_k <= experts")
        self.path = path
        self.layers, self.experts, self.top_k = layers, experts, top_k
        self.dp_group = dp_group
        self.virtual_ranks = virtual_ranks
        self.dist_rank, self.dist_world = self._dist()
        if virtual_ranks and self.dist_world > 1:
            raise ValueError("virtual_ranks is for one process; under torch.distributed "
                             "every process records its own rank")
        self.ranks = ranks or virtual_ranks or self.dist_world
        self.meta = {"top_k": top_k, "d_model": d_model, "d_ff": d_ff,
                     "bytes_per_elem": bytes_per_elem, "tokens_per_rank": tokens_per_rank,
                     "source": source or "captured with traces/capture/flexmoe_capture.py"}
        self.enabled = True
        self.iterations = []  # per iteration: flat [L * R * E]
        self._cur = [0] * (layers * self.ranks * experts)
        self._tokens = [0] * (layers * self.ranks)
        self._seen = False

    @staticmethod
    def _dist():
        try:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                return dist.get_rank(), dist.get_world_size()
        except ImportError:
            pass
        return 0, 1

    def _rank(self):
        if self.dist_world > 1:
            import torch.distributed as dist
            return dist.get_rank(group=self.dp_group) if self.dp_group else self.dist_rank
        return 0

    @contextlib.contextmanager
    def paused(self):
        """Nothing is recorded inside (activation recomputation, evaluation)."""
        was, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = was

    def _add(self, layer, rank, expert, n=1):
        if not 0 <= layer < self.layers:
            raise ValueError("layer %d outside [0, %d)" % (layer, self.layers))
        if not 0 <= expert < self.experts:
            raise ValueError("expert id %d outside [0, %d)" % (expert, self.experts))
        self._cur[(layer * self.ranks + rank) * self.experts + expert] += n
        self._seen = True

    def record(self, layer, expert_ids, rank=None):
        """Expert ids chosen by the tokens of one gate call, shape [..., k]
        (a tensor or nested lists; -1 = a dropped slot, not counted). rank:
        the data-parallel rank of these tokens (default: this process's, or
        the virtual_ranks split)."""
        if not self.enabled:
            return
        tokens = _flatten_ids(expert_ids, self.top_k)
        if rank is None and self.virtual_ranks:
            n, R = len(tokens), self.virtual_ranks
            for r in range(R):
                self._record_tokens(layer, r, tokens[r * n // R:(r + 1) * n // R])
        else:
            self._record_tokens(layer, self._rank() if rank is None else rank, tokens)

    def _record_tokens(self, layer, rank, tokens):
        if not 0 <= rank < self.ranks:
            raise ValueError("rank %d outside [0, %d)" % (rank, self.ranks))
        for t in tokens:
            for e in t:
                if e >= 0:
                    self._add(layer, rank, int(e))
        self._tokens[layer * self.ranks + rank] += len(tokens)

    def record_counts(self, layer, counts, rank=None, tokens=None):
        """Per-expert slot counts [E] of one gate call (for gates that expose
        counts or a dispatch mask rather than ids)."""
        if not self.enabled:
            return
        counts = [int(c) for c in _tolist(counts)]
        if len(counts) != self.experts:
            raise ValueError("expected %d expert counts, got %d" % (self.experts, len(counts)))
        r = self._rank() if rank is None else rank
        for e, c in enumerate(counts):
            if c:
                self._add(layer, r, e, c)
        self._tokens[layer * self.ranks + r] += tokens if tokens is not None else sum(counts) // self.top_k

    def step(self):
        """Closes the current iteration (call after each optimizer step)."""
        cur = self._cur
        if self.dist_world > 1:
            cur = self._gather(cur)
        if self.dist_rank == 0 or self.dist_world == 1:
            if not self.meta["tokens_per_rank"] and self._seen:
                self.meta["tokens_per_rank"] = max(self._tokens)
            self.iterations.append(cur)
        self._cur = [0] * (self.layers * self.ranks * self.experts)
        self._tokens = [0] * (self.layers * self.ranks)
        self._seen = False

    def _gather(self, cur):
        """All-gathers every process's own [L, E] counts into [L, R, E]."""
        import torch
        import torch.distributed as dist
        L, R, E, me = self.layers, self.ranks, self.experts, self._rank()
        mine = torch.tensor([cur[(l * R + me) * E + e] for l in range(L) for e in range(E)],
                            dtype=torch.int64)
        parts = [torch.zeros_like(mine) for _ in range(R)]
        dist.all_gather(parts, mine, group=self.dp_group)
        out = [0] * (L * R * E)
        for r, p in enumerate(parts):
            p = p.tolist()
            for l in range(L):
                out[(l * R + r) * E:(l * R + r + 1) * E] = p[l * E:(l + 1) * E]
        return out

    def save(self, path=None):
        """Writes the recorded iterations (rank 0 only under torch.distributed)."""
        if self.dist_world > 1 and self.dist_rank != 0:
            return None
        if not self.iterations:
            raise ValueError("no iteration recorded (call step() after each iteration)")
        path = path or self.path
        flat = [c for it in self.iterations for c in it]
        meta = {k: v for k, v in self.meta.items() if v}  # 0 = unknown: left out
        meta.update({"layers": self.layers, "ranks": self.ranks, "experts": self.experts,
                     "iterations": len(self.iterations)})
        write_npy(path, flat, (len(self.iterations), self.layers, self.ranks, self.experts), meta)
        return path


def _training(module):
    return getattr(module, "training", True)


def attach_topk(recorder, gate, layer, top_k=None, rank=None):
    """Plain top-k gate: `gate` is the module whose output is the expert
    logits [..., E] (e.g. the nn.Linear of the router); the recorded experts
    are output.topk(k).indices, exactly what a softmax/top-k router picks.
    Returns the hook handle (handle.remove() detaches it)."""
    k = top_k or recorder.top_k

    def hook(module, inputs, output):
        if recorder.enabled and _training(module):
            logits = output[0] if isinstance(output, (tuple, list)) else output
            recorder.record(layer, logits.topk(k, dim=-1).indices, rank=rank)

    return gate.register_forward_hook(hook)


def attach_indices(recorder, module, layer, extract, rank=None):
    """Any gate: extract(output) returns the chosen expert ids [..., k]
    (or None to skip the call)."""

    def hook(mod, inputs, output):
        if recorder.enabled and _training(mod):
            ids = extract(output)
            if ids is not None:
                recorder.record(layer, ids, rank=rank)

    return module.register_forward_hook(hook)


def attach_counts(recorder, module, layer, extract, rank=None):
    """Any gate: extract(output) returns per-expert slot counts [E]."""

    def hook(mod, inputs, output):
        if recorder.enabled and _training(mod):
            counts = extract(output)
            if counts is not None:
                recorder.record_counts(layer, counts, rank=rank)

    return module.register_forward_hook(hook)


def megatron_router_indices(output):
    """Megatron-core TopKRouter output -> expert ids. Older releases return
    (scores, indices [tokens, k]); newer return (probs, routing_map [tokens, E]
    bool), whose True entries are the chosen experts."""
    second = output[1]
    if str(getattr(second, "dtype", "")) == "torch.bool":
        k = max(1, int(second.sum(dim=-1).max().item())) if second.numel() else 1
        idx = second.float().topk(k, dim=-1).indices  # chosen experts sort first
        return idx.masked_fill(~second.gather(-1, idx), -1)
    return second


def deepspeed_gate_counts(output):
    """DeepSpeed TopKGate output (l_aux, combine_weights, dispatch_mask
    [S, E, C], exp_counts) -> slots dispatched per expert (after capacity
    drops). To record the intended routing before drops, hook the gate's
    linear layer (gate.wg) with attach_topk instead."""
    dispatch_mask = output[2]
    return dispatch_mask.sum(dim=(0, 2))
