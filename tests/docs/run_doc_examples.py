#!/usr/bin/env python3
"""Runs the command examples of README.md and docs/*.md and compares their output.

An example is a fenced code block whose first line starts with `$ ` (or one that a
`<!-- doctest run: ... -->` comment gives a command). Each `$ ` line (with its `\\`
continuation lines) is run with bash in a scratch copy of the tree; the lines after it,
up to the next `$ ` line or the end of the block, are its shown output, compared with
what the command prints on stdout and stderr together. The rules -- what must match,
the normalisations, `...` gaps, excerpts, the `<!-- doctest -->` directives, which
examples are not run and why -- are in docs/testing.md.

Output is TAP, one line per example (meson: protocol 'tap'). Exit 0 when every example
selected matched or was skipped; 1 otherwise.

  run_doc_examples.py --source-root S --flexmoe BIN [--build-root B] [--doc FILE]...
                      [--needs none|NEED|all] [--list] [--update]
"""

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# What an example may need that a machine can lack. Without it, the example is a
# visible skip (TAP "# SKIP"); with the need named in FLEXMOE_REQUIRE (or "all"), it
# fails instead.
NEEDS = ("real-traces", "torch", "mpi", "unprivileged")
# unprivileged: a user file permissions apply to; as root, the example runs as nobody

# Normalisations applied to both the shown and the actual output of every example,
# for values that differ from run to run whatever the code does.
GLOBAL_NORMS = [
    # flexmoe sweep's summary: "  wall 19.82 s with 2 workers"
    (re.compile(r"^(\s*wall )\d+(?:\.\d+)? s\b"), r"\1<t> s"),
]

# The runtime's per-iteration progress lines on stderr (timings): left out on both sides.
PROGRESS = "progress: "
FENCE = re.compile(r"^```")
DIRECTIVE = re.compile(r"<!--\s*doctest\b(.*?)-->", re.S)
EXCERPT = re.compile(r"\s+\((excerpt[^)]*)\)\s*$")
GAP = "..."
NOBODY = 65534
KEYS = ("setup", "mask", "skip", "needs", "run", "scratch", "compare")
# `...` in a shown line of a JSON example, with an optional note: "... (32 in all)"
JSON_GAP = re.compile(r"\.\.\.(?: \([^)]*\))?")


class Command:
    def __init__(self, text, line, shown, shown_at, excerpt):
        self.text = text          # the command as bash runs it
        self.line = line          # line number of its `$ ` line (1-based)
        self.shown = shown        # shown output lines
        self.shown_at = shown_at  # index in the document of the first shown line
        self.excerpt = excerpt    # shown lines are an ordered subset of the output


class Example:
    def __init__(self, doc, line):
        self.doc = doc            # path relative to the source root
        self.line = line          # line of the opening fence (1-based)
        self.commands = []
        self.setup = []           # shell commands run before, output not compared
        self.masks = []           # compiled regexes
        self.skip = None          # reason this example is not run
        self.needs = set()
        self.own_scratch = False
        self.json = False         # compare as JSON, whitespace-insensitive

    def title(self):
        first = self.commands[0].text.split("\n")[0] if self.commands else "?"
        if len(first) > 70:
            first = first[:67] + "..."
        return "%s:%d %s" % (self.doc, self.line, first)


def parse_directive(text, where):
    """Returns [(key, value)] of a `<!-- doctest ... -->` comment's body."""
    out = []
    for raw in text.strip().split("\n"):
        s = raw.strip()
        if not s or s.startswith("#"):  # a note for the reader of the source
            continue
        m = re.match(r"^(%s):\s*(.*)$" % "|".join(KEYS), s)
        if not m:
            raise SystemExit("%s: doctest directive line '%s' is not '%s: VALUE'"
                             % (where, s, "|".join(KEYS)))
        out.append((m.group(1), m.group(2)))
    return out


