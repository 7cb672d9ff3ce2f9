"""Freshness: seconds from saving a document to the first search that serves it, as users run it.

    .venv/bin/python benchmarks/bench_freshness.py                      # SciFact, MiniLM, ~60 min
    .venv/bin/python benchmarks/bench_freshness.py --baseline-ref a0ff882  # and the old design
    .venv/bin/python benchmarks/bench_freshness.py --docs 300 --model static --edits 2 --deletes 1

Starts `dagster dev` (webserver + daemon, 127.0.0.1, a free port) with a temporary DAGSTER_HOME
(deploy/dagster.local.yaml as dagster.yaml), storage and registry, at the project's default
intervals, over a `folder` source of one file per SciFact abstract (read from
../shared/data/scifact at run time, written to a temporary directory, never into the repository).
The initial build runs first, untimed (`embeddings-platform materialize`). Then it saves edits and
deletes at random moments (after the daemon is quiet, a random 0-30 s pause) and polls
`core.serving.search` on the pinned serving pointer every 0.5 s: an edit is served when a
search returns its new text, a delete when a search no longer returns the document. Where the
time went is read from the instance: sensor and automation ticks, run records, step events.

With --baseline-ref, the same build and the same edits also run on that git revision's code
(`git archive` into the temporary directory), before the current code, in the same invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _dagster_dev import DagsterDev, breakdown, runs_since, wait_quiet  # noqa: E402
from _freshness_changes import SOURCE, Load, one_change, plan_changes  # noqa: E402
from _results import BENCH_MODELS, OUT, ROOT, SCIFACT, bench_main, machine  # noqa: E402

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import yaml  # noqa: E402

BIN = Path(sys.executable).parent
MODELS = BENCH_MODELS


def _write_source(folder: Path, docs: int | None) -> list[str]:
    """One file per abstract (what users edit); returns the abstract ids."""
    folder.mkdir(parents=True)
    ids = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as corpus:
        for line in corpus:
            if docs is not None and len(ids) >= docs:
                break
            row = json.loads(line)
            (folder / f"{row['_id']}.txt").write_text(
                f"{row['title']}\n\n{row['text']}", encoding="utf-8"
            )
            ids.append(str(row["_id"]))
    return ids


def _registry(folder: Path, model: dict, refresh: dict | None = None) -> Path:
    """The registry of one copy: storage, source and model; refresh at the project's defaults
    unless --sensor-interval / --automation-interval set them."""
    path = folder / "platform.yaml"
    registry = {
        "storage": {"uri": str(folder / "lancedb")},
        "sources": [{"name": SOURCE, "kind": "folder", "path": str(folder / "source")}],
        "models": [model],
    }
    if refresh:
        registry["refresh"] = refresh
    path.write_text(yaml.safe_dump(registry))
    return path


def _refresh(args) -> dict:
    chosen = {
        "sensor_interval_seconds": args.sensor_interval,
        "automation_interval_seconds": args.automation_interval,
    }
    return {k: v for k, v in chosen.items() if v is not None}


def _env(code_root: Path, home: Path, registry: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(code_root),
        "DAGSTER_HOME": str(home),
        "EMBEDDINGS_PLATFORM_CONFIG": str(registry),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _build(work: Path, args) -> tuple[Path, list[str], float]:
    """The untimed initial build, once: copied for every variant so all start alike."""
    build = work / "build"
    ids = _write_source(build / "source", args.docs)
    registry = _registry(build, MODELS[args.model])
    (build / "home").mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", build / "home" / "dagster.yaml")
    started = time.perf_counter()
    with open(build / "materialize.log", "w") as log:
        subprocess.run(
            [str(BIN / "embeddings-platform"), "--config", str(registry), "materialize"],
            cwd=ROOT,
            env=_env(ROOT, build / "home", registry),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return build, ids, time.perf_counter() - started


def _variant(
    name: str, code_root: Path, work: Path, build: Path, plan: list[dict], embed, args
) -> dict:
    from dagster import DagsterInstance

    from embeddings_platform.core.store import Store

    folder = work / name.split()[0]
    shutil.copytree(build, folder, symlinks=True)
    # interval options are this code's settings: older code may not know them
    refresh = None if name.startswith("baseline") else _refresh(args)
    registry = _registry(folder, MODELS[args.model], refresh)
    home = folder / "home"
    shutil.copy(code_root / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    server = DagsterDev(
        code_root, home, _env(code_root, home, registry), folder / "dagster.log", BIN / "dagster"
    )
    results, load = [], None
    try:
        instance = DagsterInstance.from_config(str(home))
        server.wait_ready(instance)
        wait_quiet(instance)
        store = Store(str(folder / "lancedb"))
        load = Load()
        for i, step in enumerate(plan):
            time.sleep(step["pause"])
            t0, seconds = one_change(folder, store, embed, step, args.timeout)
            wait_quiet(instance)
            parts = breakdown(instance, SOURCE, t0, t0 + seconds) if seconds is not None else None
            results.append(
                {
                    **step,
                    "seconds": seconds and round(seconds, 2),
                    "breakdown": parts,
                    "runs": runs_since(instance, t0),
                }
            )
            print(
                f"[{name}] {i + 1}/{len(plan)} {step['kind']} {step['id']}: "
                f"{'timeout' if seconds is None else f'{seconds:.1f} s'}",
                flush=True,
            )
        idle = _idle_ticks(instance)
    finally:
        load_stats = load.stop() if load else None
        server.stop()
    return {"name": name, "changes": results, "load": load_stats, "idle_ticks": idle}


def _idle_ticks(instance) -> dict:
    """Mean seconds of ticks that requested nothing: what the daemon costs while nothing changes."""
    from _dagster_dev import AUTOMATION, SENSOR, ticks
    from dagster._core.scheduler.instigation import TickStatus

    out = {}
    for name in (SENSOR, AUTOMATION):
        done = [
            t
            for t in ticks(instance, name, limit=200)
            if t.status == TickStatus.SKIPPED and t.end_timestamp
        ]
        spans = sorted(t.timestamp for t in ticks(instance, name, limit=200))
        out[name] = {
            "seconds": round(statistics.mean(t.end_timestamp - t.timestamp for t in done), 3)
            if done
            else None,
            "every": round(statistics.median(b - a for a, b in zip(spans, spans[1:])), 1)
            if len(spans) > 2
            else None,
        }
    return out


def _embedder(model: dict):
    from embeddings_platform.core.config import parse_config
    from embeddings_platform.core.models import load_embedder

    config = parse_config({"sources": [], "models": [model]}, ROOT)
    embedder = load_embedder(config.models[0])
    return lambda text: embedder.embed([text])[0]


def _frozen_code(work: Path) -> Path:
    target = work / "current-src"
    for part in ("embeddings_platform", "deploy"):
        shutil.copytree(ROOT / part, target / part, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _baseline_code(work: Path, ref: str) -> Path:
    target = work / "baseline-src"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench_freshness_"))  # outside the repository
    commit = _commit()
    try:
        current = _frozen_code(work)  # the working tree as it is now, whatever is edited meanwhile
        if MODELS[args.model]["kind"] == "model2vec":  # distil once, outside every timing
            _embedder(MODELS[args.model])
        build, ids, build_seconds = _build(work, args)
        plan = plan_changes(ids, args.edits, args.deletes, args.seed)
        embed = _embedder(MODELS[args.model])
        variants = []
        if args.baseline_ref:
            variants.append(
                _variant(
                    f"baseline {args.baseline_ref}",
                    _baseline_code(work, args.baseline_ref),
                    work,
                    build,
                    plan,
                    embed,
                    args,
                )
            )
        variants.append(_variant("this change", current, work, build, plan, embed, args))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    command = " ".join([".venv/bin/python benchmarks/bench_freshness.py", *sys.argv[1:]])
    result = {
        "command": command,
        "machine": machine(),
        "cpu": _cpu_model(),
        "docs": len(ids),
        "model": args.model,
        "build_seconds": round(build_seconds, 1),
        "variants": variants,
        "commit": commit,
        "refresh": _refresh(args),
        "nproc": os.cpu_count(),
    }
    if args.docs is not None and args.docs < 1000:  # a smoke run: printed, not recorded
        (OUT / "freshness-smoke.json").write_text(json.dumps(result, indent=2, default=str))
        print(render(result))
    return result


def _commit() -> str:
    """The commit the working tree is at, `+changes` if it differs from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "embeddings_platform", "deploy"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


