"""What the package's tests share: the source tree, the bundled sample trace,
and the flexmoe command installed with the package (the CLI the package must
agree with; FLEXMOE_BIN overrides it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("FLEXMOE_SOURCE_ROOT", Path(__file__).resolve().parents[2]))
SAMPLE = ROOT / "traces" / "samples" / "gpt-l6-e32-top2-aux-200.npy"


def _cli_path():
    env = os.environ.get("FLEXMOE_BIN")
    if env:
        return env
    installed = Path(sys.executable).parent / "flexmoe"
    assert installed.exists(), "the flexmoe command is not installed next to %s" % sys.executable
    return str(installed)


@pytest.fixture(scope="session")
def sample():
    assert SAMPLE.exists(), SAMPLE
    return str(SAMPLE)


@pytest.fixture(scope="session")
def cli():
    """cli(*args) -> stdout of the flexmoe command; a non-zero exit fails the test."""
    path = _cli_path()

    def run(*args):
        p = subprocess.run([path] + [str(a) for a in args], capture_output=True, text=True)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    return run


@pytest.fixture(scope="session")
def policy_names(cli):
    return [p["name"] for p in json.loads(cli("policies", "--format", "json"))["policies"]]
