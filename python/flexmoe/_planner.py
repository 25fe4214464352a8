"""flexmoe.Planner: the placement library's planner API (flexmoe_planner.h)
for a training framework: per iteration and MoE layer, plan (which placement
to use and which expert copies to move), after the gate the iteration's
temporaries (extra copies for this iteration only), then observe the gate's
counts."""
from collections import namedtuple

import numpy as np

from . import _lib
from ._errors import ConfigError, Error

Move = namedtuple("Move", "layer expert src dst kind bytes")
Move.__doc__ = ("One expert copy to move: src -> dst GPU (dst -1 for a drop), kind "
                "'replicate', 'drop' or 'migrate', bytes of parameters and optimizer state.")
Plan = namedtuple("Plan", "changed moves background uncharged")
Plan.__doc__ = ("A plan: changed (the placement changed), moves (list of Move), "
                "background (moves overlap the next iteration), uncharged (cost no time).")
Temporary = namedtuple("Temporary", "expert src dst")
Temporary.__doc__ = ("A temporary copy for one iteration (pl_policy.h, the temporaries "
                     "contract): copy expert's weights (no optimizer state) from src, a "
                     "planned replica serving the iteration (the holder), to dst; serve it "
                     "like a replica; after the layer's backward add its gradient to the "
                     "holder's before the replica all-reduce, then free it.")
_KIND = {1: "replicate", 2: "drop", 3: "migrate"}


