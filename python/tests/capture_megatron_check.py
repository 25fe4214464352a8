"""Megatron-core's MoE layer and router recorded by flexmoe.capture.attach,
checked against Megatron's own routing: run as a script (it initialises
torch.distributed on gloo and Megatron's parallel_state; one process).
Prints one JSON line; exits 1 on a mismatch.

Hidden states are [S, B, H], sequence-first: with 2 virtual ranks, rank r
holds the sequences b with b * 2 // B == r, and each rank's truth comes from
running Megatron on that rank's columns alone. Cases:
  aux_loss top-2, no capacity, full MoELayer training with Megatron's
    activation checkpointing and an eval pass: routed == kept == the rows
    each expert's MLP received; per rank == the router on the rank's columns
  sinkhorn top-1 with input jitter: totals == the rows each expert received
  capacity 0.5 with pad_to_capacity (MoELayer): kept / routed == Megatron's
    topk_softmax_with_capacity without padding on the same logits
  capacity 0.5 without padding (the router: Megatron 0.8's CPU dispatch
    writes out of bounds on the INT64_MAX indices, see the README):
    dropped slots (INT64_MAX) counted as dropped, kept / routed as above
"""
import json
import os
import sys
import warnings

import torch
import torch.distributed as dist

warnings.simplefilter("ignore")
# Megatron 0.8's alltoall dispatcher asks for the CUDA device at construction;
# on a CPU-only torch the tensors it makes there can live on the CPU.
# Its activation checkpointing saves and restores the CUDA RNG state: on the
# CPU the CPU generator's state stands in (jitter-free routing does not use it).
if not torch.cuda.is_available():
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.get_rng_state = lambda *a: torch.get_rng_state()

import flexmoe.capture as fc  # noqa: E402

S, B, H, E, R = 6, 4, 16, 4, 2


def setup():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(30500 + os.getpid() % 1000))
    dist.init_process_group("gloo", rank=0, world_size=1)
    from megatron.core import parallel_state as ps
    ps.initialize_model_parallel(1, 1)
    if not torch.cuda.is_available():
        from megatron.core.tensor_parallel import random as mr
        mr._set_cuda_rng_state = lambda *a, **kw: None


def config(**kw):
    from megatron.core.transformer.transformer_config import TransformerConfig
    base = dict(num_layers=2, hidden_size=H, num_attention_heads=2, num_moe_experts=E,
                moe_router_topk=2, use_cpu_initialization=True, add_bias_linear=False,
                moe_token_dispatcher_type="alltoall", moe_router_load_balancing_type="aux_loss",
                moe_aux_loss_coeff=0.01)
    base.update(kw)
    return TransformerConfig(**base)


def moe_layers(cfg):
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.moe.moe_layer import MoELayer
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    get_cuda_rng_tracker().reset()  # checkpointing on the CPU left it half set up
    spec = get_gpt_layer_local_spec(num_experts=E, moe_grouped_gemm=False)
    layers = torch.nn.ModuleList(MoELayer(cfg, spec.submodules.mlp.submodules,
                                          layer_number=i + 1) for i in range(2))
    # 0.8 leaves the router's weight as torch.empty when its CUDA RNG tracker
    # is not set up (the CPU case): give it seeded values
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in layers:
            layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=g))
    return layers


def rows_probe(layers, store):
    """Rows each local expert MLP received (first call per layer and step)."""
    hs = []
    for l, layer in enumerate(layers):
        for e, ex in enumerate(layer.experts.local_experts):
            def hook(mod, inp, out, l=l, e=e):
                if mod.training and not store["recompute"]:
                    store["rows"][l, e] += inp[0].shape[0]
            hs.append(ex.register_forward_hook(hook))
    return hs


def forward(layers, x, checkpoint=False):
    from megatron.core import tensor_parallel
    h = x
    for layer in layers:
        if checkpoint:
            out = tensor_parallel.checkpoint(lambda y, m=layer: m(y)[0], False, h)
        else:
            out = layer(h)[0]
        h = h + out
    return h


