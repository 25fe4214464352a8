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