class Planner:
    """One placement policy for `layers` MoE layers of `experts` experts on
    `gpus` GPUs.

    policy: a spec, "name" or "name:key=value,..." (`flexmoe policies`).
    env: the model and cluster as keyword arguments (layers, experts, gpus,
    gpus_per_node, slots, intra_GBps, inter_GBps, intra_lat_us, inter_lat_us,
    oversub, d_model, d_ff, top_k, bytes_per_elem, optimizer_bytes, bwd_ratio,
    nonmoe_us, seed, profile), the keys of pl_planner_create_kv; experts and
    gpus are required. A bad spec or key raises ConfigError naming it.
    """

    def __init__(self, policy, **env):
        lib = _lib.lib()
        kv = ",".join("%s=%s" % (k, v) for k, v in env.items() if v is not None)
        out = _lib.ffi.new("pl_planner **")
        err = _lib.ffi.new("char[]", _lib.ERRLEN)
        rc = lib.pl_planner_create_kv(out, str(policy).encode(), kv.encode(), err, _lib.ERRLEN)
        if rc < 0:
            raise ConfigError(_lib.ffi.string(err).decode(errors="replace") or
                              _lib.ffi.string(lib.pl_planner_strerror(rc)).decode())
        self._p = _lib.ffi.gc(out[0], lib.pl_planner_destroy)
        self._lib = lib
        self.experts = int(env["experts"])
        self.gpus = int(env["gpus"])
        self.layers = int(env.get("layers") or 1)

    def _check(self, rc, what):
        if rc < 0:
            raise Error("%s: %s" % (what, _lib.ffi.string(self._lib.pl_planner_strerror(rc))
                                    .decode()))
        return rc

    def _counts(self, counts):
        a = np.ascontiguousarray(np.asarray(counts, dtype=np.int64).reshape(-1))
        if a.size != self.gpus * self.experts:
            raise ConfigError("counts: %d values; a layer's counts are gpus x experts = %d"
                              % (a.size, self.gpus * self.experts))
        return a, _lib.ffi.cast("int64_t *", _lib.ffi.from_buffer(a))

    @property
    def spec(self):
        """The canonical policy spec with every parameter."""
        return _lib.ffi.string(self._lib.pl_planner_spec(self._p)).decode()

    def plan(self, iteration, layer, upcoming=None):
        """Plans `iteration` of `layer` (upcoming: this iteration's counts, read by
        clairvoyant policies only). Returns a Plan."""
        keep, up = self._counts(upcoming) if upcoming is not None else (None, _lib.ffi.NULL)
        changed, n = _lib.ffi.new("int *"), _lib.ffi.new("int *")
        self._check(self._lib.pl_planner_plan(self._p, iteration, layer, up, changed, n), "plan")
        moves = []
        if n[0] > 0:
            buf = _lib.ffi.new("int64_t[]", 6 * n[0])
            got = self._check(self._lib.pl_planner_moves(self._p, buf, n[0]), "moves")
            moves = [Move(int(buf[6 * k]), int(buf[6 * k + 1]), int(buf[6 * k + 2]),
                          int(buf[6 * k + 3]), _KIND.get(int(buf[6 * k + 4]), "?"),
                          int(buf[6 * k + 5])) for k in range(got)]
        bg, unch = _lib.ffi.new("int *"), _lib.ffi.new("int *")
        self._check(self._lib.pl_planner_plan_flags(self._p, bg, unch), "plan flags")
        del keep
        return Plan(bool(changed[0]), moves, bool(bg[0]), bool(unch[0]))

    def observe(self, iteration, layer, counts):
        """Feeds a layer's counts of an iteration: counts[g][e] = token slots GPU
        g's gate sent to expert e (gpus x experts, any nesting)."""
        keep, c = self._counts(counts)
        self._check(self._lib.pl_planner_observe(self._p, iteration, layer, c), "observe")
        del keep

    def temporaries(self, layer, counts):
        """The layer's temporaries of the iteration whose gate produced counts
        (gpus x experts), as the simulator and the runtime decide them: a list
        of Temporary (empty for policies that make none), on top of
        serving(layer). Call it after every layer's plan of that iteration,
        before the layer's dispatch."""
        keep, c = self._counts(counts)
        room = self.experts * self.gpus
        buf = np.zeros(3 * room, dtype=np.int32)
        n = self._check(self._lib.pl_planner_temporaries(
            self._p, layer, c, _lib.ffi.cast("int32_t *", _lib.ffi.from_buffer(buf)), room),
            "temporaries")
        del keep
        return [Temporary(int(buf[3 * k]), int(buf[3 * k + 1]), int(buf[3 * k + 2]))
                for k in range(n)]

    def placement(self, layer):
        """The current placement of a layer: a 0/1 array [experts, gpus]."""
        out = np.zeros((self.experts, self.gpus), dtype=np.int32)
        self._check(self._lib.pl_planner_placement(
            self._p, layer, _lib.ffi.cast("int32_t *", _lib.ffi.from_buffer(out))), "placement")
        return out

    def serving(self, layer):
        """The placement that serves the iteration just planned, a 0/1 array
        [experts, gpus]: the one before the plan while a background plan's
        moves are in flight, else the current one (blocking and weights-first
        plans serve their own iteration)."""
        out = np.zeros((self.experts, self.gpus), dtype=np.int32)
        self._check(self._lib.pl_planner_serving(
            self._p, layer, _lib.ffi.cast("int32_t *", _lib.ffi.from_buffer(out))), "serving")
        return out

    def weights_first(self, layer):
        """Whether the layer's last plan is weights-first: its moves' weights
        must land before the layer's forward of the iteration just planned
        (which the new placement serves), the optimizer state by the next
        boundary."""
        return bool(self._lib.pl_planner_weights_first(self._p, layer))

    def route(self, layer, counts, served=False):
        """Routes counts [gpus, experts]: (per-GPU token slots, max/mean GPU
        load, tokens dropped). Over the current placement; with served=True
        as the iteration is served (as the simulator and the runtime route
        it): over the serving placement plus the layer's temporaries of
        these counts."""
        keep, c = self._counts(counts)
        load = np.zeros(self.gpus, dtype=np.int64)
        bal, dropped = _lib.ffi.new("double *"), _lib.ffi.new("int64_t *")
        fn = self._lib.pl_planner_route_served if served else self._lib.pl_planner_route
        self._check(fn(self._p, layer, c, _lib.ffi.cast("int64_t *", _lib.ffi.from_buffer(load)),
                       bal, dropped), "route")
        del keep
        return load, float(bal[0]), int(dropped[0])
