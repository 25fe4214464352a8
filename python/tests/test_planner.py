"""flexmoe.Planner over the placement library's planner API: a drifting
skewed load makes the flexmoe policy move experts; the plans keep the
invariants a framework relies on, and two planners fed the same calls agree."""
import random

import numpy as np
import pytest

import flexmoe

GPUS, EXPERTS, LAYERS, SLOTS = 8, 32, 2, 6


def make(spec="flexmoe:threshold=1.2,horizon=50"):
    return flexmoe.Planner(spec, layers=LAYERS, experts=EXPERTS, gpus=GPUS, gpus_per_node=8,
                           slots=SLOTS, d_model=2048, d_ff=8192)


def counts_for(rng, weights):
    rows = []
    for _ in range(GPUS):
        row = [int(4096 * w / sum(weights)) for w in weights]
        row[rng.randrange(EXPERTS)] += 4096 - sum(row)
        rows.append(row)
    return np.array(rows, dtype=np.int64)


def test_plans_keep_the_invariants_and_two_planners_agree():
    p, twin = make(), make()
    assert p.spec.startswith("flexmoe:threshold=1.2,horizon=50")
    rng = random.Random(7)
    weights = [[rng.lognormvariate(0, 1.0) for _ in range(EXPERTS)] for _ in range(LAYERS)]
    moved = 0
    for it in range(20):
        for layer in range(LAYERS):
            weights[layer] = [w * rng.uniform(0.8, 1.25) for w in weights[layer]]
            counts = counts_for(rng, weights[layer])
            plan = p.plan(it, layer)
            assert plan == twin.plan(it, layer)
            assert plan.changed == bool(plan.moves)
            moved += len(plan.moves)
            for m in plan.moves:
                assert m.kind in ("replicate", "drop", "migrate") and m.layer == layer
                assert (m.dst == -1) == (m.kind == "drop") and m.bytes >= 0
            placed = p.placement(layer)
            assert placed.shape == (EXPERTS, GPUS)
            assert (placed.sum(axis=1) >= 1).all()       # every expert has a replica
            assert (placed.sum(axis=0) <= SLOTS).all()    # no GPU over its slots
            load, balance, dropped = p.route(layer, counts)
            assert load.sum() == GPUS * 4096 and dropped == 0   # tokens conserved
            assert balance == pytest.approx(load.max() / load.mean())
            p.observe(it, layer, counts)
            twin.observe(it, layer, counts.tolist())
    assert moved > 0, "the drifting load never triggered a plan"
    assert (make().placement(0).sum(axis=1) >= 1).all()


def test_a_bad_spec_or_shape_is_refused_naming_it():
    with pytest.raises(flexmoe.ConfigError, match="speed"):
        flexmoe.Planner("flexmoe:speed=11", experts=32, gpus=8)
    with pytest.raises(flexmoe.ConfigError, match="counts: 5 values"):
        make().observe(0, 0, [1, 2, 3, 4, 5])
    with pytest.raises(flexmoe.Error):
        make().placement(LAYERS)  # no such layer


def test_temporaries_on_the_sample_trace_are_valid_and_do_not_depend_on_observe_order(sample):
    """flexmoe's temporaries (its default search, shadow=4) through Planner.temporaries
    on 30 iterations of the bundled trace at its 8 ranks: plans of every layer
    first, then per layer the temporaries; one planner asks before observing
    the layer, its twin after: the same lists. Each holder serves the expert,
    each destination holds no copy and stays within its slots (those of the
    serving and the current placement); static makes none. route(served=True)
    routes over them: the same tokens, other GPUs where temporaries were made. (tests/placement/test_planner.c checks they are the simulator's.)"""
    trace = np.load(sample)
    layers, gpus, experts = trace.shape[1], trace.shape[2], trace.shape[3]
    env = dict(layers=layers, experts=experts, gpus=gpus, gpus_per_node=8, slots=6,
               d_model=2048, d_ff=8192)
    p, twin = flexmoe.Planner("flexmoe", **env), flexmoe.Planner("flexmoe", **env)
    made = differs = 0
    for it in range(30):
        counts = trace[100 + it]
        for layer in range(layers):
            assert p.plan(it, layer) == twin.plan(it, layer)
        for layer in range(layers):
            temps = p.temporaries(layer, counts[layer])
            serving, current = p.serving(layer), p.placement(layer)
            assert (serving == current).all() or not p.weights_first(layer)
            held = np.maximum(serving, current).sum(axis=0)
            for t in temps:
                assert isinstance(t, flexmoe.Temporary)
                assert serving[t.expert, t.src] == 1 and serving[t.expert, t.dst] == 0
                held[t.dst] += 1
            assert all(held[t.dst] <= 6 for t in temps)   # a slot free in both
            assert len({(t.expert, t.dst) for t in temps}) == len(temps)
            p.observe(it, layer, counts[layer])
            twin.observe(it, layer, counts[layer])
            assert twin.temporaries(layer, counts[layer].tolist()) == temps
            made += len(temps)
            load, balance, dropped = p.route(layer, counts[layer], served=True)
            plain = p.route(layer, counts[layer])[0]
            assert load.sum() == plain.sum() == counts[layer].sum() and dropped == 0
            assert balance >= 1.0
            if not temps and (serving == current).all():
                assert (load == plain).all()
            differs += bool(temps) and not (load == plain).all()
    assert made > 0, "no temporaries on the sample trace"
    assert differs > 0, "temporaries never changed the served routing"
    st = flexmoe.Planner("static", **env)
    st.plan(0, 0)
    assert st.temporaries(0, trace[0, 0]) == []
    with pytest.raises(flexmoe.ConfigError, match="counts"):
        p.temporaries(0, trace[0, 0, :4])
    with pytest.raises(flexmoe.Error, match="temporaries"):
        p.temporaries(layers, trace[0, 0])
