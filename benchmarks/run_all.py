"""`make bench`: run every benchmark in turn; each rewrites its own section of RESULTS.md.

    .venv/bin/python benchmarks/run_all.py            # everything (about 90 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py scifact    # only the steps whose name contains 'scifact'

Benchmarks run one after another, never in parallel: they measure wall time on a shared
machine and each uses both cores. bench_peers.py runs with the peers venv's interpreter
(`make peers-venv`; $PEERS_PYTHON overrides where it is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# CocoIndex needs rich>=14, which the project's venv pins below 14: its own venv (Makefile)
PEERS_PYTHON = Path(os.environ.get("PEERS_PYTHON", HERE.parents[1] / "peers-venv/bin/python"))

STEPS: list[tuple[str, list[str]]] = [
    ("scifact", ["bench_scifact.py"]),
    ("checks-scifact", ["bench_checks.py", "scifact"]),
    ("checks-synthetic-1m", ["bench_checks.py", "synthetic-build"]),
    ("checks-synthetic-1m-run", ["bench_checks.py", "synthetic"]),
    ("checks-report", ["bench_checks.py", "report"]),
    ("migration", ["bench_migration.py"]),
    ("robustness", ["bench_robustness.py"]),
    ("scale", ["bench_scale.py"]),
    ("scale-version-memory", ["bench_version_memory.py"]),  # on bench_scale's store
    ("shards", ["bench_shards.py"]),
    ("peers", ["bench_peers.py"]),
    ("refresh-users-path", ["bench_refresh.py"]),
    ("freshness", ["bench_freshness.py"]),
    ("search", ["bench_search.py"]),
    ("sources", ["bench_sources.py"]),
]


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    failed = []
    for name, command in STEPS:
        if wanted and not any(w in name for w in wanted):
            continue
        script = HERE / command[0]
        if not script.exists():
            print(f"== {name}: {script.name} not present, skipped", flush=True)
            continue
        python = PEERS_PYTHON if name == "peers" else Path(sys.executable)
        if not python.exists():
            print(f"== {name}: FAILED, no {python}: run `make peers-venv`", flush=True)
            failed.append(name)
            continue
        print(f"== {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([str(python), str(script), *command[1:]])
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    print(
        "== results: benchmarks/RESULTS.md" + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
