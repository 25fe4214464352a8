"""moe_torch.py - the same MoE layer as bench_kernels' executor run, in PyTorch.

Reads the counts JSON bench_kernels wrote (d_model, d_ff, top_k, tokens,
per-expert slot counts, flexmoe_ms), builds the layer the runtime replays:
slots expert-major, slot j belongs to token j mod T with a weight in
[0.5, 1); expert FFN relu(x W1) W2 in bf16; the weighted top-k sum back per
token; backward from a random output gradient to the inputs and all expert
weights. Times forward+backward with CUDA events (median of 20 after 5
warm-ups) and prints the ratio to flexmoe's time for the same layer.

usage: python3 moe_torch.py COUNTS.json
"""
import json
import sys

import torch


def main():
    cfg = json.load(open(sys.argv[1]))
    d, f, k, T = cfg["d_model"], cfg["d_ff"], cfg["top_k"], cfg["tokens"]
    counts = cfg["counts"]
    E, S = len(counts), sum(counts)
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1)
    X = torch.randn(T, d, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
    W1 = (torch.randn(E, d, f, device=dev, dtype=torch.bfloat16, generator=g) / d ** 0.5).requires_grad_()
    W2 = (torch.randn(E, f, d, device=dev, dtype=torch.bfloat16, generator=g) / f ** 0.5).requires_grad_()
    tok = torch.arange(S, device=dev) % T
    w = (0.5 + 0.5 * torch.rand(S, device=dev, generator=g)).to(torch.bfloat16)
    dout = torch.randn(T, d, device=dev, dtype=torch.bfloat16, generator=g)

    def layer():
        # torch.split (not slicing): its backward concatenates the pieces'
        # gradients instead of allocating a full-size zero tensor per slice
        xs = X.index_select(0, tok).split(counts)
        ys = [torch.relu(x @ W1[e]) @ W2[e] for e, x in enumerate(xs) if x.shape[0] > 0]
        y = torch.cat(ys) * w[:, None]
        out = torch.zeros(T, d, device=dev, dtype=torch.bfloat16).index_add_(0, tok, y)
        out.backward(dout)

    for _ in range(5):
        layer()
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        layer()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    ms = times[len(times) // 2]
    fx = cfg.get("flexmoe_ms")
    print(f"# PyTorch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"LAYER torch_ms {ms:.3f} (eager, per-expert matmuls, index_select/index_add, autograd; median of 20)")
    if fx:
        print(f"LAYER flexmoe_ms {fx:.3f}  ratio torch/flexmoe {ms / fx:.2f}x")


if __name__ == "__main__":
    main()
