#!/usr/bin/python3
"""Writes every scenario capture (unstamped) to the directory given as first argument."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctgen  # noqa: E402

import importlib  # noqa: E402
import glob  # noqa: E402

for path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios_*.py"))):
    importlib.import_module(os.path.basename(path)[:-3])

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: generate.py OUTDIR [NAME-FILTER]")
    ctgen.build(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