def parse_doc(root, rel):
    """Returns the examples of one markdown file, in order."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        lines = f.read().split("\n")
    examples = []
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        body = lines[start + 1:j]
        # the directive comment, if any: the last non-blank text before the fence
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        directives = []
        if k >= 0 and lines[k].rstrip().endswith("-->"):
            text = "\n".join(lines[max(0, k - 40):k + 1])
            m = None
            for m in DIRECTIVE.finditer(text):
                pass
            if m and text.rstrip().endswith(m.group(0).rstrip()):
                directives = parse_directive(m.group(1), "%s:%d" % (rel, k + 1))
        ex = build_example(rel, start, body, directives)
        if ex:
            examples.append(ex)
        i = j + 1
    return examples


def build_example(rel, start, body, directives):
    runs = [v for k, v in directives if k == "run"]
    first = next((b for b in body if b.strip()), "")
    if not first.startswith("$ ") and not runs:
        return None
    ex = Example(rel, start + 1)
    for k, v in directives:
        if k == "setup":
            ex.setup.append(v)
        elif k == "mask":
            try:
                ex.masks.append(re.compile(v))
            except re.error as e:
                raise SystemExit("%s:%d: doctest mask '%s': %s" % (rel, start + 1, v, e))
        elif k == "skip":
            ex.skip = v
        elif k == "needs":
            for n in v.replace(",", " ").split():
                if n not in NEEDS:
                    raise SystemExit("%s:%d: doctest needs '%s' is not one of %s"
                                     % (rel, start + 1, n, " ".join(NEEDS)))
                ex.needs.add(n)
        elif k == "scratch":
            if v != "own":
                raise SystemExit("%s:%d: doctest scratch '%s': only 'own'" % (rel, start + 1, v))
            ex.own_scratch = True
        elif k == "compare":
            if v != "json":
                raise SystemExit("%s:%d: doctest compare '%s': only 'json'" % (rel, start + 1, v))
            ex.json = True
    if runs:
        ex.commands.append(Command("\n".join(runs), start + 1, body, start + 1, False))
    else:
        b = 0
        while b < len(body):
            if not body[b].startswith("$ "):
                b += 1
                continue
            line = start + 2 + b
            text = body[b][2:]
            while text.endswith("\\") and b + 1 < len(body):
                b += 1
                text = text + "\n" + body[b]
            excerpt = False
            m = EXCERPT.search(text)
            if m:
                excerpt = True
                text = text[:m.start()]
            b += 1
            out_start = b
            while b < len(body) and not body[b].startswith("$ "):
                b += 1
            ex.commands.append(Command(text, line, body[out_start:b], start + 1 + out_start,
                                       excerpt))
    for c in ex.commands:
        if "../shared/" in c.text:
            ex.needs.add("real-traces")
        if re.search(r"(^|\s)mpirun\s", c.text):
            ex.needs.add("mpi")
    return ex


# ---------------------------------------------------------------- comparison

def mask_line(rx, line):
    """Replaces rx's groups (or, without groups, its whole match) by '<~>'."""
    def one(m):
        if not m.re.groups:
            return "<~>"
        s, base, pos = m.group(0), m.start(0), 0
        out = []
        for g in range(1, m.re.groups + 1):
            if m.start(g) < 0:
                continue
            a = m.start(g) - base
            while a > pos and s[a - 1] == " ":  # a masked value takes the blanks before it,
                a -= 1                           # so column alignment does not matter
            out.append(s[pos:a])
            out.append(" <~>" if a < m.start(g) - base else "<~>")
            pos = m.end(g) - base
        out.append(s[pos:])
        return "".join(out)
    return rx.sub(one, line)


def normalise(lines, masks):
    out = []
    for line in lines:
        if line.startswith(PROGRESS):
            continue
        s = line.rstrip()
        for rx, repl in GLOBAL_NORMS:
            s = rx.sub(repl, s)
        for rx in masks:
            s = mask_line(rx, s)
        out.append(s)
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return out


def matches(shown, actual, excerpt):
    """True when the normalised shown lines match the normalised actual ones: equal,
    with a `...` line standing for any number of lines; in an excerpt, the shown lines
    are an ordered subset of the actual ones."""
    if excerpt:
        pos = 0
        for s in shown:
            if s.strip() == GAP:
                continue
            while pos < len(actual) and actual[pos] != s:
                pos += 1
            if pos == len(actual):
                return False
            pos += 1
        return True
    segments, cur = [], []
    for s in shown:
        if s.strip() == GAP:
            segments.append(cur)
            cur = []
        else:
            cur.append(s)
    segments.append(cur)
    if len(segments) == 1:
        return shown == actual
    head, tail = segments[0], segments[-1]
    if actual[:len(head)] != head:
        return False
    if tail and actual[len(actual) - len(tail):] != tail:
        return False
    pos, end = len(head), len(actual) - len(tail)
    if pos > end:
        return False
    for seg in segments[1:-1]:
        if not seg:
            continue
        found = -1
        for p in range(pos, end - len(seg) + 1):
            if actual[p:p + len(seg)] == seg:
                found = p
                break
        if found < 0:
            return False
        pos = found + len(seg)
    return True


