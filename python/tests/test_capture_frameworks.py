"""flexmoe.capture.attach on the frameworks people train with, each checked
against the router's real choices on tiny random configs (no weights
downloaded): HF transformers (Mixtral, Qwen2-MoE, SwitchTransformers, a
OLMoE, a DeepSeek-style gate module, the Trainer callback), DeepSpeed (the version in
the venv and the oldest one, capture_deepspeed_check.py), Megatron-core
(capture_megatron_check.py), and several processes on gloo (data parallel,
tensor x data parallel, pipeline x data parallel: capture_parallel_check.py).

The frameworks are what scripts/test.sh installs (python/tests/
requirements-capture.txt): where torch is required (FLEXMOE_REQUIRE, the test
command and CI) a framework that does not import fails the test with its
import error; elsewhere the tests skip, saying why."""
import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _required():
    need = {n.strip() for n in os.environ.get("FLEXMOE_REQUIRE", "").split(",")}
    return bool(need & {"torch", "all"})


def need(module):
    """Imports module; when it fails: a failure where torch is required, else a skip."""
    try:
        return __import__(module, fromlist=["_"])
    except Exception as exc:  # ImportError, or a framework failing at import
        why = "%s does not import here: %s: %s" % (module, type(exc).__name__, exc)
        if _required():
            pytest.fail(why + " (scripts/test.sh installs it: "
                        "python/tests/requirements-capture.txt)")
        pytest.skip(why)


torch = need("torch")
import flexmoe.capture as fc  # noqa: E402

R = 2  # virtual ranks


def run_script(script, *args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, str(HERE / script)] + [str(a) for a in args],
                       capture_output=True, text=True, env=e, timeout=600)
    return p


# ----------------------------------------------------------------- HF
def tiny_hf(kind):
    transformers = need("transformers")
    torch.manual_seed(0)
    if kind == "mixtral":
        cfg = transformers.MixtralConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
            num_experts_per_tok=2, max_position_embeddings=64)
        return transformers.MixtralForCausalLM(cfg), 4, 2
    if kind == "olmoe":
        cfg = transformers.OlmoeConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, num_experts=6, num_experts_per_tok=2,
            max_position_embeddings=64)
        return transformers.OlmoeForCausalLM(cfg), 6, 2
    cfg = transformers.Qwen2MoeConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, moe_intermediate_size=8,
        shared_expert_intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, num_experts=6, num_experts_per_tok=2, decoder_sparse_step=1,
        max_position_embeddings=64)
    return transformers.Qwen2MoeForCausalLM(cfg), 6, 2


