"""flexmoe.capture (traces/capture/flexmoe_capture.py, installed in the
package) on a real tiny PyTorch MoE trained on the CPU: the recorded trace is
what the router chose, token for token, as the experts saw it; and the
package simulates it. The model is tests/traces/test_capture.py's (the
hook's own file-format tests stay there)."""
import importlib.util
import os

import numpy as np
import pytest

import flexmoe
from conftest import ROOT

try:
    import torch
except ImportError:  # a skip, unless FLEXMOE_REQUIRE names torch (the test command, CI)
    need = {n.strip() for n in os.environ.get("FLEXMOE_REQUIRE", "").split(",")}
    if need & {"torch", "all"}:
        raise
    pytest.skip("torch is not importable (scripts/setup.sh --test installs Debian's)",
                allow_module_level=True)


def tiny_model():
    spec = importlib.util.spec_from_file_location(
        "capture_tests", ROOT / "tests" / "traces" / "test_capture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TinyModel("test_hooks_record_a_training_run_that_flexmoe_reads").build()


def test_the_captured_trace_is_the_routers_real_choices(tmp_path):
    net, E, k = tiny_model()
    ranks, B, T, steps = 4, 8, 12, 4
    path = tmp_path / "tiny.npy"
    rec = flexmoe.capture.RoutingRecorder(str(path), layers=2, experts=E, top_k=k,
                                          virtual_ranks=ranks, d_model=16, d_ff=32,
                                          bytes_per_elem=4)
    gates = [flexmoe.capture.attach_topk(rec, m.gate, layer=l) for l, m in enumerate(net.moe)]
    # what the experts computed: rows each expert's first linear saw, per
    # iteration and layer (the model runs expert e on the tokens routed to it)
    seen = np.zeros((steps, 2, E), dtype=np.int64)
    step = [0]
    probes = []
    for l, m in enumerate(net.moe):
        for e, ex in enumerate(m.experts):
            def hook(mod, inp, out, l=l, e=e):
                seen[step[0], l, e] += inp[0].shape[0]
            probes.append(ex[0].register_forward_hook(hook))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step[0] in range(steps):
        tokens = torch.randint(0, 50, (B, T))
        loss = torch.nn.functional.cross_entropy(net(tokens).reshape(-1, 50),
                                                 tokens.roll(1, 1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step()
    for h in gates + probes:
        h.remove()
    rec.save()
    trace = np.load(path)
    assert trace.shape == (steps, 2, ranks, E) and trace.dtype == np.int32
    assert (trace.sum(axis=2) == seen).all()       # the router's choices, per expert
    assert (trace.sum(axis=3) == B * T // ranks * k).all()  # every rank's k slots per token
    assert seen.min() != seen.max()                # experts got different loads
    df = flexmoe.simulate(path, cluster="dgx-h100", nodes=1, gpus_per_node=4,
                          policies=["static", "eplb"], slots=2)
    assert list(df["iterations"]) == [steps, steps] and list(df["gpus"]) == [4, 4]