def json_matches(shown, actual):
    """A JSON example: the actual output parsed and written on one line; the shown lines
    joined, blanks collapsed, `...` (and a note in parentheses after it) standing for any
    text."""
    try:
        got = json.dumps(json.loads(actual))
    except ValueError:
        return False
    want = re.sub(r"\s+", " ", " ".join(shown)).strip()
    want = re.sub(r"([\[{]) ", r"\1", want)
    want = re.sub(r" ([\]}])", r"\1", want)
    rx = ".*?".join(re.escape(p) for p in JSON_GAP.split(want))
    return re.fullmatch(rx, got, re.S) is not None


def is_error_example(shown):
    """An example whose output is an error line ('flexmoe CMD: ...') must exit non-zero."""
    first = next((s for s in shown if s.strip()), "")
    return re.match(r"^flexmoe( [a-z]+)+: ", first) is not None


# ---------------------------------------------------------------- running

class Scratch:
    """A scratch tree: ROOT/repo is the working directory (the repository's traces/,
    placement/ and build/ linked in), ROOT/shared the sibling shared/ folder when the
    source tree has one, ROOT/bin first on PATH (flexmoe, python3)."""

    def __init__(self, args):
        self.root = tempfile.mkdtemp(prefix="flexmoe-doc-")
        os.chmod(self.root, 0o755)
        self.work = os.path.join(self.root, "repo")
        self.bin = os.path.join(self.root, "bin")
        os.mkdir(self.work)
        os.mkdir(self.bin)
        for name in ("traces", "placement", "bench"):
            os.symlink(os.path.join(args.source_root, name), os.path.join(self.work, name))
        if args.build_root:
            os.symlink(args.build_root, os.path.join(self.work, "build"))
        shared = find_shared(args.source_root)
        if shared:
            os.symlink(shared, os.path.join(self.root, "shared"))
        os.symlink(args.flexmoe, os.path.join(self.bin, "flexmoe"))
        os.symlink(args.python, os.path.join(self.bin, "python3"))
        os.chmod(self.work, 0o755)
        os.chmod(self.bin, 0o755)

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEXMOE_")}
        env["PATH"] = self.bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        env["LC_ALL"] = "C.UTF-8"
        env["HOME"] = self.root
        return env

    def give_to_nobody(self):
        for d, dirs, files in os.walk(self.work):
            for n in dirs + files + [""]:
                p = os.path.join(d, n) if n else d
                if not os.path.islink(p):
                    os.chown(p, NOBODY, NOBODY)
        os.chown(self.root, NOBODY, NOBODY)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def find_shared(source_root):
    for up in ("..", os.path.join("..", "..")):  # a worktree may sit one level deeper
        p = os.path.normpath(os.path.join(source_root, up, "shared"))
        if os.path.isdir(os.path.join(p, "traces", "real")):
            return p
    return None


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def need_met(need, args):
    """'' when the machine has it, else why not."""
    if need == "real-traces":
        return "" if find_shared(args.source_root) else "../shared/traces/real not present"
    if need == "torch":
        p = subprocess.run([args.python, "-c", "import torch"], capture_output=True)
        return "" if p.returncode == 0 else "%s cannot import torch" % args.python
    if need == "mpi":
        if not shutil.which("mpirun"):
            return "mpirun not found"
        p = subprocess.run([args.flexmoe, "--version"], capture_output=True, text=True)
        return "" if "mpi yes" in p.stdout else "flexmoe built without MPI"
    if need == "unprivileged":
        if os.geteuid() != 0:
            return ""
        try:
            p = subprocess.run([args.flexmoe, "--version"], capture_output=True,
                               preexec_fn=as_nobody, cwd="/")
        except OSError as e:
            return "root, and cannot run flexmoe as nobody: %s" % e
        return "" if p.returncode == 0 else "root, and nobody cannot run %s" % args.flexmoe
    raise AssertionError(need)


