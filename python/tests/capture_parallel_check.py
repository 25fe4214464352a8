"""flexmoe.capture under torch.distributed on gloo (CPU): several processes,
one trace. Run as a script: capture_parallel_check.py LAYOUT[,LAYOUT...] OUT_DIR
(the layouts run one after the other in the same 4 processes), LAYOUT one of
  dp4      4 data-parallel processes (the world is the data-parallel group)
  tp2dp2   Megatron parallel_state with tensor parallel 2 x data parallel 2:
           both TP ranks route the same tokens, counted once, ranks = 2
  pp2dp2   pipeline parallel 2 x data parallel 2: each stage owns one of the
           two MoE layers; step() gathers both into one trace
Every process trains the same tiny two-layer top-2 MoE (same weights) on the
tokens of its data-parallel rank (seeded by that rank) and rank 0 writes
OUT_DIR/LAYOUT.npy; the parent test compares it with each data-parallel
rank's routing computed alone in one process (expected.json, written here by
rank 0 from a recorder-free run of the same model).
"""
import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

warnings.simplefilter("ignore")

D, E, K, B, T, STEPS = 16, 8, 2, 4, 6, 3


class MoE(torch.nn.Module):
    """A plain top-k gate (an nn.Linear) in front of E small experts."""

    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(D, E, bias=False)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(D, D) for _ in range(E))
        self.top_k = K

    def forward(self, x):
        w, idx = torch.softmax(self.gate(x), -1).topk(K, dim=-1)
        out = torch.zeros_like(x)
        for j in range(K):
            for e in range(E):
                m = idx[..., j] == e
                if m.any():
                    out[m] += w[..., j][m].unsqueeze(-1) * self.experts[e](x[m])
        return x + out


def model():
    torch.manual_seed(0)
    return torch.nn.ModuleList(MoE() for _ in range(2))


def tokens(dp_rank, step):
    g = torch.Generator().manual_seed(1000 * dp_rank + step)
    return torch.randn(B, T, D, generator=g)


def expected(dp_size):
    """[STEPS, 2, dp_size, E]: each rank's routing computed alone."""
    net = model()
    out = torch.zeros(STEPS, 2, dp_size, E, dtype=torch.long)
    for r in range(dp_size):
        for s in range(STEPS):
            h = tokens(r, s)
            for l, m in enumerate(net):
                ids = torch.softmax(m.gate(h), -1).topk(K, dim=-1).indices
                out[s, l, r] += torch.bincount(ids.reshape(-1), minlength=E)
                h = m(h)
    return out


def worker(rank, world, layouts, out_dir, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for layout in layouts:
        run_layout(rank, layout, out_dir)
        dist.barrier()
    dist.destroy_process_group()


def run_layout(rank, layout, out_dir):
    import flexmoe.capture as fc
    dp_rank, stage, layers_here = rank, 0, [0, 1]
    if layout in ("tp2dp2", "pp2dp2"):
        from megatron.core import parallel_state as ps
        if layout == "tp2dp2":
            ps.initialize_model_parallel(tensor_model_parallel_size=2)
        else:
            ps.initialize_model_parallel(pipeline_model_parallel_size=2)
            stage = ps.get_pipeline_model_parallel_rank()
            layers_here = [stage]
        dp_rank = ps.get_data_parallel_rank()
    net = model()
    rec = fc.RoutingRecorder(os.path.join(out_dir, layout + ".npy"), layers=2, experts=E,
                             top_k=K)
    for l in layers_here:
        fc.attach_topk(rec, net[l].gate, layer=l)
    for s in range(STEPS):
        h = tokens(rec.dp_rank, s)
        # a pipeline stage receives its input from the stage before: here each
        # stage recomputes the earlier layers without recording them
        for l, m in enumerate(net):
            if l in layers_here:
                h = m(h)
            else:
                with rec.paused():
                    h = m(h)
        rec.step()
    assert rec.dp_rank == dp_rank, (rec.dp_rank, dp_rank)
    rec.save()
    if rank == 0:
        with open(os.path.join(out_dir, layout + ".json.expected"), "w") as f:
            json.dump({"ranks": rec.ranks, "counts": expected(rec.ranks).tolist()}, f)
    if layout != "dp4":
        from megatron.core import parallel_state as ps
        dist.barrier()
        ps.destroy_model_parallel()


def main():
    layouts, out_dir = sys.argv[1].split(","), sys.argv[2]
    world = 4
    port = 31000 + os.getpid() % 2000
    mp.spawn(worker, args=(world, layouts, out_dir, port), nprocs=world, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