def expert_rows(blocks, store):
    """Counts the rows each expert's MLP received (its tokens): the truth."""
    hs = []
    for l, blk in enumerate(blocks):
        for e, ex in enumerate(blk.experts):
            def hook(mod, inp, out, l=l, e=e):
                if store["on"]:
                    store["rows"][l, e] += inp[0].shape[0]
            hs.append(ex.register_forward_hook(hook))
    return hs


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe", "olmoe"])
def test_hf_sparse_blocks_record_the_routers_choices_per_rank(kind, tmp_path):
    """Mixtral / Qwen2-MoE / OLMoE with 2 virtual ranks, gradient checkpointing,
    2 micro-batches per step and an eval pass: per step and layer the trace
    == the rows each expert received (counted once: the recomputation in
    backward is not), and per rank == the model run on that rank's half of
    the batch alone."""
    net, E, k = tiny_hf(kind)
    net.gradient_checkpointing_enable()
    net.enable_input_require_grads()  # so that backward really recomputes the layers
    net.train()
    blocks = [m for m in net.modules() if type(m).__name__.endswith("SparseMoeBlock")]
    rec = fc.attach(net, str(tmp_path / "hf.npy"), virtual_ranks=R)
    assert [r[1] for r in rec.routers] == ["hf-linear"] * 2 and rec.experts == E
    store = {"on": False, "rows": torch.zeros(2, E, dtype=torch.long)}
    hs = expert_rows(blocks, store)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    steps, B, T = 3, 4, 8
    rows = torch.zeros(steps, 2, E, dtype=torch.long)
    per_rank = torch.zeros(steps, 2, R, E, dtype=torch.long)
    for s in range(steps):
        for mb in range(2):
            x = torch.randint(0, 64, (B, T))
            with rec.paused(), torch.no_grad():   # truth: each rank's half alone
                for r in range(R):
                    out = net(x[r * B // R:(r + 1) * B // R], output_router_logits=True)
                    for l, lg in enumerate(out.router_logits):
                        ids = lg.topk(k, dim=-1).indices.reshape(-1)
                        per_rank[s, l, r] += torch.bincount(ids, minlength=E)
            store["rows"].zero_()
            store["on"] = True
            loss = net(x, labels=x).loss
            store["on"] = False               # the recomputation in backward: not counted
            rows[s] += store["rows"]
            loss.backward()
        opt.step()
        opt.zero_grad()
        rec.step()
    net.eval()
    with torch.no_grad():
        net(torch.randint(0, 64, (B, T)))    # eval: not recorded
    for h in hs:
        h.remove()
    rec.detach()
    rec.save()
    trace = np.load(tmp_path / "hf.npy")
    assert trace.shape == (steps, 2, R, E)
    assert (trace.sum(axis=2) == rows.numpy()).all()
    assert (trace == per_rank.numpy()).all()
    assert (trace.sum(axis=3) == 2 * B // R * T * k).all()
    assert not (tmp_path / "hf-kept.npy").exists()  # no capacity: nothing dropped


def test_hf_switch_records_before_and_after_capacity_drops(tmp_path):
    """SwitchTransformers (encoder and decoder sparse layers, capacity 6 per
    expert): kept == the rows each expert received; routed == the argmax of
    the router logits the model returns, and in the first layer == the rows
    each expert receives in a copy of the model without a capacity limit
    (later layers see other inputs once slots were dropped)."""
    transformers = need("transformers")
    torch.manual_seed(0)
    cfg = transformers.SwitchTransformersConfig(
        vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2,
        num_heads=2, num_experts=4, expert_capacity=6, encoder_sparse_step=1,
        decoder_sparse_step=1, router_jitter_noise=0.0, dropout_rate=0.0, decoder_start_token_id=0,
        pad_token_id=0)
    net = transformers.SwitchTransformersForConditionalGeneration(cfg).train()
    free = copy.deepcopy(net)
    for m in free.modules():
        if hasattr(m, "expert_capacity"):
            m.expert_capacity = 10 ** 6
    rec = fc.attach(net, str(tmp_path / "sw.npy"))
    assert [r[1] for r in rec.routers] == ["switch"] * 4
    mlps = [m for m in net.modules() if type(m).__name__ == "SwitchTransformersSparseMLP"]
    free_mlps = [m for m in free.modules() if type(m).__name__ == "SwitchTransformersSparseMLP"]
    kept_rows, routed_rows = torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4,
                                                                               dtype=torch.long)
    hs = []
    for ms, rows in ((mlps, kept_rows), (free_mlps, routed_rows)):
        for l, mlp in enumerate(ms):
            for e, ex in enumerate(mlp.experts.values()):
                hs.append(ex.register_forward_hook(
                    lambda mod, inp, out, l=l, e=e, rows=rows: rows[l].__setitem__(
                        e, rows[l, e] + inp[0].shape[0])))
    x = torch.randint(1, 64, (4, 8))
    y = torch.randint(1, 64, (4, 8))
    out = net(input_ids=x, labels=y, output_router_logits=True)
    out.loss.backward()
    logits = [lg for lg, _ in out.encoder_router_logits + out.decoder_router_logits]
    with torch.no_grad():
        free(input_ids=x, labels=y)
    rec.step()
    for h in hs:
        h.remove()
    rec.detach()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rec.save()
    assert not w, [str(m.message) for m in w]
    routed = np.load(tmp_path / "sw.npy")[0, :, 0]
    kept = np.load(tmp_path / "sw-kept.npy")[0, :, 0]
    assert (kept == kept_rows.numpy()).all()
    for l, lg in enumerate(logits):
        assert (routed[l] == np.bincount(lg.argmax(-1).reshape(-1).numpy(), minlength=4)).all()
    assert (routed[0] == routed_rows[0].numpy()).all()
    assert (routed - kept).sum() > 0          # the capacity did drop slots
    meta = json.loads((tmp_path / "sw.json").read_text())
    assert meta["kept_trace"] == "sw-kept.npy" and meta["dropped_slots"] == (routed - kept).sum()


class DeepSeekStyleGate(torch.nn.Module):
    """The interface of DeepSeek-V2/V3's MoEGate (their remote modeling code):
    group-limited top-k with a score bias, returning (topk_idx, topk_weight,
    aux_loss) for hidden states [B, T, d]. Not DeepSeek's code: a stand-in
    with its output shape, since transformers 4.45 (the torch-1.13 pin) has
    no DeepSeek model."""

    def __init__(self, d, E, k, groups=2, topk_groups=1):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(E, d))
        self.bias = torch.nn.Parameter(torch.randn(E) * 0.1, requires_grad=False)
        self.E, self.top_k, self.g, self.tg = E, k, groups, topk_groups

    def forward(self, h):
        b, t, d = h.shape
        scores = torch.sigmoid(h.reshape(-1, d) @ self.weight.t()) + self.bias
        grp = scores.view(b * t, self.g, -1).topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(grp).scatter_(1, grp.topk(self.tg, dim=-1).indices, 1)
        mask = keep.unsqueeze(-1).expand(b * t, self.g, self.E // self.g).reshape(b * t, -1)
        idx = scores.masked_fill(mask == 0, float("-inf")).topk(self.top_k, dim=-1).indices
        return idx, scores.gather(1, idx), None


class DeepSeekStyleBlock(torch.nn.Module):
    def __init__(self, d=16, E=8, k=2):
        super().__init__()
        self.gate = DeepSeekStyleGate(d, E, k)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(E))
        self.num_experts_per_tok = k
        self.calls = []

    def forward(self, h):
        idx, w, _ = self.gate(h)
        self.calls.append(idx.detach().view(h.shape[0], -1))
        flat = h.reshape(-1, h.shape[-1])
        out = torch.zeros_like(flat)
        for j in range(idx.shape[1]):
            for e, ex in enumerate(self.experts):
                m = idx[:, j] == e
                if m.any():
                    out[m] += w[m, j:j + 1] * ex(flat[m])
        return h + out.view_as(h)


def test_deepseek_style_gate_modules_record_their_returned_ids(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(DeepSeekStyleBlock(), DeepSeekStyleBlock())
    rec = fc.attach(net, str(tmp_path / "ds.npy"), virtual_ranks=R)
    assert [r[1] for r in rec.routers] == ["hf-gate"] * 2 and rec.top_k == 2
    x = torch.randn(4, 5, 16)
    net(x).sum().backward()
    rec.step()
    rec.detach()
    got = np.array(rec.counts())[0]
    for l, blk in enumerate(net):
        ids = blk.calls[0]                         # [B, T*k], batch-first
        for r in range(R):
            want = np.bincount(ids[r * 2:(r + 1) * 2].reshape(-1).numpy(), minlength=8)
            assert (got[l, r] == want).all()


def test_hf_trainer_callback_steps_once_per_optimizer_step(tmp_path):
    """Trainer with 2 gradient-accumulation micro-batches for 3 steps and an
    evaluation: 3 iterations, each holding both micro-batches' slots, none of
    the evaluation's."""
    transformers = need("transformers")
    need("accelerate")
    net, E, k = tiny_hf("mixtral")
    rec = fc.attach(net, str(tmp_path / "tr.npy"))
    B, T = 2, 8
    data = [{"input_ids": torch.randint(0, 64, (T,))} for _ in range(16)]
    for d in data:
        d["labels"] = d["input_ids"]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=B,
        per_device_eval_batch_size=B, gradient_accumulation_steps=2, max_steps=3,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        dataloader_num_workers=0)
    trainer = transformers.Trainer(model=net, args=args, train_dataset=data, eval_dataset=data,
                                   callbacks=[fc.trainer_callback(rec)])
    trainer.train()
    trainer.evaluate()
    rec.detach()
    trace = np.load(tmp_path / "tr.npy")
    assert trace.shape == (3, 2, 1, E)
    assert (trace.sum(axis=(2, 3)) == 2 * B * T * k).all()


def test_step_with_follows_the_optimizer_and_detach_restores_it(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(DeepSeekStyleBlock(), DeepSeekStyleBlock())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    orig = opt.step
    rec = fc.attach(net, str(tmp_path / "s.npy"))
    rec.step_with(opt)
    for _ in range(3):
        for _ in range(2):                       # accumulation: one iteration per step
            net(torch.randn(2, 3, 16)).sum().backward()
        opt.step()
        opt.zero_grad()
    rec.detach()
    assert opt.step == orig
    assert np.array(rec.counts()).sum(axis=(1, 2, 3)).tolist() == [2 * 2 * 3 * 2 * 2] * 3


def test_counts_cannot_be_split_into_virtual_ranks_and_say_so():
    """Per-expert counts say nothing of which rank sent the tokens: refused
    when the hook is attached, not silently put on rank 0."""
    rec = fc.RoutingRecorder("/dev/null", layers=1, experts=4, top_k=1, virtual_ranks=2)
    with pytest.raises(ValueError, match="virtual_ranks"):
        fc.attach_counts(rec, torch.nn.Linear(4, 4), 0, lambda out: out.sum(0))
    with pytest.raises(ValueError, match="virtual_ranks"):
        rec.record_counts(0, [1, 0, 0, 0])


# ----------------------------------------------------------------- DeepSpeed
def deepspeed_versions():
    out = [("venv", None)]
    old = os.environ.get("FLEXMOE_DEEPSPEED_OLD", str(HERE.parents[1] / "build-py" /
                                                       "deepspeed-old"))
    out.append(("oldest", old))
    return out


@pytest.mark.parametrize("which,path", deepspeed_versions())
def test_deepspeed_gates_every_form_exact_per_rank(which, path):
    """capture_deepspeed_check.py: top-1 (RSample, used_token), top-2 (Gumbel
    second expert, jitter), top-k; dense and sparse outputs; with and without
    capacity drops: kept == the gate's dispatch per rank, routed == its
    choices before drops."""
    env = {}
    if path is not None:
        if not os.path.isdir(path):
            msg = "the oldest DeepSpeed is not installed at %s (scripts/test.sh does it)" % path
            if _required():
                pytest.fail(msg)
            pytest.skip(msg)
        env["PYTHONPATH"] = os.pathsep.join([path] + sys.path)
    else:
        need("deepspeed")
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
    p = run_script("capture_deepspeed_check.py", env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert p.returncode == 0 and lines, (p.stdout[-3000:], p.stderr[-3000:])
    res = json.loads(lines[-1])
    assert all(c["ok"] for c in res["cases"]), res
    assert any(c["dropped"] > 0 for c in res["cases"])
    print("deepspeed", res["deepspeed"], [(c["k"], c["form"], c["dropped"]) for c in res["cases"]])


# ----------------------------------------------------------------- Megatron
def test_megatron_core_router_and_moe_layer_exact_sequence_first():
    need("megatron.core")
    p = run_script("capture_megatron_check.py", env={"PYTHONPATH": os.pathsep.join(sys.path)})
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert p.returncode == 0 and lines, (p.stdout[-3000:], p.stderr[-3000:])
    res = json.loads(lines[-1])
    assert all(c["ok"] for c in res["cases"]), res


# ----------------------------------------------------------------- processes
def test_processes_on_gloo_make_one_trace_of_the_data_parallel_ranks(tmp_path):
    """4 processes: data parallel 4, then tensor parallel 2 x data parallel 2,
    then pipeline parallel 2 x data parallel 2 (Megatron parallel_state):
    rank 0's trace == each data-parallel rank's routing computed alone."""
    need("megatron.core")
    layouts = ["dp4", "tp2dp2", "pp2dp2"]
    p = run_script("capture_parallel_check.py", ",".join(layouts), tmp_path,
                   env={"PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    for layout in layouts:
        trace = np.load(tmp_path / (layout + ".npy"))
        want = json.loads((tmp_path / (layout + ".json.expected")).read_text())
        assert trace.shape[2] == want["ranks"] == (4 if layout == "dp4" else 2), layout
        assert (trace == np.array(want["counts"])).all(), layout