def required(need):
    req = os.environ.get("FLEXMOE_REQUIRE", "")
    names = {n.strip() for n in req.split(",") if n.strip()}
    return need in names or "all" in names


def run_shell(cmd, scratch, nobody, timeout):
    """Runs cmd with bash; returns (stdout then stderr, exit status, seconds). The two
    streams are not interleaved: how they would be on a terminal depends on buffering."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(["bash", "-c", cmd], cwd=scratch.work, env=scratch.env(),
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                           preexec_fn=as_nobody if nobody else None)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if out and err and not out.endswith("\n"):
            out += "\n"
        out, rc = out + err, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        out += "\n(timed out after %d s)" % timeout
        rc = -1
    return out, rc, time.monotonic() - t0


def run_example(ex, scratch, args):
    """Returns (ok, diagnostic lines, normalised?, seconds, [(command, actual)])."""
    nobody = "unprivileged" in ex.needs and os.geteuid() == 0
    if nobody:
        scratch.give_to_nobody()
    diag, normalised, secs, actuals = [], False, 0.0, []
    for s in ex.setup:
        out, rc, t = run_shell(s, scratch, nobody, args.timeout)
        secs += t
        if rc != 0:
            return False, ["setup '%s' exited %d:" % (s, rc)] + out.split("\n")[-20:], \
                normalised, secs, actuals
    ok = True
    for c in ex.commands:
        m = re.match(r"^cat (\S+)$", c.text)
        if m and not os.path.lexists(os.path.join(scratch.work, m.group(1))):
            # the example shows an input file: write it, as the reader would
            with open(os.path.join(scratch.work, m.group(1)), "w", encoding="utf-8") as f:
                f.write("\n".join(normalise(c.shown, [])) + "\n")
            if nobody:
                os.chown(os.path.join(scratch.work, m.group(1)), NOBODY, NOBODY)
        out, rc, t = run_shell(c.text, scratch, nobody, args.timeout)
        secs += t
        actuals.append((c, out))
        shown = normalise(c.shown, ex.masks)
        if shown != normalise(c.shown, []) or any(
                rx.search(l) for rx, _ in GLOBAL_NORMS for l in c.shown):
            normalised = True
        got = normalise(out.split("\n"), ex.masks)
        want_fail = is_error_example(c.shown)
        if (rc != 0) != want_fail:
            ok = False
            diag.append("line %d: '%s' exited %d (%s)" % (
                c.line, c.text.split("\n")[0], rc,
                "an error example must exit non-zero" if want_fail else "expected 0"))
            diag.extend(out.split("\n")[-20:])
        elif ex.json and not json_matches(c.shown, out):
            ok = False
            diag.append("line %d: '%s': JSON output differs; actual:" % (
                c.line, c.text.split("\n")[0]))
            diag.extend(out.split("\n")[:60])
        elif not ex.json and not matches(shown, got, c.excerpt):
            ok = False
            diag.append("line %d: '%s': output differs (%s)" % (
                c.line, c.text.split("\n")[0],
                "excerpt: shown lines not found in order" if c.excerpt else "- shown, + actual"))
            diag.extend(difflib.unified_diff(shown, got, "shown", "actual", lineterm="", n=2))
    return ok, diag, normalised, secs, actuals


# ---------------------------------------------------------------- update

def update_doc(root, rel, fixes):
    """Replaces the shown output of each (command, actual) in fixes; whole-output
    examples only (no excerpt, no gap)."""
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for c, actual in sorted(fixes, key=lambda x: -x[0].shown_at):
        new = actual.rstrip("\n").split("\n")
        new = [l.rstrip() for l in new]
        n = len(c.shown)
        # keep the blank line that separates this output from the next command
        while n and not c.shown[n - 1].strip():
            n -= 1
        lines[c.shown_at:c.shown_at + n] = new
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------- main

def selected(ex, which):
    if which == "all":
        return True
    if which == "none":
        return not ex.needs
    return which in ex.needs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--build-root", default="")
    ap.add_argument("--flexmoe", required=True, help="the flexmoe binary")
    ap.add_argument("--python", default=sys.executable,
                    help="python3 for the examples (one that has torch, when there is one)")
    ap.add_argument("--doc", action="append", default=[],
                    help="markdown file relative to the source root (repeat; default: "
                         "README.md and docs/*.md)")
    ap.add_argument("--needs", default="all", choices=("none", "all") + NEEDS,
                    help="run the examples that need nothing (none), those that need NEED, "
                         "or all (default)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per command")
    ap.add_argument("--list", action="store_true", help="list the examples, run nothing")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the shown output of whole-output examples that differ")
    ap.add_argument("--registered", metavar="DOC,DOC",
                    help="check that every document with examples is in this list; run nothing")
    args = ap.parse_args()
    args.source_root = os.path.abspath(args.source_root)
    args.flexmoe = os.path.abspath(args.flexmoe)
    if args.build_root:
        args.build_root = os.path.abspath(args.build_root)
    docs = args.doc or ["README.md"] + sorted(
        os.path.join("docs", n) for n in os.listdir(os.path.join(args.source_root, "docs"))
        if n.endswith(".md"))

    if args.registered is not None:
        listed = set(args.registered.split(","))
        missing = [d for d in docs if d not in listed and parse_doc(args.source_root, d)]
        for d in missing:
            print("%s has command examples but is not in tests/docs/meson.build's list" % d,
                  file=sys.stderr)
        return 1 if missing else 0

    plan = []
    for d in docs:
        plan.extend(ex for ex in parse_doc(args.source_root, d) if selected(ex, args.needs))

    if args.list:
        for ex in plan:
            tags = sorted(ex.needs) + (["not run: " + ex.skip] if ex.skip else [])
            print("%s%s" % (ex.title(), "  [%s]" % ", ".join(tags) if tags else ""))
        return 0

    print("TAP version 13")
    print("1..%d" % len(plan))
    sys.stdout.flush()
    failed, counts = 0, {"run": 0, "matched": 0, "normalised": 0, "not run": 0, "skipped": 0}
    unmet = {}
    scratches = {}
    fixes = {}
    t_all = time.monotonic()
    for n, ex in enumerate(plan, 1):
        if ex.skip:
            counts["not run"] += 1
            print("ok %d - %s # SKIP not run: %s" % (n, ex.title(), ex.skip))
            continue
        why = [w for w in (unmet.setdefault(need, need_met(need, args))
                           for need in sorted(ex.needs)) if w]
        if why:
            must = [need for need in sorted(ex.needs) if required(need) and unmet[need]]
            if must:
                failed += 1
                print("not ok %d - %s" % (n, ex.title()))
                print("# FLEXMOE_REQUIRE has %s, but: %s" % (", ".join(must), "; ".join(why)))
            else:
                counts["skipped"] += 1
                print("ok %d - %s # SKIP %s" % (n, ex.title(), "; ".join(why)))
            continue
        if ex.own_scratch:
            scratch = Scratch(args)
        else:
            scratch = scratches.get(ex.doc)
            if scratch is None:
                scratch = scratches[ex.doc] = Scratch(args)
        try:
            ok, diag, normalised, secs, actuals = run_example(ex, scratch, args)
        finally:
            if ex.own_scratch:
                scratch.close()
        counts["run"] += 1
        counts["normalised"] += normalised
        if ok:
            counts["matched"] += 1
            print("ok %d - %s (%.1f s)" % (n, ex.title(), secs))
        else:
            failed += 1
            print("not ok %d - %s (%.1f s)" % (n, ex.title(), secs))
            for d in diag:
                print("# " + d)
                print(d, file=sys.stderr)
            whole = [(c, out) for c, out in actuals
                     if not ex.json and not c.excerpt and not any(s.strip() == GAP for s in c.shown)
                     and not matches(normalise(c.shown, ex.masks),
                                     normalise(out.split("\n"), ex.masks), False)]
            fixes.setdefault(ex.doc, []).extend(whole)
        sys.stdout.flush()
    for s in scratches.values():
        s.close()
    print("# %d examples: %d run, %d matched (%d of them with normalised values), "
          "%d not run (marked), %d skipped (a need missing), %.1f s"
          % (len(plan), counts["run"], counts["matched"], counts["normalised"],
             counts["not run"], counts["skipped"], time.monotonic() - t_all))
    if args.update:
        for d, f in fixes.items():
            if f:
                update_doc(args.source_root, d, f)
                print("# updated %d outputs in %s" % (len(f), d))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
