"""Overhead of flexmoe.capture on a training step, and the cost of one router call.

    python3 traces/capture/bench_capture.py [--reps N] [--device cpu|cuda]

1. One router call: record() of the ids of 65,536 tokens x top-2 over 64
   experts (issue 22 measured the old per-slot Python loop at 118 ms), with 1
   and 8 virtual ranks; median of N calls after a warm-up.
2. A training step of a Mixtral-style model (HF transformers' MixtralForCausalLM
   when it imports, 4 layers, d_model 128, 8 experts top-2, batch 4 x 64
   tokens; else the same shape as plain PyTorch), forward + backward + Adam,
   with and without attach(model) + step(): the two interleaved in one
   process (A B A B ...), medians and their ratio, because the machine is
   shared and absolute times drift.
On CUDA the hooked step also runs under torch.cuda.set_sync_debug_mode("error"),
which raises on any synchronising call: the hooks make none (step() makes the
one transfer of the iteration, outside the mode).
Prints a header (versions, device, shape) and one table.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flexmoe_capture as fc  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_record(dev, reps):
    rows = []
    ids = torch.randint(0, 64, (65536, 2), device=dev)
    for vr in (None, 8):
        rec = fc.RoutingRecorder("/dev/null", layers=1, experts=64, top_k=2, virtual_ranks=vr)
        for _ in range(3):
            rec.record(0, ids, batch=64)
        times = []
        for _ in range(reps):
            sync(dev)
            t0 = time.perf_counter()
            rec.record(0, ids, batch=64)
            sync(dev)
            times.append(time.perf_counter() - t0)
        rows.append(("record 65536 tok x k=2, E=64, ranks %d" % (vr or 1),
                     statistics.median(times) * 1e3))
    return rows


def model(dev):
    torch.manual_seed(0)
    try:
        import transformers
        cfg = transformers.MixtralConfig(
            vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
            num_experts_per_tok=2, max_position_embeddings=512)
        net = transformers.MixtralForCausalLM(cfg).to(dev)
        return net, "transformers %s MixtralForCausalLM" % transformers.__version__, \
            lambda x: net(x, labels=x).loss
    except ImportError:
        pass

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = torch.nn.Linear(128, 8, bias=False)
            self.experts = torch.nn.ModuleList(torch.nn.Sequential(
                torch.nn.Linear(128, 256), torch.nn.SiLU(), torch.nn.Linear(256, 128))
                for _ in range(8))
            self.top_k = 2

        def forward(self, x):
            flat = x.reshape(-1, 128)
            w, idx = torch.softmax(self.gate(flat), -1).topk(2, dim=-1)
            out = torch.zeros_like(flat)
            for j in range(2):
                for e, ex in enumerate(self.experts):
                    m = idx[:, j] == e
                    out[m] += w[m, j:j + 1] * ex(flat[m])
            return x + out.view_as(x)

    emb = torch.nn.Embedding(1024, 128)
    blocks = torch.nn.Sequential(*[Block() for _ in range(4)])
    head = torch.nn.Linear(128, 1024)
    net = torch.nn.ModuleDict({"emb": emb, "blocks": blocks, "head": head}).to(dev)

    def loss(x):
        return torch.nn.functional.cross_entropy(head(blocks(emb(x))).reshape(-1, 1024),
                                                 x.reshape(-1))
    return net, "plain PyTorch MoE (transformers not importable)", loss


def bench_step(dev, reps):
    net, what, loss_fn = model(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randint(0, 1024, (4, 64), device=dev)
    rec = fc.attach(net, "/dev/null", virtual_ranks=4)
    rec.detach()

    def step(hooked):
        if hooked:
            rec.enabled = True
        loss_fn(x).backward()
        opt.step()
        opt.zero_grad()
        if hooked:
            rec.step()

    # "off" = the recorder detached (no hooks at all); "on" = attached, with
    # the time spent inside the recorder (its hooks' record calls and step())
    # summed directly as well, which the noise of a shared machine does not hide
    timings = {True: [], False: []}
    inside = []
    for i in range(2 * reps + 4):
        hooked = i % 2 == 0
        if hooked:
            rec = fc.attach(net, "/dev/null", virtual_ranks=4)
            spent = [0.0]
            for name in ("record", "step"):
                def timed(*a, _f=getattr(rec, name), **kw):
                    sync(dev)
                    t = time.perf_counter()
                    out = _f(*a, **kw)
                    sync(dev)
                    spent[0] += time.perf_counter() - t
                    return out
                setattr(rec, name, timed)
        sync(dev)
        t0 = time.perf_counter()
        if hooked and dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
            try:
                loss_fn(x).backward()
            finally:
                torch.cuda.set_sync_debug_mode(0)
            opt.step()
            opt.zero_grad()
            rec.step()
        else:
            step(hooked)
        sync(dev)
        dt = time.perf_counter() - t0
        if hooked:
            rec.detach()
        if i >= 4:
            timings[hooked].append(dt)
            if hooked:
                inside.append(spent[0])
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    return what, on * 1e3, off * 1e3, statistics.median(inside) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    print("# flexmoe.capture overhead: torch %s, device %s, threads %d, reps %d"
          % (torch.__version__, torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
             torch.get_num_threads(), a.reps))
    rows = bench_record(dev, a.reps)
    what, on, off, spent = bench_step(dev, a.reps)
    print("# model: %s, 4 layers, d_model 128, 8 experts top-2, batch 4 x 64 tokens, "
          "4 virtual ranks, Adam" % what)
    print("%-48s %12s" % ("measure", "value"))
    for name, ms in rows:
        print("%-48s %9.3f ms" % (name, ms))
    print("%-48s %9.1f ms" % ("training step, no recorder (median)", off))
    print("%-48s %9.1f ms" % ("training step, attach + step() (median)", on))
    print("%-48s %9.2f %%" % ("overhead (on / off - 1)", (on / off - 1) * 100))
    print("%-48s %9.3f ms" % ("inside the recorder per step (median)", spent))
    print("%-48s %9.3f %%" % ("inside the recorder / step without it", spent / off * 100))


if __name__ == "__main__":
    main()
