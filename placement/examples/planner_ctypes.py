#!/usr/bin/env python3
"""Drive the flexmoe placement planner from Python through ctypes.

A training framework calls, per iteration and MoE layer: plan (which
placement to use, and which expert copies to move), then, after the gate,
observe (the tokens each GPU routed to each expert). This example feeds a
drifting skewed load to the `flexmoe` policy on 8 GPUs x 32 experts and
prints the moves it asks for. Standard library only.

usage: planner_ctypes.py [path/to/libflexmoe_placement.so]
"""
import ctypes
import random
import sys

LIBRARY = sys.argv[1] if len(sys.argv) > 1 else "libflexmoe_placement.so"
try:
    lib = ctypes.CDLL(LIBRARY)
except OSError as e:
    sys.exit("planner_ctypes.py: cannot load %s (%s): give the library's path as the first "
             "argument, e.g. build/placement/libflexmoe_placement.so after meson compile, or "
             "put its folder on LD_LIBRARY_PATH" % (LIBRARY, e))
I64P = ctypes.POINTER(ctypes.c_int64)
lib.pl_planner_version.restype = ctypes.c_char_p
lib.pl_planner_strerror.restype = ctypes.c_char_p
lib.pl_planner_spec.restype = ctypes.c_char_p
lib.pl_planner_create_kv.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                     ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
lib.pl_planner_destroy.argtypes = [ctypes.c_void_p]
lib.pl_planner_spec.argtypes = [ctypes.c_void_p]
lib.pl_planner_plan.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, I64P,
                                ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
lib.pl_planner_observe.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, I64P]
lib.pl_planner_moves.argtypes = [ctypes.c_void_p, I64P, ctypes.c_int]
lib.pl_planner_plan_flags.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                      ctypes.POINTER(ctypes.c_int)]
lib.pl_planner_placement.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_int32)]
lib.pl_planner_route.argtypes = [ctypes.c_void_p, ctypes.c_int, I64P, I64P,
                                 ctypes.POINTER(ctypes.c_double), I64P]

GPUS, EXPERTS, LAYERS, SLOTS = 8, 32, 2, 6
KIND = {1: "replicate", 2: "drop", 3: "migrate"}


def check(rc, what):
    if rc < 0:
        sys.exit("planner_ctypes: %s: %s" % (what, lib.pl_planner_strerror(rc).decode()))
    return rc


def make_planner(spec):
    handle, err = ctypes.c_void_p(), ctypes.create_string_buffer(256)
    env = "layers=%d,experts=%d,gpus=%d,gpus_per_node=8,slots=%d,d_model=2048,d_ff=8192" % (
        LAYERS, EXPERTS, GPUS, SLOTS)
    rc = lib.pl_planner_create_kv(ctypes.byref(handle), spec.encode(), env.encode(), err, 256)
    if rc < 0:
        sys.exit("planner_ctypes: %s" % err.value.decode())
    return handle


def counts_for(rng, weights):
    """Token slots each GPU routes to each expert (4096 per GPU), row-major."""
    flat = []
    for _ in range(GPUS):
        row = [int(4096 * w / sum(weights)) for w in weights]
        row[rng.randrange(EXPERTS)] += 4096 - sum(row)
        flat += row
    return (ctypes.c_int64 * (GPUS * EXPERTS))(*flat)


def main():
    print("flexmoe placement library %s, API %d" % (
        lib.pl_planner_version().decode(), lib.pl_planner_api_version()))
    planner, twin = make_planner("flexmoe:threshold=1.2,horizon=50"), make_planner("flexmoe:threshold=1.2,horizon=50")
    print("policy:", lib.pl_planner_spec(planner).decode())
    rng = random.Random(7)
    weights = [[rng.lognormvariate(0, 1.0) for _ in range(EXPERTS)] for _ in range(LAYERS)]
    moves = (ctypes.c_int64 * (6 * EXPERTS * GPUS))()
    twin_moves = (ctypes.c_int64 * (6 * EXPERTS * GPUS))()
    matrix = (ctypes.c_int32 * (EXPERTS * GPUS))()
    total_moves = 0
    for it in range(20):
        for layer in range(LAYERS):
            w = weights[layer]
            for e in range(EXPERTS):  # popularity drifts
                w[e] *= rng.uniform(0.8, 1.25)
            counts = counts_for(rng, w)
            changed, n = ctypes.c_int(), ctypes.c_int()
            check(lib.pl_planner_plan(planner, it, layer, None, ctypes.byref(changed), ctypes.byref(n)), "plan")
            got = check(lib.pl_planner_moves(planner, moves, 6 * EXPERTS * GPUS // 6), "moves")
            # a second planner fed the same calls makes the same plan
            check(lib.pl_planner_plan(twin, it, layer, None, ctypes.byref(ctypes.c_int()), ctypes.byref(ctypes.c_int())), "plan")
            twin_got = check(lib.pl_planner_moves(twin, twin_moves, 6 * EXPERTS * GPUS // 6), "moves")
            assert got == twin_got and list(moves[:6 * got]) == list(twin_moves[:6 * got])
            if changed.value:
                bg = ctypes.c_int()
                lib.pl_planner_plan_flags(planner, ctypes.byref(bg), None)
                total_moves += got
                for k in range(min(got, 3)):
                    m = moves[6 * k:6 * k + 6]
                    print("iteration %d layer %d: %s expert %d from GPU %d to GPU %d, %.0f MB%s" % (
                        it, layer, KIND[m[4]], m[1], m[2], m[3], m[5] / 1e6,
                        " (background)" if bg.value else ""))
                if got > 3:
                    print("iteration %d layer %d: ... %d moves in all" % (it, layer, got))
            # invariants a framework relies on
            check(lib.pl_planner_placement(planner, layer, matrix), "placement")
            per_gpu = [sum(matrix[e * GPUS + g] for e in range(EXPERTS)) for g in range(GPUS)]
            assert all(sum(matrix[e * GPUS:(e + 1) * GPUS]) >= 1 for e in range(EXPERTS))
            assert max(per_gpu) <= SLOTS
            load, bal, dropped = (ctypes.c_int64 * GPUS)(), ctypes.c_double(), ctypes.c_int64()
            check(lib.pl_planner_route(planner, layer, counts, load, ctypes.byref(bal), ctypes.byref(dropped)), "route")
            assert sum(load) == GPUS * 4096 and dropped.value == 0
            if it % 5 == 4 and layer == 0:
                print("iteration %d layer 0: max/mean GPU load %.3f" % (it, bal.value))
            check(lib.pl_planner_observe(planner, it, layer, counts), "observe")
            check(lib.pl_planner_observe(twin, it, layer, counts), "observe")
    assert total_moves > 0, "the drifting load never triggered a plan"
    # a bad spec gives one sentence naming what is wrong
    bad, err = ctypes.c_void_p(), ctypes.create_string_buffer(256)
    rc = lib.pl_planner_create_kv(ctypes.byref(bad), b"flexmoe:speed=11", b"experts=32,gpus=8", err, 256)
    assert rc < 0 and b"speed" in err.value, err.value
    print("bad spec refused:", err.value.decode())
    lib.pl_planner_destroy(planner)
    lib.pl_planner_destroy(twin)
    print("ok: %d moves, invariants held, two planners agreed" % total_moves)


if __name__ == "__main__":
    main()
