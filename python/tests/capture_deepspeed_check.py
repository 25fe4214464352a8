"""DeepSpeed's MoE layer recorded by flexmoe.capture.attach, checked against
DeepSpeed's own routing: run as a script (one DeepSpeed version per process:
test_capture_frameworks.py runs it for the version in the venv and for the
oldest one, PYTHONPATH=its directory). Prints one JSON line of results;
exits 1 on a mismatch.

For every gate form (top-1 with RSample noise and used_token masks, top-2
with Gumbel-sampled second experts, top-k > 2 where the version has it; the
dense 4-tuple and the sparse 7-tuple outputs where the version has it; with
and without capacity drops), on a tiny model trained for a few steps with
2 virtual ranks, gradient accumulation, activation checkpointing and an eval
pass:
  kept   == the slots in the gate's dispatch (dispatch_mask / indices), per rank
  routed == DeepSpeed's pre-drop choices: without drops == kept; with drops
            the totals == exp_counts where DeepSpeed counts all k slots (and the
            first slots where 0.13's top-2 counts only those), routed >= kept
"""
import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.utils.checkpoint

warnings.simplefilter("ignore")
import deepspeed  # noqa: E402
from deepspeed.moe.layer import MoE  # noqa: E402
from deepspeed.moe import sharded_moe  # noqa: E402

import flexmoe.capture as fc  # noqa: E402

D, E, B, T, R = 16, 4, 4, 8, 2


class Net(torch.nn.Module):
    def __init__(self, k, capacity, noisy, sparse):
        super().__init__()
        self.emb = torch.nn.Embedding(32, D)
        expert = torch.nn.Sequential(torch.nn.Linear(D, 2 * D), torch.nn.ReLU(),
                                     torch.nn.Linear(2 * D, D))
        kw = dict(hidden_size=D, expert=expert, num_experts=E, k=k, capacity_factor=capacity,
                  eval_capacity_factor=capacity, min_capacity=0, noisy_gate_policy=noisy)
        self.moe = torch.nn.ModuleList(MoE(**kw) for _ in range(2))
        self.out = torch.nn.Linear(D, 32)
        self.sparse = sparse
        self.truth = []

    def forward(self, t, checkpoint=False):
        h = self.emb(t)
        if self.sparse == "gate":
            # the gate called directly: its dense 4-tuple form in every version
            for moe in self.moe:
                gate = moe.deepspeed_moe.gate
                out = gate(h.reshape(-1, D))
                h = h + out[1].sum() * 0 if len(out) == 4 else h
            return self.out(h)
        for moe in self.moe:
            if checkpoint:
                h = h + torch.utils.checkpoint.checkpoint(lambda x, m=moe: m(x)[0], h)
            else:
                h = h + moe(h)[0]
        return self.out(h)


def truth_hook(net, layer, store):
    """What DeepSpeed dispatched and counted, straight from the gate's output."""
    def hook(mod, inputs, output):
        # the first call per layer and micro-batch: a recomputation comes later
        if not mod.training or any(x[0] == layer for x in store):
            return
        if len(output) == 4:
            kept = output[2].any(-1).long()             # [S, E]
        else:
            ids = output[3]
            ids = torch.stack(list(ids)) if isinstance(ids, (list, tuple)) else ids
            kept = torch.zeros(ids.shape[1], E, dtype=torch.long)
            for j in range(ids.shape[0]):
                ok = ids[j] >= 0
                kept[ok] += torch.nn.functional.one_hot(ids[j][ok].long(), E)
        per_rank = kept.view(R, -1, E).sum(1)          # tokens batch-first: B/R rows each
        store.append((layer, per_rank, output[-1].detach().cpu().clone()))
    return hook


def run(k, capacity, noisy, sparse):
    torch.manual_seed(1)
    net = Net(k, capacity, noisy, sparse)
    rec = fc.attach(net, "/tmp/unused.npy", virtual_ranks=R)
    truth = []
    hs = [m.deepspeed_moe.gate.register_forward_hook(truth_hook(net, l, truth))
          for l, m in enumerate(net.moe)]
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    steps, micro = 3, 2
    expect_kept = torch.zeros(steps, 2, R, E, dtype=torch.long)
    expect_total = torch.zeros(steps, 2, E, dtype=torch.long)
    for s in range(steps):
        for mb in range(micro):
            t = torch.randint(0, 32, (B, T))
            loss = net(t, checkpoint=(mb == 1)).float().pow(2).mean()
            loss.backward()
            for layer, per_rank, counts in truth:
                expect_kept[s, layer] += per_rank
                expect_total[s, layer] += counts.long()
            truth.clear()
        opt.step()
        opt.zero_grad()
        rec.step()
    net.eval()
    with torch.no_grad():
        net(torch.randint(0, 32, (B, T)))
    net.train()
    for h in hs:
        h.remove()
    rec.detach()
    routed = torch.tensor(rec.counts("routed"))
    kept = torch.tensor(rec.counts("kept"))
    ok = bool((kept == expect_kept).all())
    old_top2 = k == 2 and deepspeed.__version__.startswith("0.13")
    if capacity >= 4:
        ok = ok and bool((routed == kept).all())
    else:
        ok = ok and bool((routed >= kept).all())
        dropped = int((routed - kept).sum())
        ok = ok and dropped > 0
    if not old_top2:
        ok = ok and bool((routed.sum(2) == expect_total).all())
    ok = ok and int(routed.sum()) == steps * micro * 2 * B * T * k
    return {"k": k, "capacity": capacity, "noisy": noisy, "sparse": sparse, "ok": ok,
            "routed_slots": int(routed.sum()), "dropped": int((routed - kept).sum()),
            "form": form(sparse)}


def form(sparse):
    if sparse == "gate" or not hasattr(sharded_moe, "_sparse_encode"):
        return "4-tuple"
    return "7-tuple"


def main():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)
    # DeepSpeed >= 0.14 builds a shared-memory all-reduce op for the CPU when
    # its communication starts (a C++ JIT build that needs torch's headers,
    # which Debian's python3-torch lacks); this test communicates nothing.
    import importlib
    ds_torch = importlib.import_module("deepspeed.comm.torch")  # not `import a.b.torch as`:
    if hasattr(ds_torch, "build_shm_op"):                        # that finds torch itself
        ds_torch.build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="gloo")
    cases = [(1, 4.0, "RSample", False), (1, 0.5, "RSample", False), (2, 4.0, None, False),
             (2, 0.5, None, False), (2, 0.5, "Jitter", False)]
    if hasattr(sharded_moe, "topkgating"):
        cases += [(3, 0.5, None, False)]
    if hasattr(sharded_moe, "_sparse_encode"):   # MOELayer uses the 7-tuple: the gate alone
        cases += [(2, 0.5, None, "gate"), (1, 0.5, "RSample", "gate")]
    res = [run(*c) for c in cases]
    print(json.dumps({"deepspeed": deepspeed.__version__, "cases": res}))
    return 0 if all(r["ok"] for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
