"""The README's Python example runs (from the repository root, as it says)
and prints what the README shows."""
import re
import subprocess
import sys

from conftest import ROOT


def test_the_readme_python_example_prints_what_it_shows():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Python\n"):]
    m = re.search(r"```python\n(.*?)```\n\n```text\n(.*?)```", section, re.S)
    assert m, "README.md: ## Python has no ```python example followed by its ```text output"
    p = subprocess.run([sys.executable, "-c", m.group(1)], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == m.group(2)