from _freshness_report import render  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument(
            "--docs", type=int, default=None, help="first N abstracts (default: all 5,183)"
        )
        parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
        parser.add_argument("--edits", type=int, default=12)
        parser.add_argument("--deletes", type=int, default=3)
        parser.add_argument("--seed", type=int, default=11)
        parser.add_argument(
            "--timeout", type=float, default=900, help="seconds before a change counts as lost"
        )
        parser.add_argument(
            "--baseline-ref", default=None, help="also measure this git revision's code"
        )
        parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
        parser.add_argument(
            "--sensor-interval",
            type=int,
            default=None,
            help="refresh.sensor_interval_seconds (default: the project's)",
        )
        parser.add_argument(
            "--automation-interval",
            type=int,
            default=None,
            help="refresh.automation_interval_seconds (default: the project's)",
        )

    import argparse

    smoke = lambda args: args.docs is not None and args.docs < 1000  # noqa: E731
    # intervals other than the defaults keep their own saved result and RESULTS.md section
    probe = argparse.ArgumentParser(add_help=False)
    arguments(probe)
    chosen = probe.parse_known_args(argv)[0]
    tail = "".join(
        f"-{kind}{value}"
        for kind, value in (("s", chosen.sensor_interval), ("a", chosen.automation_interval))
        if value
    )
    title = "Freshness: save to served under `dagster dev`"
    if tail:
        title += f", intervals sensor {chosen.sensor_interval or 'default'} s / automation "
        title += f"{chosen.automation_interval or 'default'} s"
    return bench_main(
        argv,
        __doc__,
        f"freshness{tail}",
        title,
        run,
        render,
        arguments,
        smoke=smoke,
        key=f"bench_freshness{tail}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
