"""SciFact refresh cost on the path users run: `dagster dev`, its daemon, a process per run.

    .venv/bin/python benchmarks/bench_refresh.py                 # about 20 minutes on 2 cores
    .venv/bin/python benchmarks/bench_refresh.py --limit 300 --model static   # smoke, not a result

Users' path: `dagster dev` (webserver + daemon) with a temporary DAGSTER_HOME holding
deploy/dagster.local.yaml, the project's default intervals, the project's default executor
(each run its own process: imports the code location and loads the model itself; nothing is
pre-loaded). Over a `beir` copy of SciFact (read at run time from ../shared/data/scifact):
1. full build: the sensor registers the source on its first tick and everything else follows;
   timed from the first run's creation to the last run's end (daemon quiet);
2. idle: the mean cost of sensor and automation ticks that requested nothing;
3. 1% of documents changed, 3 times (different documents each time): from the save to the
   daemon quiet again, and the runs' own span (first run created -> last run ended);
then, on the same store, the warm in-process figure beside it: the same 1% changes carried by
the same sensor and automation conditions in one process with the model already loaded.
Every share is against the users'-path full build of this run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _dagster_dev import DagsterDev, active_runs, runs_since, wait_quiet  # noqa: E402
from _freshness_changes import Load  # noqa: E402
from _results import (  # noqa: E402
    BENCH_MODELS,
    OUT,
    ROOT,
    bench_main,
    change_documents,
    copy_scifact,
    machine,
    timed,
)

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import yaml  # noqa: E402

WORK = OUT / "refresh"
SOURCE = "scifact"
BIN = Path(sys.executable).parent
REPEATS = 3


def _registry(model: dict) -> Path:
    path = WORK / "platform.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"uri": str(WORK / "lancedb")},
                "sources": [{"name": SOURCE, "kind": "beir", "path": str(WORK / "corpus")}],
                "models": [model],
            }
        )
    )
    return path


def _runs_span(instance, t0: float) -> tuple[float, int, int]:
    """(first run created -> last run ended, runs, texts embedded) for runs created after t0."""
    from _dagster_dev import _dt
    from dagster import AssetKey, RunsFilter

    records = instance.get_run_records(filters=RunsFilter(created_after=_dt(t0 - 1)))
    if not records:
        return 0.0, 0, 0
    first = min(r.create_timestamp.timestamp() for r in records)
    last = max(r.end_time or 0 for r in records)
    embedded = 0
    for r in records:
        for event in instance.all_logs(r.dagster_run.run_id):
            m = event.asset_materialization
            if m is not None and m.asset_key == AssetKey("embeddings"):
                embedded += int(m.metadata.get("embedded").value if "embedded" in m.metadata else 0)
    return last - first, len(records), embedded


def _idle(instance, since: float) -> dict:
    from _dagster_dev import AUTOMATION, SENSOR, ticks
    from dagster._core.scheduler.instigation import TickStatus

    out = {}
    for name in (SENSOR, AUTOMATION):
        done = [
            t.end_timestamp - t.timestamp
            for t in ticks(instance, name, after=since, limit=200)
            if t.status == TickStatus.SKIPPED and t.end_timestamp
        ]
        out[name] = round(statistics.mean(done), 3) if done else None
    return out


def _users_path(model: dict, changes: list[float], idle_seconds: float) -> dict:
    from dagster import DagsterInstance

    from embeddings_platform.core.store import Store

    home = WORK / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    registry = _registry(model)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGSTER_HOME": str(home),
        "EMBEDDINGS_PLATFORM_CONFIG": str(registry),
    }
    load = Load()
    started = time.time()
    server = DagsterDev(ROOT, home, env, WORK / "dagster.log", BIN / "dagster")
    try:
        instance = DagsterInstance.from_config(str(home))
        server.wait_ready(instance)
        store = Store(str(WORK / "lancedb"))
        while store.pointer(SOURCE) is None:  # the build has not even started before a tick
            if time.time() - started > 7200:
                raise TimeoutError(f"not served after 2 h:\n{server.tail()}")
            time.sleep(5)
        wait_quiet(instance, timeout=3600)
        full_span, full_runs, full_embedded = _runs_span(instance, started)
        full_wall = time.time() - started
        quiet_at = time.time()
        time.sleep(idle_seconds)  # the daemon ticks on, with nothing to do
        idle = _idle(instance, quiet_at)
        out = []
        for seed in changes:
            docs = change_documents(WORK / "corpus", 0.01, seed=int(seed))
            t0 = time.time()
            while not active_runs(instance) and time.time() - t0 < 120:
                time.sleep(0.5)
            wait_quiet(instance, timeout=1800)
            span, runs, embedded = _runs_span(instance, t0)
            out.append(
                {
                    "documents": len(docs),
                    "save_to_quiet": time.time() - t0,
                    "runs_span": span,
                    "runs": runs,
                    "jobs": runs_since(instance, t0),
                    "texts_embedded": embedded,
                }
            )
            print(f"users' path change {seed}: {out[-1]['save_to_quiet']:.1f} s", flush=True)
    finally:
        server.stop()
        load_stats = load.stop()
    return {
        "full_span": full_span,
        "full_wall_from_dagster_dev_start": full_wall,
        "full_runs": full_runs,
        "full_embedded": full_embedded,
        "idle_tick_seconds": idle,
        "changes": out,
        "load": load_stats,
    }


def _warm_in_process(model_name: str, seeds: list[int]) -> dict:
    """The same kind of change carried in one process, model loaded before the clock starts, on
    the users'-path instance (its history and the sensor's cursor) after `dagster dev` stopped."""
    from _dagster_dev import SENSOR, ticks
    from dagster import DagsterInstance, build_sensor_context

    from embeddings_platform.core.config import load_config
    from embeddings_platform.defs.resources import PlatformResource, cached_embedder
    from embeddings_platform.defs.runner import run_automation_until_quiet, run_sensor_requests
    from embeddings_platform.defs.sensors import source_change_sensor

    registry = WORK / "platform.yaml"
    os.environ["EMBEDDINGS_PLATFORM_CONFIG"] = str(registry)
    config = load_config(registry)
    embedder = cached_embedder(config.model(model_name))
    instance = DagsterInstance.from_config(str(WORK / "home"))
    resources = {"platform": PlatformResource()}
    sensor_cursor = next((t.cursor for t in ticks(instance, SENSOR, limit=20) if t.cursor), None)
    _, automation_cursor = run_automation_until_quiet(instance, resources)  # steady state
    out = []
    for seed in seeds:
        change_documents(WORK / "corpus", 0.01, seed=seed)
        before = embedder.texts_embedded

        def tick():
            context = build_sensor_context(
                instance=instance, resources=resources, cursor=sensor_cursor
            )
            result = source_change_sensor(context)
            run_sensor_requests(instance, result, resources)
            return context.cursor, run_automation_until_quiet(
                instance, resources, automation_cursor
            )

        (sensor_cursor, (_, automation_cursor)), seconds = timed(tick)
        out.append({"seconds": seconds, "texts_embedded": embedder.texts_embedded - before})
    return {"changes": out}


def run(args) -> dict:
    if WORK.exists():
        shutil.rmtree(WORK)
    copy_scifact(WORK, args.limit)
    model = BENCH_MODELS[args.model]
    seeds = [101 + i for i in range(REPEATS)]
    users = _users_path(model, seeds, args.idle_seconds)
    warm = _warm_in_process(model["name"], [201 + i for i in range(REPEATS)])
    return {
        "command": ".venv/bin/python benchmarks/bench_refresh.py",
        "machine": machine(),
        "model": model["name"],
        "documents": sum(1 for _ in open(WORK / "corpus" / "corpus.jsonl")),
        "users_path": users,
        "warm_in_process": warm,
    }


def _stats(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f}"


def render(r: dict) -> str:
    u, w = r["users_path"], r["warm_in_process"]
    full = u["full_span"]
    quiet = [c["save_to_quiet"] for c in u["changes"]]
    span = [c["runs_span"] for c in u["changes"]]
    warm = [c["seconds"] for c in w["changes"]]
    idle = u["idle_tick_seconds"]
    idle_total = sum(v for v in idle.values() if v)
    share = lambda xs: f"{min(xs) / full:.2%} / {statistics.median(xs) / full:.2%}"  # noqa: E731
    texts = ", ".join(str(c["texts_embedded"]) for c in u["changes"])
    warm_texts = ", ".join(str(c["texts_embedded"]) for c in w["changes"])
    jobs = "; ".join(f"{j['job']} ({j['trigger']})" for j in u["changes"][0]["jobs"])
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}; load average during the \
`dagster dev` part {u["load"]["mean"]} (max {u["load"]["max"]}). Data: BEIR SciFact \
({r["documents"]:,} documents) as a `beir` source, model `{r["model"]}`.

**Users' path**: `dagster dev` with the daemon at the default intervals, \
deploy/dagster.local.yaml, the project's default executor (each run its own process, which \
imports the code location and \
loads the model; nothing pre-loaded). **Warm in-process** (beside it, for comparison only): the \
same sensor and automation conditions run in the benchmark's own process with the model already \
loaded, on the same store. Shares are of the users'-path full build of this run: \
{full:.1f} s from the first run's creation to the last run's end ({u["full_runs"]} runs, \
{u["full_embedded"]:,} texts embedded; {u["full_wall_from_dagster_dev_start"]:.1f} s from \
starting `dagster dev`). {len(quiet)} changes each; min / median.

| refresh | path | texts embedded | seconds (min / median) | share of full (min / median) |
| --- | --- | ---: | ---: | ---: |
| nothing changed: one sensor tick + one automation tick | users' | 0 | {idle_total:.2f} \
(sensor {idle["source_change_sensor"]}, automation {idle["embeddings_automation"]}; mean of \
idle ticks) | {idle_total / full:.2%} |
| 1% of documents changed: save -> daemon quiet (tick waits included) | users' | {texts} | \
{_stats(quiet)} | {share(quiet)} |
| 1% of documents changed: the runs only (first created -> last ended) | users' | {texts} | \
{_stats(span)} | {share(span)} |
| 1% of documents changed: sensor -> runs -> automation until quiet | warm in-process | \
{warm_texts} | {_stats(warm)} | {share(warm)} |

Runs a 1% change took on the users' path: {jobs}.
"""


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--model", default="minilm", choices=sorted(BENCH_MODELS))
        parser.add_argument("--limit", type=int, help="first N documents (smoke, not a result)")
        parser.add_argument("--idle-seconds", type=float, default=60.0)

    return bench_main(
        argv,
        __doc__,
        "refresh",
        "SciFact refresh cost on the users' path (dagster dev, a process per run), warm beside it",
        run,
        render,
        arguments,
        smoke=lambda args: args.limit,
    )


if __name__ == "__main__":
    raise SystemExit(main())
