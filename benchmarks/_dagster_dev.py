"""`dagster dev` for benchmarks: start it in its own process group, wait for it, stop all of it.

Also reads what the benchmark needs from the instance: whether the daemon is quiet, and where
the time between a save and a served search went, from run records, event logs and ticks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SENSOR = "source_change_sensor"
AUTOMATION = "embeddings_automation"
ASSET_STEPS = {
    "source_snapshot": "snapshot + chunks",
    "chunks": "snapshot + chunks",
    "embeddings": "embeddings step",
    "serving_index": "indexing",
}
# Order of the breakdown table; an elementary interval goes to its highest-priority activity.
CATEGORIES = [
    "wait for sensor tick",
    "sensor tick",
    "wait for automation tick",
    "automation tick",
    "run queue",
    "run process start",
    "step process start",
    "snapshot + chunks",
    "model load",
    "embedding (model calls)",
    "embeddings step, rest",
    "indexing",
    "checks",
    "run overhead",
    "search sees it (poll)",
    "other",
]
PRIORITY = {
    "snapshot + chunks": 10,
    "embeddings step": 10,
    "indexing": 10,
    "search sees it (poll)": 9,
    "checks": 8,
    "step process start": 7,
    "run process start": 6,
    "run queue": 5,
    "sensor tick": 4,
    "automation tick": 4,
    "run overhead": 2,
    "wait for sensor tick": 1,
    "wait for automation tick": 1,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """`dagster dev` (webserver + daemon) on 127.0.0.1; stop() ends its whole process group."""

    def __init__(self, code_root: Path, home: Path, env: dict[str, str], log: Path, dagster: Path):
        self.port = free_port()
        self.home = home
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen(
            [
                str(dagster),
                "dev",
                "-m",
                "embeddings_platform.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            cwd=code_root,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: code server and run workers included
        )

    def wait_ready(self, instance, timeout: float = 600) -> None:
        """Webserver answers, and both sensors have ticked at least once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited:\n{self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/server_info", timeout=5
                ) as r:
                    json.load(r)
                if ticks(instance, SENSOR, limit=1) and ticks(instance, AUTOMATION, limit=1):
                    return
            except OSError:
                pass
            time.sleep(2)
        raise TimeoutError(f"dagster dev not ready after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        try:  # run workers that outlived dagster dev are still in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log_file.close()


def _state(instance, name: str):
    for state in instance.all_instigator_state():
        if state.instigator_name == name:
            return state
    return None


def ticks(instance, name: str, after: float | None = None, limit: int | None = None) -> list:
    state = _state(instance, name)
    if state is None:
        return []
    return list(
        instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after, limit=limit)
    )


def active_runs(instance) -> list:
    from dagster import DagsterRunStatus, RunsFilter

    busy = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    return list(instance.get_run_records(filters=RunsFilter(statuses=busy)))


def wait_quiet(instance, timeout: float = 900) -> None:
    """No run queued or running, and an automation tick after the last run requested nothing."""
    from dagster import RunsFilter  # noqa: F401 - imported for get_run_records filters
    from dagster._core.scheduler.instigation import TickStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not active_runs(instance):
            last = instance.get_run_records(limit=1)
            ended = (last[0].end_time or 0) if last else 0
            latest = ticks(instance, AUTOMATION, limit=1)
            if (
                latest
                and latest[0].timestamp > ended + 0.5
                and latest[0].status == TickStatus.SKIPPED
            ):
                return
        time.sleep(1)
    raise TimeoutError("the daemon did not become quiet")


@dataclass
class Segment:
    label: str
    start: float
    end: float


def _events(instance, run_id: str) -> list:
    return [e for e in instance.all_logs(run_id) if e.dagster_event is not None]


def _first(events, kinds: set[str]) -> float | None:
    return next((e.timestamp for e in events if e.dagster_event.event_type_value in kinds), None)


def _run_segments(instance, record, events) -> tuple[list[Segment], dict]:
    """Queue, process start, steps and overhead of one run, plus its embeddings metadata."""
    created = record.create_timestamp.timestamp()
    launched = _first(events, {"PIPELINE_DEQUEUED", "PIPELINE_STARTING"}) or created
    first_step = _first(events, {"STEP_WORKER_STARTING", "STEP_START"}) or launched
    end = record.end_time or _first(events, {"PIPELINE_SUCCESS", "PIPELINE_FAILURE"}) or first_step
    segments = [
        Segment("run queue", created, launched),
        Segment("run process start", launched, first_step),
        Segment("run overhead", first_step, end),
    ]
    meta: dict = {}
    starts: dict[str, float] = {}
    for e in events:
        kind, step = e.dagster_event.event_type_value, e.step_key
        if kind == "STEP_WORKER_STARTING":
            starts[f"worker:{step}"] = e.timestamp
        elif kind == "STEP_START":
            starts[step] = e.timestamp
            if f"worker:{step}" in starts:
                segments.append(
                    Segment("step process start", starts[f"worker:{step}"], e.timestamp)
                )
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in starts:
            segments.append(Segment(ASSET_STEPS.get(step, "checks"), starts[step], e.timestamp))
            if step == "serving_index":
                meta["served_step_end"] = e.timestamp
        elif kind == "ASSET_MATERIALIZATION" and step == "embeddings":
            values = e.dagster_event.event_specific_data.materialization.metadata
            for key in ("embed_seconds", "model_load_seconds", "embedded"):
                if key in values:
                    meta[key] = meta.get(key, 0) + float(values[key].value)
    return segments, meta


