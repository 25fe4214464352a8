"""Example: capture the routing of a tiny 2-layer top-2 MoE (8 experts) trained
for 50 steps on the CPU, with the batch split into 4 data-parallel ranks
(virtual_ranks), into tiny.npy + tiny.json. Needs torch (requirements.txt).

    python3 traces/capture/example_tiny.py
    flexmoe trace info tiny.npy
    flexmoe sim --trace tiny.npy --cluster dgx-h100 --nodes 1 --gpus-per-node 4
"""
import os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flexmoe_capture as fc
torch.manual_seed(0)
d, E, k, V = 32, 8, 2, 64
class MoE(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.gate = torch.nn.Linear(d, E, bias=False)
        s.experts = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.GELU(), torch.nn.Linear(64, d)) for _ in range(E))
    def forward(s, x):
        w, idx = torch.softmax(s.gate(x), -1).topk(k, dim=-1); out = torch.zeros_like(x)
        for j in range(k):
            for e in range(E):
                m = idx[..., j] == e
                if m.any(): out[m] += w[..., j][m].unsqueeze(-1) * s.experts[e](x[m])
        return x + out
class Net(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.emb = torch.nn.Embedding(V, d); s.moe = torch.nn.ModuleList(MoE() for _ in range(2)); s.out = torch.nn.Linear(d, V)
    def forward(s, t):
        h = s.emb(t)
        for m in s.moe: h = m(h)
        return s.out(h)
net = Net()
rec = fc.RoutingRecorder("tiny.npy", layers=2, experts=E, top_k=k, virtual_ranks=4, d_model=d, d_ff=64, bytes_per_elem=4,
                         source="tiny 2-layer top-2 MoE, 8 experts, trained 50 steps on the CPU (traces/capture example)")
for l, m in enumerate(net.moe): fc.attach_topk(rec, m.gate, layer=l)
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for step in range(50):
    t = torch.randint(0, V, (16, 32)); t[:, 1::2] = (t[:, 0::2] * 7) % V
    loss = torch.nn.functional.cross_entropy(net(t)[:, :-1].reshape(-1, V), t[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step(); rec.step()
print("saved", rec.save(), "loss", round(loss.item(), 3))
