"""The operator's first hour, end to end: `dagster dev` with its daemon (sensors running, short
intervals), a source registered by editing the YAML and nothing launched by hand.

Asserted in the browser where the UI shows it (the runs' labels, the checks of the served cell)
and through GraphQL and the instance where it does not (every tick of both sensors, how often
each check evaluated): the source serves without a manual launch, its runs are labelled as the
initial build, neither sensor has a failed tick, and each check runs once per change (the build,
then one edit). The schedules are stopped (a half-hourly re-check landing mid-test would be a
second evaluation no change caused). Helpers (the server, pages, retries, failure reports) come
from test_ui.py.

    .venv/bin/python -m pytest -m ui -k operator      # about 3 minutes
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from playwright.sync_api import expect

from embeddings_platform.core.store import Store
from embeddings_platform.defs.partitions import grid_key
from embeddings_platform.testing import DOCS, write_config, write_corpus

from ..core.test_checks import CANARY
from . import test_ui
from .test_ui import (
    ARTIFACTS,
    CHECKS,
    STOPPED,
    TERMINAL,
    Server,
    _page,
    _shown,
    _tail,
    dagster_dev,
)

shared_browser = test_ui.browser  # test_ui's module-scoped chromium, as a fixture of this module

pytestmark = pytest.mark.ui

NEW = "handbook"
FAST = {"sensor_interval_seconds": 5, "automation_interval_seconds": 5}
SENSORS = ["source_change_sensor", "embeddings_automation"]
SCHEDULES = [entry for entry in STOPPED if entry[0] == "schedule"]
SERVE_TIMEOUT = 300  # s: registered in the YAML -> served, on 2 shared cores
TRIGGER = "embeddings_platform/trigger"
AUTOMATION = "dagster/from_automation_condition"

RUNS = """
{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }
"""
TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 1000) { status error { message } } } }
  }
}
"""


