#!/usr/bin/env python3
"""compare_cli.py - the same command lines through two flexmoe binaries (issue
15: cli/ moved into run/ and one table printer with every output unchanged).

Usage: compare_cli.py OLD_FLEXMOE NEW_FLEXMOE SOURCE_ROOT [GROUPS]
(GROUPS: comma-separated group numbers, default all). Build the old binary from
the commit before the change in its own build dir (or copy build/cli/flexmoe
aside first: it links the libraries statically).

Each group of command lines runs with each binary in a fresh directory holding
the same setup files, and stdout, stderr, exit code and the files written are
compared. Lines marked T (timed: cpu replay, calibration, sweep wall time)
have their decimal numbers and the ranking verdict masked. Databases are
compared by a dump of their tables with time and version columns left out.
Exits 0 when every line is identical."""
import hashlib, os, re, shutil, sqlite3, subprocess, sys, tempfile

OLD, NEW, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
ONLY = sys.argv[4] if len(sys.argv) > 4 else None
S = os.path.join(ROOT, "traces/samples/gpt-l6-e32-top2-aux-200.npy")
CSV = os.path.join(ROOT, "traces/samples/routing-l2-e16-r4-30.csv")
SMALL = "--d-model 64 --d-ff 128 --tokens-per-gpu 64"

