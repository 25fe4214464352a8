"""Tests of traces/capture/flexmoe_capture.py.

The bookkeeping and the file format are tested with plain lists (standard
library only); the PyTorch hooks on a tiny MoE model trained on the CPU run
with --torch (meson test traces/capture-torch), which exits 77, a skip meson
counts, when torch is not importable. Every written trace is
read back by the flexmoe binary (FLEXMOE_BIN), so the format is checked by
the real reader, not by this module's own code.

Run: FLEXMOE_BIN=build/cli/flexmoe python3 tests/traces/test_capture.py [--torch] [-v]
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("FLEXMOE_SOURCE_ROOT", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "traces", "capture"))

import flexmoe_capture as fc  # noqa: E402

try:
    import torch
except ImportError:  # the CUDA-linked PyPI wheel is several GB: optional
    torch = None

BIN = os.environ.get("FLEXMOE_BIN", os.path.join(ROOT, "build", "cli", "flexmoe"))


def flexmoe(*args):
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def info(path):
    rc, out, err = flexmoe("trace", "info", path, "--format", "json")
    assert rc == 0, err
    return json.loads(out)


class FileFormat(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_counts_from_ids_with_virtual_ranks_read_by_flexmoe(self):
        path = os.path.join(self.dir, "t.npy")
        rec = fc.RoutingRecorder(path, layers=2, experts=4, top_k=2, virtual_ranks=2,
                                 d_model=8, d_ff=16)
        # iteration 0: layer 0 four tokens (two per rank), layer 1 one slot dropped
        rec.record(0, [[0, 1], [1, 2], [3, 0], [3, 2]])
        rec.record(1, [[[0, 3], [0, -1]], [[1, 2], [2, 1]]])  # [batch, seq, k]
        rec.step()
        rec.record(0, [[2, 3]] * 4)
        rec.record(1, [[0, 1]] * 4)
        rec.step()
        rec.save()
        j = info(path)
        self.assertEqual(j["shape"], [2, 2, 2, 4])
        self.assertEqual(j["meta"]["top_k"], 2)
        self.assertEqual(j["meta"]["tokens_per_rank"], 2)
        self.assertEqual(j["meta"]["d_ff"], 16)
        # exact counts through the CSV-free path: re-import as CSV and compare
        rc, out, err = flexmoe("trace", "stats", path, "--format", "json")
        self.assertEqual(rc, 0, err)
        counts = read_npy_int32(path)
        # [it][layer][rank][expert]
        self.assertEqual(counts[0][0][0], [1, 2, 1, 0])
        self.assertEqual(counts[0][0][1], [1, 0, 1, 2])
        self.assertEqual(counts[0][1][0], [2, 0, 0, 1])  # -1 not counted
        self.assertEqual(counts[0][1][1], [0, 2, 2, 0])
        self.assertEqual(counts[1][0][0], [0, 0, 2, 2])

    def test_micro_batches_add_up_and_pausing_records_nothing(self):
        path = os.path.join(self.dir, "m.npy")
        rec = fc.RoutingRecorder(path, layers=1, experts=3, top_k=1)
        rec.record(0, [[0], [1]])
        rec.record(0, [[1], [2]])  # second micro-batch, same iteration
        with rec.paused():
            rec.record(0, [[2]] * 50)  # activation recomputation
        rec.step()
        rec.save()
        self.assertEqual(read_npy_int32(path)[0][0][0], [1, 2, 1])

    def test_counts_per_expert_and_explicit_ranks(self):
        path = os.path.join(self.dir, "c.npy")
        rec = fc.RoutingRecorder(path, layers=1, experts=3, top_k=2, ranks=2)
        rec.record_counts(0, [4, 0, 2], rank=1)
        rec.record(0, [[0, 2]], rank=0)
        rec.step()
        rec.save()
        c = read_npy_int32(path)
        self.assertEqual(c[0][0], [[1, 0, 1], [4, 0, 2]])

    def test_bad_input_is_refused_and_nothing_half_written(self):
        path = os.path.join(self.dir, "bad.npy")
        rec = fc.RoutingRecorder(path, layers=1, experts=3, top_k=1)
        with self.assertRaises(ValueError):
            rec.record(3, [[0]])  # a layer the recorder does not have: the caller's bug
        with self.assertRaises(ValueError):
            rec.save()  # no iteration
        with self.assertRaises(ValueError):
            fc.write_npy(path, [1, -2], (1, 1, 1, 2))
        with self.assertRaises(ValueError):
            fc.RoutingRecorder(path, layers=1, experts=3, top_k=4)
        self.assertFalse(os.path.exists(path))
        self.assertEqual([f for f in os.listdir(self.dir) if ".tmp." in f], [])

    def test_ids_out_of_range_are_dropped_with_a_warning_never_raised(self):
        path = os.path.join(self.dir, "oor.npy")
        rec = fc.RoutingRecorder(path, layers=1, experts=3, top_k=2)
        # 5 and 2**63 - 1 are out of range (a bug somewhere), -1 marks a dropped slot
        rec.record(0, [[0, 5], [1, -1], [2, 2**63 - 1]])
        rec.step()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rec.save()
        self.assertEqual(read_npy_int32(path)[0][0][0], [1, 1, 1])
        msgs = [str(x.message) for x in w]
        self.assertTrue(any("2 slots had expert ids outside [0, 3)" in m for m in msgs), msgs)

    def test_an_all_zero_or_partly_zero_trace_warns_at_save(self):
        path = os.path.join(self.dir, "z.npy")
        rec = fc.RoutingRecorder(path, layers=2, experts=3, top_k=1, ranks=2)
        rec.step()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rec.save()
        self.assertTrue(any("all zero" in str(x.message) for x in w), [str(x.message) for x in w])
        rec.record(0, [[1]], rank=0)  # layer 1 and rank 1 of layer 0 record nothing
        rec.step()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rec.save()
        msgs = [str(x.message) for x in w]
        self.assertTrue(any("3 of 4 (iteration, layer) cells recorded no slot" in m
                            for m in msgs), msgs)
        self.assertTrue(any("1 (iteration, layer, rank) cells recorded no slot" in m
                            for m in msgs), msgs)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            full = fc.RoutingRecorder(path, layers=1, experts=2, top_k=1, ranks=1)
            full.record(0, [[0], [1]])
            full.step()
            full.save()
        self.assertEqual([str(x.message) for x in w], [])


def read_npy_int32(path):
    """Minimal reader for the test: int32 C-order [I, L, R, E] as nested lists."""
    import ast
    import struct
    with open(path, "rb") as f:
        b = f.read()
    hlen = struct.unpack("<H", b[8:10])[0]
    hdr = ast.literal_eval(b[10:10 + hlen].decode("latin1"))
    assert hdr["descr"] == "<i4" and not hdr["fortran_order"]
    I, L, R, E = hdr["shape"]
    flat = struct.unpack("<%di" % (I * L * R * E), b[10 + hlen:])
    return [[[list(flat[((i * L + l) * R + r) * E:((i * L + l) * R + r + 1) * E])
              for r in range(R)] for l in range(L)] for i in range(I)]


@unittest.skipIf(torch is None, "torch is not installed")
class TinyModel(unittest.TestCase):
    """A 2-layer top-2 MoE with 4 experts, trained for a few steps on the CPU."""

    def build(self):
        torch.manual_seed(0)
        d, E, k = 16, 4, 2

        class MoE(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.gate = torch.nn.Linear(d, E, bias=False)
                self.experts = torch.nn.ModuleList(torch.nn.Sequential(
                    torch.nn.Linear(d, 32), torch.nn.GELU(), torch.nn.Linear(32, d))
                    for _ in range(E))

            def forward(self, x):  # x [B, T, d]
                logits = self.gate(x)
                w, idx = torch.softmax(logits, -1).topk(k, dim=-1)
                out = torch.zeros_like(x)
                for j in range(k):
                    for e in range(E):
                        m = idx[..., j] == e
                        if m.any():
                            out[m] += w[..., j][m].unsqueeze(-1) * self.experts[e](x[m])
                return x + out

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(50, d)
                self.moe = torch.nn.ModuleList(MoE() for _ in range(2))
                self.out = torch.nn.Linear(d, 50)

            def forward(self, t):
                h = self.emb(t)
                for m in self.moe:
                    h = m(h)
                return self.out(h)

        return Net(), E, k

    def test_hooks_record_a_training_run_that_flexmoe_reads(self):
        net, E, k = self.build()
        with tempfile.TemporaryDirectory() as dir:
            path = os.path.join(dir, "tiny.npy")
            rec = fc.RoutingRecorder(path, layers=2, experts=E, top_k=k, virtual_ranks=4,
                                     d_model=16, d_ff=32, bytes_per_elem=4)
            handles = [fc.attach_topk(rec, m.gate, layer=l) for l, m in enumerate(net.moe)]
            opt = torch.optim.SGD(net.parameters(), lr=0.1)
            B, T = 8, 12
            for step in range(5):
                tokens = torch.randint(0, 50, (B, T))
                loss = torch.nn.functional.cross_entropy(net(tokens).reshape(-1, 50),
                                                         tokens.roll(1, 1).reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                rec.step()
            net.eval()
            with torch.no_grad():
                net(torch.randint(0, 50, (B, T)))  # eval: not recorded
            rec.step()  # an empty iteration is still an iteration
            for h in handles:
                h.remove()
            rec.save()
            j = info(path)
            self.assertEqual(j["shape"], [6, 2, 4, E])
            self.assertEqual(j["meta"]["tokens_per_rank"], B * T // 4)
            c = read_npy_int32(path)
            for it in range(5):
                for l in range(2):
                    for r in range(4):
                        self.assertEqual(sum(c[it][l][r]), B * T // 4 * k)
            self.assertEqual(sum(sum(sum(x) for x in c[5][l]) for l in range(2)), 0)
            # the counts are the gate's own choices: replay iteration 0's layer 0
            rc, out, err = flexmoe("trace", "stats", path)
            self.assertEqual(rc, 0, err)

    def test_megatron_routing_map_becomes_ids(self):
        rm = torch.tensor([[True, False, True, False], [False, True, False, False]])
        ids = fc.megatron_router_indices((None, rm)).tolist()
        self.assertEqual(sorted(ids[0]), [0, 2])
        self.assertEqual(sorted(ids[1]), [-1, 1])
        idx = torch.tensor([[3, 1]])
        self.assertIs(fc.megatron_router_indices((None, idx)), idx)

    def test_deepspeed_dispatch_mask_becomes_counts(self):
        mask = torch.zeros(5, 3, 2, dtype=torch.bool)  # [S, E, C]
        mask[0, 1, 0] = mask[1, 1, 1] = mask[2, 0, 0] = True
        self.assertEqual(fc.deepspeed_gate_counts((None, None, mask, None)).tolist(), [1, 2, 0])


if __name__ == "__main__":
    # --torch: the torch tests only (meson test traces/capture-torch), exit 77 (a
    # skip) without torch, or 1 when FLEXMOE_REQUIRE names torch; else the rest.
    if "--torch" in sys.argv:
        sys.argv.remove("--torch")
        if torch is None:
            need = {n.strip() for n in os.environ.get("FLEXMOE_REQUIRE", "").split(",")}
            why = "%s cannot import torch (Debian: apt-get install python3-torch)" % sys.executable
            if "torch" in need or "all" in need:
                print("FLEXMOE_REQUIRE names torch, but " + why, file=sys.stderr)
                sys.exit(1)
            print("SKIP: " + why)
            sys.exit(77)
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(TinyModel)
    else:
        suite = unittest.TestSuite(
            t for t in unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
            if not isinstance(t, unittest.TestSuite) or
            not any(isinstance(c, TinyModel) for c in t))
    verbosity = 2 if "-v" in sys.argv else 1
    ok = unittest.TextTestRunner(verbosity=verbosity).run(suite).wasSuccessful()
    sys.exit(0 if ok else 1)
