#!/usr/bin/env python3
"""Runs the flexmoe notebooks on a results database without touching the tree.

    python3 notebooks/run.py --db flexmoe.db [--out DIR] [--gpus N] [NOTEBOOK ...]

Executes traces, policies, sweep and validation (or the NOTEBOOKs named,
e.g. `policies`) headless on the database --db, and writes the executed
notebooks (NAME.ipynb, with their tables and figures inline) and the figures
(DIR/figures/*.png, each with the values it draws as .json) under --out
(default: notebooks-out/ in the current folder). Nothing is written into
notebooks/: no *.nbconvert.ipynb, no figures, no byte code. --gpus picks
the cluster size the policies notebook draws (default: the configuration
with the most policies, then the most iterations, then the most GPUs); it
sets that notebook's parameter GPUS, as does editing its first code cell.

Needs the notebook stack: pip install . -r notebooks/requirements.txt.
Exit status: 0, 1 when a notebook fails (its error on stderr), 2 for a
usage error.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = ["traces", "policies", "sweep", "validation"]


def parse(argv):
    ap = argparse.ArgumentParser(prog="notebooks/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="the results database to read")
    ap.add_argument("--out", default="notebooks-out",
                    help="folder for the executed notebooks and figures/ (default notebooks-out)")
    ap.add_argument("--gpus", type=int, default=None,
                    help="cluster size the policies notebook draws (default: its choice)")
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds one cell may take (default 600)")
    ap.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                    help="of %s (default: all)" % ", ".join(NOTEBOOKS))
    a = ap.parse_args(argv)
    for nb in a.notebooks:
        if nb.removesuffix(".ipynb") not in NOTEBOOKS:
            ap.error("NOTEBOOK: %r is not one of %s" % (nb, " ".join(NOTEBOOKS)))
    if not os.path.isfile(a.db):
        ap.error("--db: %s: no such file (run `flexmoe sweep --db %s ...` first)" % (a.db, a.db))
    if a.gpus is not None and a.gpus < 1:
        ap.error("--gpus: %d is not a cluster size (1 or more GPUs)" % a.gpus)
    if a.timeout < 1:
        ap.error("--timeout: %d is not 1 second or more" % a.timeout)
    return a


def with_parameters(nb, values):
    """nb with a cell setting values (name -> Python value) after the cell
    tagged "parameters" (papermill's convention), so the notebook's own
    defaults stay as they are in the file."""
    import nbformat
    if not values:
        return nb
    src = "\n".join("%s = %r" % kv for kv in values.items())
    cell = nbformat.v4.new_code_cell("# parameters given to notebooks/run.py\n" + src)
    for i, c in enumerate(nb.cells):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            nb.cells.insert(i + 1, cell)
            return nb
    raise SystemExit("notebooks/run.py: the notebook has no cell tagged 'parameters'")


def main(argv):
    a = parse(argv)
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as e:
        print("notebooks/run.py: %s: pip install . -r notebooks/requirements.txt" % e,
              file=sys.stderr)
        return 1
    out = os.path.abspath(a.out)
    figures = os.path.join(out, "figures")
    os.makedirs(figures, exist_ok=True)
    # the kernels inherit these: the database, where figures go, no byte code
    # next to flexmoe_nb.py
    os.environ.update(FLEXMOE_DB=os.path.abspath(a.db), FLEXMOE_FIGURES=figures,
                      PYTHONDONTWRITEBYTECODE="1")
    names = [n.removesuffix(".ipynb") for n in a.notebooks] or NOTEBOOKS
    for name in names:
        nb = nbformat.read(os.path.join(HERE, name + ".ipynb"), as_version=4)
        if name == "policies":
            nb = with_parameters(nb, {"GPUS": a.gpus} if a.gpus is not None else {})
        client = NotebookClient(nb, timeout=a.timeout, kernel_name="python3",
                                resources={"metadata": {"path": HERE}})
        try:
            client.execute()
        except Exception as e:  # the cell's error, as nbclient words it
            print("notebooks/run.py: %s.ipynb failed:\n%s" % (name, e), file=sys.stderr)
            nbformat.write(nb, os.path.join(out, name + ".ipynb"))
            return 1
        nbformat.write(nb, os.path.join(out, name + ".ipynb"))
        print("ran %s.ipynb -> %s" % (name, os.path.join(a.out, name + ".ipynb")))
    print("figures in %s" % os.path.join(a.out, "figures"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