def _wait(server: Server, what: str, ready, timeout: float = SERVE_TIMEOUT):
    """Poll `ready()` until it returns something truthy; a dead server or the timeout fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"dagster dev exited:\n{_tail(server.log)}"
        value = ready()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not after {timeout} s\n{_tail(server.log, 60)}")


def _runs(server: Server) -> list[dict]:
    runs = server.query(RUNS)["runsOrError"]["results"]
    return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in runs]


def _quiet(server: Server, seconds: float = 15) -> list[dict]:
    """Every run finished and none started for `seconds` (two ticks of each sensor)."""
    state = {"count": -1, "since": time.monotonic()}

    def settled():
        runs = _runs(server)
        busy = [r for r in runs if DagsterRunStatus(r["status"]) not in TERMINAL]
        if busy or len(runs) != state["count"]:
            state.update(count=len(runs), since=time.monotonic())
            return None
        return runs if time.monotonic() - state["since"] >= seconds else None

    return _wait(server, "the daemon to settle", settled)


def _ticks(server: Server, sensor: str) -> list[dict]:
    selector = {
        "repositoryLocationName": "embeddings_platform",
        "repositoryName": "__repository__",
        "sensorName": sensor,
    }
    answer = server.query(TICKS, {"selector": selector})["sensorOrError"]
    assert answer["__typename"] == "Sensor", answer
    return answer["sensorState"]["ticks"]


def _check_evaluations(home) -> Counter:
    """(asset:check, partition) -> evaluations, over every run the instance recorded."""
    counts: Counter = Counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        with DagsterInstance.get() as instance:
            for run in instance.get_runs():
                for event in instance.all_logs(run.run_id):
                    dagster_event = event.dagster_event
                    if dagster_event and dagster_event.event_type_value == "ASSET_CHECK_EVALUATION":
                        data = dagster_event.event_specific_data
                        key = f"{data.asset_key.to_user_string()}:{data.check_name}"
                        counts[(key, data.partition or "")] += 1
    return counts


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    root = tmp_path_factory.mktemp("operator")
    write_corpus(root / NEW, DOCS)
    canary = root / "handbook_queries.jsonl"
    canary.write_text("\n".join(json.dumps(c) for c in CANARY) + "\n")
    config_path = write_config(root / "platform.yaml", [], refresh=FAST)  # nothing registered
    with dagster_dev(root, config_path, stopped=SCHEDULES, register=False) as server:
        yield server, root, config_path, canary


def test_operator_registers_a_source_in_the_yaml_and_it_serves_labelled_and_checked_once(
    operator, shared_browser
):
    server, root, config_path, canary = operator
    home = root / "dagster_home"
    store = Store(server.config.storage_uri)
    cell = str(grid_key(NEW, server.version_id))
    # the daemon is up and ticking before the edit, as on an installation that already runs
    _wait(server, "the sensor's first tick", lambda: _ticks(server, SENSORS[0]), 120)

    source = {"name": NEW, "kind": "folder", "path": str(root / NEW), "canary": str(canary)}
    write_config(config_path, [source], refresh=FAST)
    _wait(server, f"{NEW} to serve", lambda: store.pointer(NEW))
    runs = _quiet(server)

    # served without a manual launch: every run came from a sensor, all succeeded
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    assert all("dagster/sensor_name" in r["tags"] for r in runs), runs
    # labelled as the initial build: the snapshot by its trigger, the grid build by the
    # automation that started it (or, had it missed it, the sensor's initial-build run)
    snapshot = [r for r in runs if r["tags"].get("dagster/partition") == NEW]
    assert [(r["jobName"], r["tags"].get(TRIGGER)) for r in snapshot] == [
        ("snapshot_job", "initial-build")
    ]
    grid = [r for r in runs if r["tags"].get("dagster/partition") == cell]
    assert len(grid) == 1, runs
    assert grid[0]["tags"].get(AUTOMATION) == "true" or grid[0]["tags"].get(TRIGGER) == (
        "initial-build"
    ), grid
    assert not [r for r in runs if r["tags"].get(TRIGGER) == "freshness-recheck"]
    assert len(runs) == 2  # nothing else ran: no re-check, no empty automation run

    # every check of the new source ran exactly once for its first build
    once = _check_evaluations(home)
    expected = {f"{asset}:{check}" for asset, checks in CHECKS.items() for check in checks}
    assert set(once) == {("source_snapshot:quarantine", NEW)} | {
        (check, cell) for check in expected
    }, once
    assert set(once.values()) == {1}, once

    # one edit: two runs, each check once more
    before = store.pointer(NEW)["table_version"]
    (root / NEW / "cats.md").write_text("Cats sleep sixteen hours a day and purr when content.")
    _wait(server, "the edit to serve", lambda: store.pointer(NEW)["table_version"] > before)
    after = _quiet(server)
    new = [r for r in after if r["runId"] not in {r["runId"] for r in runs}]
    assert sorted(r["tags"].get(TRIGGER) or r["tags"].get(AUTOMATION) for r in new) == [
        "content-change",
        "true",
    ], new
    assert set(_check_evaluations(home).values()) == {2}

    # no failed tick of either sensor, ever
    for sensor in SENSORS:
        ticks = _ticks(server, sensor)
        assert ticks and not [t for t in ticks if t["status"] == "FAILURE"], (sensor, ticks)
    # and nothing in the log of dagster dev and its runs a user would stop at
    log = server.log.read_text(errors="replace")
    for noise in ("Traceback", "Warning:", "superseded", "Loading weights"):
        assert noise not in log, f"{noise!r} in the dagster dev log:\n{_tail(server.log, 60)}"

    # what the operator sees in the browser: who launched each run, and its tags
    def run_shows(chips: list[str], shot: str):
        """The run succeeded and its tags dialog shows `chips` (Dagster shows a tag as
        `key: value`, its own tags without `dagster/`, the sensor's name with an icon)."""

        def step(page):
            expect(page.get_by_text("Success").first).to_be_visible()
            page.get_by_role("button", name="View tags and config").click()
            dialog = page.get_by_role("dialog")
            for chip in chips:
                expect(dialog.get_by_text(chip, exact=True).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / shot))
            page.keyboard.press("Escape")

        return step

    with _page(shared_browser, server, "operator-runs") as page:
        _shown(
            page,
            f"{server.url}/runs/{snapshot[0]['runId']}",
            run_shows(
                ["source_change_sensor", f"{TRIGGER}: initial-build", f"partition: {NEW}"],
                "operator-snapshot-run.png",
            ),
            "the snapshot run, labelled the initial build",
        )
        expect(page.get_by_text("Launched by source_change_sensor")).to_be_visible()
        _shown(
            page,
            f"{server.url}/runs/{grid[0]['runId']}",
            run_shows(["embeddings_automation", f"partition: {cell}"], "operator-grid-run.png"),
            "the grid run, launched by the automation",
        )

    def checks_passed(page):
        checks = CHECKS["serving_index"]
        expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(checks))

    with _page(shared_browser, server, "operator-checks") as page:
        _shown(
            page,
            f"{server.url}/assets/serving_index?view=checks",
            checks_passed,
            "the checks of the new source's serving index",
        )
        page.screenshot(path=str(ARTIFACTS / "operator-checks.png"))