def _tick_for(instance, name: str, run_id: str, created: float):
    candidates = ticks(instance, name, after=created - 600)
    for tick in candidates:
        if run_id in (tick.run_ids or []):
            return tick
    before = [t for t in candidates if t.timestamp <= created]
    return max(before, key=lambda t: t.timestamp) if before else None


def chain_runs(instance, source: str, t0: float, t1: float) -> list:
    """Runs of `source`'s partitions created between save and served that ran an asset step."""
    from dagster import RunsFilter

    records = instance.get_run_records(
        filters=RunsFilter(created_after=_dt(t0 - 1)), ascending=True, order_by="create_timestamp"
    )
    chain = []
    for record in records:
        tags = record.dagster_run.tags
        if source not in (tags.get("dagster/partition"), tags.get("dagster/partition/source")):
            continue
        if record.create_timestamp.timestamp() > t1:
            continue
        events = _events(instance, record.dagster_run.run_id)
        if any(
            e.dagster_event.event_type_value == "STEP_START" and e.step_key in ASSET_STEPS
            for e in events
        ):
            chain.append((record, events))
    return chain


def _dt(ts: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc)


def breakdown(instance, source: str, t0: float, t1: float) -> dict:
    """Seconds of save -> served per activity, and the runs it took (with their trigger tags)."""
    segments: list[Segment] = []
    cursor = t0
    meta: dict = {}
    runs = []
    for record, events in chain_runs(instance, source, t0, t1):
        tags = record.dagster_run.tags
        by_sensor = tags.get("dagster/sensor_name") == SENSOR
        name, kind = (SENSOR, "sensor") if by_sensor else (AUTOMATION, "automation")
        created = record.create_timestamp.timestamp()
        tick = _tick_for(instance, name, record.dagster_run.run_id, created)
        tick_start = tick.timestamp if tick else created
        segments += [
            Segment(f"wait for {kind} tick", cursor, tick_start),
            Segment(f"{kind} tick", tick_start, created),
        ]
        run_segments, run_meta = _run_segments(instance, record, events)
        segments += run_segments
        for key, value in run_meta.items():
            meta[key] = value if key == "served_step_end" else meta.get(key, 0) + value
        cursor = record.end_time or created
        runs.append(
            {
                "job": record.dagster_run.job_name,
                "trigger": tags.get("embeddings_platform/trigger")
                or ("automation" if not by_sensor else ""),
                "partition": tags.get("dagster/partition"),
                "steps": sorted({e.step_key for e in events if e.step_key}),
            }
        )
    if "served_step_end" in meta:
        segments.append(Segment("search sees it (poll)", meta["served_step_end"], t1))
    totals = _attribute(segments, t0, t1)
    steps = totals.pop("embeddings step", 0.0)
    load = min(meta.get("model_load_seconds", 0.0), steps)
    calls = min(meta.get("embed_seconds", 0.0), steps - load)
    totals.update(
        {
            "model load": load,
            "embedding (model calls)": calls,
            "embeddings step, rest": steps - load - calls,
        }
    )
    return {
        "seconds": {c: round(totals.get(c, 0.0), 2) for c in CATEGORIES},
        "runs": runs,
        "embedded": int(meta.get("embedded", 0)),
        "model_load_known": "model_load_seconds" in meta,
    }


def _attribute(segments: list[Segment], t0: float, t1: float) -> dict[str, float]:
    """Split [t0, t1] into elementary intervals, each for its highest-priority active segment."""
    points = sorted({t0, t1, *(min(max(p, t0), t1) for s in segments for p in (s.start, s.end))})
    totals: dict[str, float] = {}
    for a, b in zip(points, points[1:]):
        active = [s for s in segments if s.start <= a and s.end >= b and s.end > s.start]
        label = max(active, key=lambda s: PRIORITY.get(s.label, 0)).label if active else "other"
        totals[label] = totals.get(label, 0.0) + (b - a)
    return totals


def runs_since(instance, t0: float) -> list[dict]:
    """Every run created since the save, on the path to serving or not (check runs after it)."""
    from dagster import RunsFilter

    records = instance.get_run_records(
        filters=RunsFilter(created_after=_dt(t0 - 1)), order_by="create_timestamp", ascending=True
    )
    return [
        {
            "job": r.dagster_run.job_name,
            "trigger": r.dagster_run.tags.get("embeddings_platform/trigger") or "automation",
        }
        for r in records
    ]