def per_rank_truth(layer, x, k):
    """The router on each virtual rank's columns alone -> [R, E] counts."""
    out = torch.zeros(R, E, dtype=torch.long)
    with torch.no_grad():
        for r in range(R):
            cols = x[:, r * B // R:(r + 1) * B // R]
            ids = layer.router(cols)[1].reshape(-1)
            out[r] += torch.bincount(ids, minlength=E)
    return out


def case_aux_loss():
    cfg = config()
    torch.manual_seed(0)
    layers = moe_layers(cfg)
    rec = fc.attach(layers, "/tmp/unused.npy", virtual_ranks=R)
    store = {"rows": torch.zeros(2, E, dtype=torch.long), "recompute": False}
    hs = rows_probe(layers, store)
    opt = torch.optim.SGD(layers.parameters(), lr=0.05)
    steps, ok = 3, True
    per_rank = torch.zeros(steps, 2, R, E, dtype=torch.long)
    rows = torch.zeros(steps, 2, E, dtype=torch.long)
    for s in range(steps):
        store["rows"].zero_()
        for mb in range(2):  # gradient accumulation: 2 micro-batches per step
            x = torch.randn(S, B, H)
            # truth first (the router is deterministic without jitter)
            h = x
            with rec.paused():   # not recorded, and its expert rows not counted
                for l, layer in enumerate(layers):
                    per_rank[s, l] += per_rank_truth(layer, h, 2)
                    with torch.no_grad():
                        h = h + layer(h)[0]
            before = store["rows"].clone()
            out = forward(layers, x.requires_grad_(), checkpoint=(mb == 1))
            store["recompute"] = True
            out.pow(2).mean().backward()
            store["recompute"] = False
            rows[s] += store["rows"] - before
        opt.step()
        opt.zero_grad()
        rec.step()
    for layer in layers:
        layer.eval()
    with torch.no_grad():
        forward(layers, torch.randn(S, B, H))
    for h in hs:
        h.remove()
    rec.detach()
    routed, kept = torch.tensor(rec.counts("routed")), torch.tensor(rec.counts("kept"))
    ok = bool((routed == kept).all()) and bool((routed == per_rank).all())
    ok = ok and bool((routed.sum(2) == rows).all()) and not rec.two_stage
    return {"case": "aux_loss top-2, no capacity, checkpointing, accumulation", "ok": ok,
            "slots": int(routed.sum())}


def case_sinkhorn_jitter():
    cfg = config(moe_router_topk=1, moe_router_load_balancing_type="sinkhorn",
                 moe_input_jitter_eps=0.1, moe_aux_loss_coeff=0.0)
    torch.manual_seed(0)
    layers = moe_layers(cfg)
    rec = fc.attach(layers, "/tmp/unused.npy", virtual_ranks=R)
    store = {"rows": torch.zeros(2, E, dtype=torch.long), "recompute": False}
    hs = rows_probe(layers, store)
    for s in range(2):
        out = forward(layers, torch.randn(S, B, H))
        store["recompute"] = True
        out.pow(2).mean().backward()
        store["recompute"] = False
        rec.step()
    for h in hs:
        h.remove()
    rec.detach()
    routed = torch.tensor(rec.counts("routed"))
    ok = bool((routed.sum(0).sum(1) == store["rows"]).all())
    return {"case": "sinkhorn top-1, input jitter", "ok": ok, "slots": int(routed.sum())}


def capacity_truth(layer, x, k, cf):
    from megatron.core.transformer.moe.moe_utils import topk_softmax_with_capacity
    routed = torch.zeros(R, E, dtype=torch.long)
    kept = torch.zeros(R, E, dtype=torch.long)
    with torch.no_grad():
        logits = layer.router.gating(x).view(-1, E)
        _, idx, _ = topk_softmax_with_capacity(logits, k, capacity_factor=cf)
        top = torch.topk(logits, k, dim=1).indices
        rank = (torch.arange(logits.shape[0]) % B) * R // B   # token s*B + b
        for j in range(k):
            routed.index_put_((rank, top[:, j]), torch.ones_like(rank), accumulate=True)
            ok = idx[:, j] < E
            kept.index_put_((rank[ok], idx[ok, j]), torch.ones_like(rank[ok]), accumulate=True)
    return routed, kept


def case_capacity(pad):
    cf = 0.5
    cfg = config(moe_expert_capacity_factor=cf, moe_pad_expert_input_to_capacity=pad)
    torch.manual_seed(0)
    layers = moe_layers(cfg)
    rec = fc.attach(layers, "/tmp/unused.npy", virtual_ranks=R)
    exp_r = torch.zeros(2, R, E, dtype=torch.long)
    exp_k = torch.zeros(2, R, E, dtype=torch.long)
    x = torch.randn(S, B, H)
    h = x
    for l, layer in enumerate(layers):
        with rec.paused():
            r, k = capacity_truth(layer, h, 2, cf)
        exp_r[l] += r
        exp_k[l] += k
        if pad:
            out = layer(h)[0]
        else:
            layer.router(h)        # the dispatch of 0.8 fails on the CPU (see above)
            out = torch.zeros_like(h)
        h = h + out.detach()
    rec.step()
    rec.detach()
    routed, kept = torch.tensor(rec.counts("routed"))[0], torch.tensor(rec.counts("kept"))[0]
    ok = bool((routed == exp_r).all()) and bool((kept == exp_k).all()) and rec.two_stage
    ok = ok and int((exp_r - exp_k).sum()) > 0
    return {"case": "capacity 0.5, %s" % ("pad_to_capacity (MoELayer)" if pad else
                                          "INT64_MAX drops (router)"), "ok": ok,
            "slots": int(routed.sum()), "dropped": int((routed - kept).sum())}


def main():
    setup()
    import megatron.core
    res = [case_aux_loss(), case_sinkhorn_jitter(), case_capacity(True), case_capacity(False)]
    print(json.dumps({"megatron-core": getattr(megatron.core, "__version__", "?"),
                      "cases": res}))
    return 0 if all(r["ok"] for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