# (mark, command line after 'flexmoe'); several lines in one group share a dir
GROUPS = [
    [("", "--help"), ("", "--version"), ("", ""), ("", "bogus"), ("", "sim --format json bogus")],
    [("", f"sim --trace {S} --no-db --iterations 0:30"),
     ("", f"sim --trace {S} --no-db --iterations 0:30 --format json"),
     ("", f"sim --trace {S} --policy static --policy flexmoe --engine des --iterations 0:20 --no-db"),
     ("", f"sim --trace {S} --cluster dgx-a100 --nodes 2 --policy capacity --policy static --iterations 0:10 --db x.db"),
     ("", f"sim --trace {S} --gpus 16 --policy eplb --iterations 0:10 --no-db --format json"),
     ("", f"sim --trace {S} --gpus 4 --policy capacity:cf=0.5 --iterations 0:10 --no-db"),
     ("", "sim"), ("", "sim --trace nonexist.npy --no-db"), ("", f"sim --trace {S} --engine foo"),
     ("", f"sim --trace {S} --iterations 5:3"), ("", "sim --help"), ("", f"sim --trace {S} --polcy x"),
     ("", f"sim --trace {S} --policy bogus --no-db"), ("", f"sim --trace {S} --policy bogus --no-db --format json"),
     ("", f"sim --trace {S} --iterations 0:999 --no-db"), ("", f"sim --trace {S} --gpus 3 --nodes 2 --no-db")],
    [("T", f"sweep --trace {S} --policy static --policy flexmoe --cluster dgx-h100 --gpus 8,16 --iterations 0:10 --db sw.db --quiet"),
     ("T", f"sweep --trace {S} --policy static --policy flexmoe --policy oracle --policy capacity --cluster dgx-h100 --gpus 8,16 --iterations 0:10 --db sw.db --quiet"),
     ("T", f"sweep --trace {S} --policy static --nodes 1,2 --iterations 0:5 --db sw.db --quiet"),
     ("", "report --db sw.db"), ("", "report --db sw.db --format csv"), ("", "report --db sw.db --format json"),
     ("", "report --db sw.db --runs"), ("", "report --db sw.db --runs --format csv"),
     ("", "report --db sw.db --runs --format json"), ("", "report --db sw.db --kind sim"),
     ("", "report --db sw.db --kind gpu"), ("", "report --db sw.db --kind foo"), ("", "report --db missing.db"),
     ("", "report --db sw.db extra"), ("", "report --help"),
     ("", f"sweep --trace {S}"), ("", f"sweep --trace {S} --gpus 8 --nodes 1"), ("", "sweep --gpus 8"),
     ("", f"sweep --trace {S} --gpus 8,x"), ("", "sweep --help"), ("", f"sweep --trace {S} --gpus 8 extra"),
     ("", f"sweep --trace {S} --gpus 8 --cluster nope --db e.db --quiet --iterations 0:3")],
    [("", f"place --trace {S} --gpus 8 --slots 6 --policy flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0"),
     ("", f"place --trace {S} --gpus 8 --slots 6 --policy flexmoe:threshold=1.2,horizon=50 --iteration 120 --layer 0 --format json"),
     ("", f"place --trace {S} --gpus 8 --policy eplb --iteration 40"),
     ("", f"place --trace {S} --gpus 8 --policy capacity --iteration 3 --layer 1"),
     ("", f"place --trace {S} --gpus 16 --slots 3 --policy eplb --iteration 60 --layer 2"),
     ("", f"place --trace {S} --gpus 64 --policy static --iteration 5 --layer 0"),
     ("", f"place --trace {S} --gpus 8 --layer 99"), ("", "place --gpus 8"), ("", "place --help"),
     ("", f"place --trace {S} --gpus 8 --policy nope --format json")],
    [("", "net --cluster dgx-h100 --nodes 2 --flows f.csv"), ("", "net --cluster dgx-h100 --nodes 2 --flows f.csv --format json"),
     ("", "net --gpus 16 --flows f.csv"), ("", "net"), ("", "net --flows bad.csv"), ("", "net --flows missing.csv"),
     ("", "net --help"), ("", "net --flows f.csv --gpus 12"), ("", "net --flows f.csv extra")],
    [("", "clusters"), ("", "clusters --format json"), ("", "clusters dgx-h100 h200-green-4 --format json"),
     ("", "clusters --gpus 16"), ("", "clusters nope"), ("", "clusters --help"), ("", "clusters --format csv"),
     ("", "clusters cl.json"), ("", "clusters cl.json --format json"),
     ("", "policies"), ("", "policies --format json"), ("", "policies extra"), ("", "policies --help")],
    [("", f"trace info {S}"), ("", f"trace info {S} --format json"), ("", f"trace info {CSV}"),
     ("", f"trace info {S} --iterations 10:20"), ("", f"trace stats {S}"), ("", f"trace stats {S} --format json"),
     ("", f"trace stats {CSV}"), ("", "trace info"), ("", "trace info missing.npy"), ("", "trace stats --help"),
     ("", "trace"), ("", "trace bogus"), ("", "trace --help"), ("", "trace info --help"),
     ("", "trace gen --pattern hot-experts --layers 2 --experts 16 --iterations 50 --seed 7 -o hot.npy"),
     ("", "trace gen --pattern balanced --layers 2 --experts 16 --iterations 20 --seed 7 -o m.npy --drift 0.1:0.9 --hot 2:1.5 --dist zipf:1.2 --burst 0.01 --rotate 5 --regime 20 --ragged 0.2 --momentum 0.3 --rank-sigma 0.1 --spread"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --drift x"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --drift 0.1:7"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --hot 99"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --dist foo"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --dist zipf:0"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --rotate 0"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --rank-sigma 11"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --burst 2"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --ragged 9 --momentum 1"),
     ("", "trace gen --pattern balanced --iterations 5 -o e.npy --rank-sigma 0.1:2"),
     ("", "trace gen --pattern balanced --iterations 5"), ("", "trace gen --pattern nope --iterations 5 -o e.npy"),
     ("", "trace gen --iterations 5 -o e.npy"), ("", "trace gen --help"),
     ("", f"trace fit {S} --iterations 0:40 -o fit.json"), ("", f"trace fit {S} --iterations 0:40 -o fit2.json --format json"),
     ("", "trace gen --fit fit.json --iterations 20 --seed 3 -o fitted.npy"),
     ("", "trace gen --fit fit.json --iterations 20 --seed 3 -o fitted2.npy --dist lognormal:0.5 --momentum 0.2 --hot 3 --spread"),
     ("", "trace stats fitted2.npy"),
     ("", f"trace fit {S}"), ("", "trace fit --help"),
     ("", f"trace rescale {S} --gpus 16 --seed 3 -o r.npy"), ("", f"trace rescale {S} --gpus 16 --tokens-per-gpu 512 --iterations 0:10 -o r2.npy"),
     ("", f"trace rescale {S} -o r.npy"), ("", f"trace rescale {S} --gpus 16"), ("", "trace rescale --help"),
     ("", f"trace import {CSV} -o imp.npy --top-k 2"), ("", f"trace import {CSV} -o imp2.npy --strict"),
     ("", f"trace import {S} -o cut.npy --iterations 0:10"), ("", "trace import empty.csv -o ee.npy --strict"),
     ("", "trace import empty.csv -o ee2.npy"), ("", "trace info ee2.npy --format json"),
     ("", "trace info ee2.npy"), ("", f"sim --trace ee2.npy --no-db --format json"),
     ("", f"sim --trace ee2.npy --no-db --allow-empty --policy static"),
     ("", f"trace import {CSV}"), ("", f"trace import {S} -o x.npy --axes LIER --expert-ids"), ("", "trace import --help")],
    [("T", f"run --backend cpu --ranks 2 --trace {S} --iterations 0:3 {SMALL} --policy static --policy flexmoe --check"),
     ("T", f"run --backend cpu --ranks 2 --trace {S} --iterations 0:3 {SMALL} --policy static --format json --db rr.db"),
     ("T", "report --db rr.db"), ("T", "report --db rr.db --runs"), ("T", "report --db rr.db --format csv"),
     ("", "run --backend cpu"), ("", f"run --backend cpu --trace {S}"), ("", f"run --backend cpu --trace {S} --policy static --partitions 2"),
     ("", "run --help"), ("", f"run --backend cpu --trace {S} --policy static --profile missing.json"),
     ("T", f"calibrate --backend cpu --d-model 64 --d-ff 128 --reps 1 --out p.json"),
     ("T", f"calibrate --backend cpu --d-model 64 --d-ff 128 --reps 1 --format json --db c.db --name mine"),
     ("", "calibrate"), ("", "calibrate --backend nccl"), ("", "calibrate --backend cpu --d-model 12"),
     ("", "calibrate --backend cpu --partitions 2"), ("", "calibrate --help"), ("", "calibrate --backend bogus"),
     ("T", f"validate --backend cpu --ranks 2 --trace {S} --iterations 0:3 {SMALL} --policy static --policy flexmoe --profile p.json"),
     ("T", f"validate --backend cpu --ranks 2 --trace {S} --iterations 0:3 {SMALL} --policy static --profile p.json --format json"),
     ("T", f"validate --backend cpu --ranks 2 --trace {S} --iterations 0:3 {SMALL} --policy static --profile p.json --engine cost"),
     ("", "validate"), ("", "validate --backend cpu"), ("", "validate --help"),
     ("", f"validate --backend cpu --trace {S} --policy nope --profile p.json")],
]

SETUP = {
    "f.csv": "src_gpu,dst_gpu,bytes\n0,1,1000000000\n0,8,1000000000\n3,12,500000\n",
    "bad.csv": "src_gpu,dst_gpu,bytes\n0,x,1\n",
    "empty.csv": "iteration,layer,rank,expert,tokens\n0,0,0,0,0\n1,0,1,3,0\n",
    "cl.json": '{"name": "star16", "nodes": 16, "gpus_per_node": 1, "gpu": {"profile": "h200", "hbm_gib": 141}, '
               '"intra": {"bandwidth_GBps": 450, "latency_us": 2}, "inter": {"bandwidth_GBps": 50, '
               '"latency_us": 5, "oversubscription": 1.0}}',
}
NUM = re.compile(rb" *(-?\d+\.\d+(e[-+]\d+)?|\d+e[-+]\d+)")
SKIPCOL = re.compile(r"start|finish|wall|version|created|host|time_s|elapsed", re.I)


def dump_db(path):
    con = sqlite3.connect(path)
    out = []
    for (t,) in con.execute("select name from sqlite_master where type='table' order by name"):
        cols = [r[1] for r in con.execute(f"pragma table_info('{t}')")]
        keep = [c for c in cols if not SKIPCOL.search(c)]
        if not keep:
            continue
        q = ",".join(f'"{c}"' for c in keep)
        for row in sorted(con.execute(f'select {q} from "{t}"'), key=repr):
            out.append(f"{t} {row!r}")
    con.close()
    return "\n".join(out).encode()


def run_group(binary, group, d):
    res = []
    env = dict(os.environ, FLEXMOE_PROGRESS="0")
    for mark, line in group:
        before = {f: os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)}
        p = subprocess.run(f"{binary} {line}", shell=True, cwd=d, env=env, capture_output=True, timeout=600)
        out, err = p.stdout, p.stderr
        if mark == "T":
            out, err = NUM.sub(b" N", out), NUM.sub(b" N", err)
            out = re.sub(rb"ranking (agrees|DIFFERS)|\"ranking_agrees\": (true|false)", b"RANK", out)
        files = {}
        for f in sorted(os.listdir(d)):
            fp = os.path.join(d, f)
            if f in before and os.path.getmtime(fp) == before[f]:
                continue
            if f.endswith((".db-wal", ".db-shm")):
                continue
            data = open(fp, "rb").read()
            if f.endswith(".db"):
                data = dump_db(fp)
            if mark == "T":
                data = NUM.sub(b" N", data)
            files[f] = hashlib.sha256(data).hexdigest()[:16]
        res.append((line, p.returncode, out, err, files))
    return res


