#!/usr/bin/env python3
"""Every `kvmart` command answers --help, and every option it lists says what
it does. Walks the command tree from `kvmart --help`.

    help_test.py KVMART
"""
import re
import subprocess
import sys

KVMART = sys.argv[1]
problems = []


def sections(text):
    """{'Options': [lines], 'Subcommands': [lines]} of a CLI11 help text."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Za-z ]*):\s*$", line)
        if m:
            cur = m.group(1)
            out[cur] = []
        elif cur and line.startswith("  "):
            out[cur].append(line)
        elif not line.strip():
            cur = None
    return out


def walk(path):
    r = subprocess.run([KVMART, *path, "--help"], capture_output=True, text=True, timeout=30)
    name = " ".join(["kvmart", *path])
    if r.returncode != 0:
        problems.append(f"{name} --help: exit {r.returncode}")
        return 0
    s = sections(r.stdout)
    lines = s.get("Options", []) + s.get("Positionals", [])
    for i, line in enumerate(lines):
        # An option line is "  NAMES [TYPE] [DEFAULT]   description"; when the
        # names are long, CLI11 puts the description on the next line, which
        # starts with many spaces.
        if not re.match(r"^ {2}\S", line):
            continue
        # A names column that just fills CLI11's width leaves one space before
        # the description ("--destination TEXT REQUIRED the account...").
        fields = re.split(r"\s{2,}|(?<=REQUIRED) ", line.strip())
        wrapped = i + 1 < len(lines) and re.match(r"^ {10,}\S", lines[i + 1])
        if len(fields) < 2 and not wrapped:
            problems.append(f"{name}: option without a description: {line.strip()}")
    n = 1
    for line in s.get("Subcommands", []):
        sub = line.split()[0]
        n += walk([*path, sub])
    return n


count = walk([])
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"help: {count} commands, every option described")
