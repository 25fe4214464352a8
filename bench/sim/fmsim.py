"""One `flexmoe sim --format json --no-db` run, for the bench scripts beside it."""
import json
import shlex
import subprocess
import time


def sim_runs(flexmoe, trace, gpus, engine, policies, iterations=None, cluster="dgx-h100",
             extra=None):
    """The `runs` of one sim of `policies` on `gpus` GPUs of `cluster` (8 per node; below
    8, one node of that many) and the wall seconds it took. extra: more flags, one string."""
    cmd = [flexmoe, "sim", "--trace", trace, "--cluster", cluster, "--engine", engine,
           "--format", "json", "--no-db"]
    cmd += ["--nodes", str(gpus // 8)] if gpus >= 8 else ["--nodes", "1", "--gpus-per-node", str(gpus)]
    if iterations:
        cmd += ["--iterations", iterations]
    cmd += shlex.split(extra or "")
    for p in policies:
        cmd += ["--policy", p]
    t0 = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["runs"], time.monotonic() - t0