def main():
    total = same = 0
    for gi, group in enumerate(GROUPS):
        if ONLY and str(gi) not in ONLY.split(","):
            continue
        outs = []
        for b in (OLD, NEW):
            d = tempfile.mkdtemp(prefix="fmcmp")
            for f, t in SETUP.items():
                open(os.path.join(d, f), "w").write(t)
            outs.append(run_group(b, group, d))
            shutil.rmtree(d)
        for (line, rc1, o1, e1, f1), (_, rc2, o2, e2, f2) in zip(*outs):
            total += 1
            if (rc1, o1, e1, f1) == (rc2, o2, e2, f2):
                same += 1
                continue
            print(f"DIFF [{gi}] flexmoe {line}")
            if rc1 != rc2: print(f"  rc {rc1} -> {rc2}")
            if o1 != o2: print(f"  stdout differs:\n--- old\n{o1.decode(errors='replace')[:1500]}\n--- new\n{o2.decode(errors='replace')[:1500]}")
            if e1 != e2: print(f"  stderr differs:\n--- old\n{e1.decode(errors='replace')[:800]}\n--- new\n{e2.decode(errors='replace')[:800]}")
            if f1 != f2: print(f"  files {f1} -> {f2}")
    print(f"{same}/{total} command lines identical")
    return 0 if same == total else 1


sys.exit(main())
