#!/usr/bin/env python3
"""funclen.py - list C functions longer than a limit (issue 15: every function
under 80 lines in cli/ and run/).

A function's length is counted from the line holding its opening brace to the
line holding its closing brace, both included. A function is a top-level
brace block (depth 0 -> 1) whose header, the text since the previous top-level
';' or '}', ends in ')' (optionally followed by attributes), so struct, enum
and array initializers are not counted. Comments, strings and character
literals are skipped when counting braces; preprocessor lines are ignored.

Usage: scripts/funclen.py [--limit N] [--exclude PATH ...] DIR_OR_FILE ...
Prints "path:line name length" for each function over N lines (default 80),
longest first, and exits 1 if there is any, 0 otherwise, 2 on bad usage.
"""
import argparse
import os
import re
import sys


def strip(text):
    """The text with comments, string and char literals and preprocessor
    lines blanked, newlines kept so line numbers stay right."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == '#':
            # preprocessor directive, with backslash continuations
            while i < n and text[i] != '\n':
                if text[i] == '\\' and i + 1 < n and text[i + 1] == '\n':
                    out.append(' \n')
                    i += 2
                    continue
                out.append(' ')
                i += 1
            continue
        if c == '/' and text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(''.join('\n' if ch == '\n' else ' ' for ch in text[i:j]))
            i = j
            continue
        if c == '/' and text.startswith('//', i):
            while i < n and text[i] != '\n':
                out.append(' ')
                i += 1
            continue
        if c in '"\'':
            q = c
            out.append(' ')
            i += 1
            while i < n and text[i] != q:
                if text[i] == '\\':
                    out.append(' ')
                    i += 1
                out.append('\n' if i < n and text[i] == '\n' else ' ')
                i += 1
            out.append(' ')
            i += 1
            at_line_start = False
            continue
        out.append(c)
        if c == '\n':
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        i += 1
    return ''.join(out)


NAME = re.compile(r'([A-Za-z_]\w*)\s*\(')


def functions(path):
    """Yields (name, first line, length in lines) for each function in path."""
    with open(path, encoding='utf-8', errors='replace') as f:
        text = strip(f.read())
    depth = 0
    header_start = 0
    line = 1
    start_line = 0
    name = None
    for i, c in enumerate(text):
        if c == '\n':
            line += 1
        elif c == '{':
            if depth == 0:
                header = text[header_start:i].strip()
                name = None
                if re.search(r'\)\s*(__attribute__\s*\(\(.*\)\)\s*)?$', header, re.S):
                    names = NAME.findall(header)
                    if names:
                        name = names[0]
                start_line = line
            depth += 1
        elif c == '}':
            depth -= 1
            if depth == 0:
                if name:
                    yield name, start_line, line - start_line + 1
                header_start = i + 1
        elif c == ';' and depth == 0:
            header_start = i + 1


def sources(paths, excludes):
    ex = {os.path.normpath(e) for e in excludes}
    for p in paths:
        if os.path.isfile(p):
            files = [p]
        elif os.path.isdir(p):
            files = []
            for root, _, names in os.walk(p):
                files += [os.path.join(root, x) for x in names
                          if x.endswith(('.c', '.h', '.cu'))]
        else:
            raise FileNotFoundError(p)
        for f in sorted(files):
            if os.path.normpath(f) not in ex:
                yield f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--limit', type=int, default=80,
                    help='longest allowed function in lines (default 80)')
    ap.add_argument('--exclude', action='append', default=[],
                    help='a file to leave out (repeatable)')
    ap.add_argument('paths', nargs='+', help='folders or files to scan')
    a = ap.parse_args()
    if a.limit < 1:
        ap.error('--limit: must be a positive number of lines')
    over = []
    try:
        for f in sources(a.paths, a.exclude):
            for name, ln, length in functions(f):
                if length > a.limit:
                    over.append((length, f, ln, name))
    except FileNotFoundError as e:
        print(f'funclen.py: {e}: no such file or folder', file=sys.stderr)
        return 2
    over.sort(key=lambda r: (-r[0], r[1], r[2]))
    for length, f, ln, name in over:
        print(f'{f}:{ln} {name} {length}')
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main())
