"""The Dagster UI end to end: `dagster dev`, its GraphQL API, and Debian's chromium via Playwright.

One `dagster dev` (webserver + daemon) per module, on a free port of 127.0.0.1, over a tiny
`folder` source and the deterministic `hashing` model, with its own DAGSTER_HOME and LanceDB
folder in a temporary directory. The sensors and schedules that run by default are stopped
before the server starts, so the only runs are the ones these tests launch (otherwise
`source_change_sensor` snapshots the new source on its first tick, `embeddings_automation`
carries it through the grid and `served_staleness_schedule` re-checks it every half hour,
racing with the tests' own runs and their counts).

A page whose load timed out, or lost a GraphQL request on the way, is loaded again and the
step retried; a failed expectation (an AssertionError) never is, so an intermittent wrong
value fails the test instead of hiding behind a retry. When a step fails, the error names what
the browser saw go wrong (failed or erroring GraphQL operations, console errors, requests
still pending) and the end of the `dagster dev` log, instead of Playwright's page dump.

Screenshots land in embeddings_platform_tests/artifacts/ (not committed); the operator guide's
images in docs/img/ are copies of good ones:
`cp embeddings_platform_tests/artifacts/*.png docs/img/`.
Needs /usr/bin/chromium (Debian's `chromium` package; .ci/run installs it). Nothing is downloaded:
Playwright drives the system browser, `playwright install` is never run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import model_version
from embeddings_platform.core.store import Store, chunks_table_name
from embeddings_platform.defs.common import partition_tags
from embeddings_platform.defs.partitions import grid_key, sync_partitions
from embeddings_platform.testing import DOCS, write_config, write_corpus

from ..core.test_checks import CANARY

pytestmark = pytest.mark.ui

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SOURCE = "notes"
STOPPED = [
    ("sensor", "source_change_sensor"),
    ("sensor", "embeddings_automation"),
    ("sensor", "gate_rerun_sensor"),
    ("schedule", "served_staleness_schedule"),
    ("schedule", "consistency_sweep_schedule"),
    ("schedule", "retention_cleanup_schedule"),
]
SERVER_TIMEOUT = 120  # s: webserver answering and the code location loaded
RUN_TIMEOUT = 300  # s: one run, queued by the daemon, in its own process
UI_TIMEOUT = 40_000  # ms: any single UI step
UI_ATTEMPTS = 3  # page loads before a step that timed out or lost its data counts as failed
ASSETS = ["source_snapshot", "chunks", "embeddings", "serving_index"]
CHECKS = {
    "embeddings": ["consistency", "staleness"],
    "serving_index": [
        "ann_recall",
        "migration_gate",
        "retrieval_recall",
        "served_consistency",
        "served_staleness",
    ],
}
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

RUN_MATERIALIZATIONS = """
query RunMaterializations($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      assetMaterializations {
        assetKey { path }
        partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
  }
}
"""

RUNS_OF_PARTITION = """
query RunsOfPartition($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status } }
  }
}
"""

LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Server:
    """A running `dagster dev` and what the tests need to know about it."""

    def __init__(self, port: int, proc: subprocess.Popen, log: Path, config_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log = log
        self.config = load_config(config_path)
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        self.version_id = model_version(self.config.models[0]).version_id
        self.grid_partition = str(grid_key(SOURCE, self.version_id))

    def query(self, text: str, variables: dict | None = None) -> dict:
        return self.client._execute(text, variables or {})

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> DagsterRunStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get_run_status(run_id)
            if status in TERMINAL:
                return status
            assert self.proc.poll() is None, f"dagster dev exited:\n{_tail(self.log)}"
            time.sleep(1)
        raise TimeoutError(f"run {run_id} not finished after {timeout} s:\n{_tail(self.log)}")

    def materializations(self, run_id: str) -> dict[str, dict[str, object]]:
        """{asset name: {metadata label: value}} of every materialization of a run."""
        run = self.query(RUN_MATERIALIZATIONS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        out: dict[str, dict[str, object]] = {}
        for event in run["assetMaterializations"]:
            values = {}
            for entry in event["metadataEntries"]:
                for field in ("intValue", "text", "boolValue"):
                    if field in entry:
                        values[entry["label"]] = entry[field]
            out["/".join(event["assetKey"]["path"])] = {"partition": event["partition"], **values}
        return out


def _stop_default_automation(env: dict[str, str], stopped=STOPPED) -> None:
    """Record the running-by-default sensors and schedules as stopped (the CLI writes it;
    no daemon needed)."""
    procs = [
        subprocess.Popen(
            [str(BIN / "dagster"), kind, "stop", name, "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for kind, name in stopped
    ]
    for (kind, name), proc in zip(stopped, procs):
        out, _ = proc.communicate(timeout=SERVER_TIMEOUT)
        assert proc.returncode == 0 and f"Stopped {kind} {name}" in out, out[-3000:]


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"dagster dev exited:\n{_tail(server.log)}"
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5) as response:
                json.load(response)
            entries = server.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except Exception:  # noqa: BLE001 - not listening yet, or still loading the code location
            pass
        time.sleep(1)
    raise TimeoutError(f"dagster dev not ready after {SERVER_TIMEOUT} s:\n{_tail(server.log)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # dagster dev stops webserver, daemon and code servers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def dev_warning_filter() -> str:
    """The warning filter `make ui` runs `dagster dev` with (Makefile DEV_WARNING)."""
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^DEV_WARNING := (.+)$", makefile, re.MULTILINE).group(1).strip()


@contextmanager
def dagster_dev(root: Path, config_path: Path, stopped=STOPPED, register: bool = True):
    """`dagster dev` (webserver + daemon) over `config_path` with its own DAGSTER_HOME under
    `root`, as `make ui` starts it; `stopped` sensors and schedules are stopped first, and with
    `register` the registry's partitions are added before (a stopped sensor would not)."""
    home = root / "dagster_home"
    home.mkdir()
    # the project's instance settings, without the "join the community" dialog: it pops up over
    # the page whenever its query returns, and in CI it once came up mid-click
    instance_yaml = (ROOT / "deploy" / "dagster.local.yaml").read_text()
    (home / "dagster.yaml").write_text(instance_yaml + "nux:\n  enabled: false\n")

    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "EMBEDDINGS_PLATFORM_STORAGE_URI",
            "EMBEDDINGS_PLATFORM_CELERY_BROKER",
            "EMBEDDINGS_PLATFORM_CELERY_BACKEND",
        }
    }
    env.update(
        DAGSTER_HOME=str(home),
        EMBEDDINGS_PLATFORM_CONFIG=str(config_path),
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS=dev_warning_filter(),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    # the instance's storage is created here, once: the `dagster ... stop` commands below run
    # in parallel and would race to create it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        with DagsterInstance.get() as instance:
            if register:
                sync_partitions(instance, load_config(config_path))
    _stop_default_automation(env, stopped)

    port = _free_port()
    log = root / "dagster-dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        srv = Server(port, proc, log, config_path)
        _wait_until_ready(srv)
        yield srv
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    write_corpus(root / "corpus", DOCS)
    canary = root / "canary.jsonl"  # labelled queries: retrieval_recall has something to score
    canary.write_text("\n".join(json.dumps(c) for c in CANARY) + "\n")
    source = {"name": SOURCE, "kind": "folder", "path": str(root / "corpus"), "canary": str(canary)}
    config_path = write_config(root / "platform.yaml", [source])
    with dagster_dev(root, config_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def snapshot_run(server: Server) -> str:
    """source_snapshot + chunks of the source, launched through the GraphQL client."""
    run_id = server.client.submit_job_execution(
        "recheck_source_job", tags={"dagster/partition": SOURCE}
    )
    status = server.wait_for_run(run_id)
    assert status == DagsterRunStatus.SUCCESS, f"run {run_id}: {status}\n{_tail(server.log)}"
    return run_id


@pytest.fixture(scope="module")
def serving_run(server: Server, snapshot_run: str) -> str:
    """embeddings + serving_index of the grid cell with all their checks: `embed_job`
    via GraphQL."""
    run_id = server.client.submit_job_execution(
        "embed_job", tags=partition_tags(server.grid_partition)
    )
    status = server.wait_for_run(run_id)
    assert status == DagsterRunStatus.SUCCESS, f"run {run_id}: {status}\n{_tail(server.log)}"
    return run_id


def test_graphql_run_of_snapshot_and_chunks_reports_the_corpus(server: Server, snapshot_run: str):
    found = server.materializations(snapshot_run)
    assert set(found) == {"source_snapshot", "chunks"}
    snapshot, chunks = found["source_snapshot"], found["chunks"]
    assert snapshot["partition"] == chunks["partition"] == SOURCE

    # every file of the folder is a document, all new, none quarantined
    assert snapshot["documents"] == snapshot["added"] == len(DOCS)
    assert (
        snapshot["changed"]
        == snapshot["removed"]
        == snapshot["unchanged"]
        == snapshot["quarantined"]
        == 0
    )
    assert snapshot["new_snapshot"] is True

    # and the store agrees with what the UI is told
    store = Store(server.config.storage_uri)
    assert (
        store.latest_snapshot(SOURCE)["snapshot_id"]
        == snapshot["snapshot_id"]
        == chunks["snapshot_id"]
    )
    assert len(store.snapshot_manifest(SOURCE, snapshot["snapshot_id"])) == len(DOCS)
    strategy = model_version(server.config.models[0]).chunking_strategy
    rows = store.table(chunks_table_name(SOURCE, strategy)).count_rows()
    assert chunks["documents_chunked"] == len(DOCS)
    assert chunks["chunks_written"] == chunks["total_chunks"] == rows >= len(DOCS)
    assert chunks["chunks_deleted"] == 0


# --- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    )
    expect.set_options(timeout=UI_TIMEOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class DataNotLoaded(Exception):
    """A GraphQL request of the page failed (network or server): its data never arrived."""


class BrowserLog:
    """What the browser saw go wrong on a page: the words a failed UI step is reported with."""

    def __init__(self, page):
        self.events: list[str] = []
        self.graphql_failures = 0  # requests that failed or were answered with HTTP >= 500
        self.pending: dict[object, tuple[str, float]] = {}
        self.graphql: deque[tuple[str, object]] = deque(maxlen=200)  # the latest answers
        page.on(
            "console",
            lambda m: (
                m.type == "error" and self.events.append(f"console error: {_first_line(m.text)}")
            ),
        )
        page.on("request", self._sent)
        page.on("requestfinished", lambda r: self.pending.pop(r, None))
        page.on("requestfailed", self._failed)
        page.on("response", self._answered)

    @staticmethod
    def _operation(request) -> str:
        try:
            return (request.post_data_json or {}).get("operationName") or request.url
        except Exception:  # noqa: BLE001 - not JSON: name it by its address
            return request.url

    def _sent(self, request) -> None:
        if "/graphql" in request.url:
            self.pending[request] = (self._operation(request), time.monotonic())

    def _failed(self, request) -> None:
        self.pending.pop(request, None)
        self.graphql_failures += "/graphql" in request.url
        self.events.append(f"request failed: {self._operation(request)} ({request.failure})")

    def _answered(self, response) -> None:
        if "/graphql" in response.url:
            self.graphql.append((self._operation(response.request), response))
            self.graphql_failures += response.status >= 500
        if response.status >= 400:
            self.events.append(f"HTTP {response.status}: {self._operation(response.request)}")

    def note(self, text: str) -> None:
        self.events.append(text)

    def report(self) -> list[str]:
        lines = list(self.events)
        for operation, response in self.graphql:
            try:
                errors = json.loads(response.text()).get("errors")
            except Exception:  # noqa: BLE001 - body gone or not JSON: nothing to add
                continue
            if errors:
                lines.append(f"GraphQL {operation} answered errors: {json.dumps(errors)[:500]}")
        now = time.monotonic()
        lines += [
            f"GraphQL {operation} still pending after {now - sent:.0f} s"
            for operation, sent in self.pending.values()
        ]
        return lines or ["(the browser saw no failed request, GraphQL error or console error)"]


def _first_line(text: str, width: int = 300) -> str:
    return text.strip().splitlines()[0][:width] if text.strip() else ""


def _log_excerpt(path: Path) -> str:
    """The errors a `dagster dev` log reports, then its last lines (colour codes removed)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in _tail(path, 100_000).splitlines()]
    errors = [line for line in lines if re.search(r" - ERROR - |Traceback|Exception", line)]
    return "\n".join([*errors[-10:], "...", *(_first_line(line, 400) for line in lines[-10:])])


def _short(error: BaseException) -> str:
    """Where a step failed and Playwright's first lines about it, without its page dump."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == __file__]
    where = f"test_ui.py:{frames[-1].lineno}: {frames[-1].line}" if frames else ""
    message = str(error).split("Aria snapshot:")[0].strip().splitlines()
    return "\n".join([where, *message[:12]])


@contextmanager
def _page(browser, server: Server, name: str, **context_options):
    """A fresh page; a failed step leaves `failed-<name>.png` in the artifacts and
    says what went wrong."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, **context_options)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    page.log = BrowserLog(page)
    try:
        yield page
    except (AssertionError, PlaywrightError, DataNotLoaded) as error:
        try:
            page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"))
        except Exception:  # noqa: BLE001 - the original failure matters, not the screenshot
            pass
        raise AssertionError(
            "\n".join(
                [
                    f"UI step failed on page {page.url}",
                    _short(error),
                    "-- what the browser saw:",
                    *page.log.report(),
                    "-- the dagster dev log (errors, then its end):",
                    _log_excerpt(server.log),
                ]
            )
        ) from None
    finally:
        context.close()


def _open(page, url: str) -> None:
    """Load `url` until the network is idle; DataNotLoaded if a GraphQL request failed meanwhile."""
    failures = page.log.graphql_failures
    page.goto(url, wait_until="networkidle", timeout=UI_TIMEOUT)
    if page.log.graphql_failures > failures:
        lost = page.log.graphql_failures - failures
        raise DataNotLoaded(f"{lost} GraphQL request(s) failed while loading {url}")


# A timeout or a lost request says nothing about the product: load again. An AssertionError
# (an `expect` that failed, a wrong value) is a finding and is never retried.
RETRIED = (PlaywrightTimeoutError, DataNotLoaded)


def _shown(page, url: str, step, what: str):
    """Open `url` and run `step(page)`; a load or step that timed out or lost data is retried."""
    for attempt in range(1, UI_ATTEMPTS + 1):
        try:
            _open(page, url)
            return step(page)
        except RETRIED as error:
            if attempt == UI_ATTEMPTS:
                raise
            page.log.note(
                f"attempt {attempt} of '{what}' failed, reloading: {_short(error).splitlines()[-1]}"
            )


def _pick_partition(page, dialog, dimension: str, key: str) -> None:
    """In the launch dialog, choose `key` in the selector of one partition dimension."""
    section = (
        dialog.locator("div")
        .filter(has=page.get_by_text(dimension, exact=True))
        .filter(has=page.get_by_text("Add a partition"))
        .last
    )  # the innermost: one dimension
    section.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=key).click()
    page.keyboard.press("Escape")
    expect(section.get_by_text(key, exact=True).first).to_be_visible()


def _launch_dialog_for_one_cell(server: Server):
    """The step up to the launch button: open the dialog, choose the one (model, source) cell."""

    def step(page):
        button = page.get_by_role("button", name="Materialize…").first
        expect(button.get_by_role("progressbar")).to_have_count(0)  # not busy with an earlier click
        button.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Launch runs to materialize embeddings")).to_be_visible()
        _pick_partition(page, dialog, "model", server.version_id)
        _pick_partition(page, dialog, "source", SOURCE)
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        return dialog

    return step


def test_materializing_a_partition_from_the_ui_shows_its_metadata(
    server: Server, snapshot_run: str, browser
):
    chunks = server.materializations(snapshot_run)["chunks"]
    with _page(browser, server, "materialize") as page:
        dialog = _shown(
            page,
            f"{server.url}/assets/embeddings",
            _launch_dialog_for_one_cell(server),
            "open the launch dialog",
        )
        page.screenshot(path=str(ARTIFACTS / "materialize-dialog.png"))
        dialog.get_by_role("button", name="Launch 1 run").click()

        toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
        expect(toast).to_be_visible()
        prefix = re.search(r"Launched run ([0-9a-f]{8})", toast.inner_text()).group(1)
        runs = server.query(RUNS_OF_PARTITION, {"partition": server.grid_partition})["runsOrError"][
            "results"
        ]
        run_ids = [r["runId"] for r in runs if r["runId"].startswith(prefix)]
        assert len(run_ids) == 1, (prefix, runs)
        status = server.wait_for_run(run_ids[0])
        assert status == DagsterRunStatus.SUCCESS, (
            f"run {run_ids[0]}: {status}\n{_tail(server.log)}"
        )

        embedded = server.materializations(run_ids[0])["embeddings"]
        assert embedded["partition"] == server.grid_partition
        assert embedded["embedded"] == embedded["vectors"] == chunks["total_chunks"]
        assert embedded["skipped"] == embedded["deleted"] == embedded["dead_lettered"] == 0

        # the asset page shows that materialization's metadata
        def metadata_shown(page):
            expect(page.get_by_text(server.grid_partition).first).to_be_visible()
            for label, value in [
                ("embedded", embedded["embedded"]),
                ("vectors", embedded["vectors"]),
                ("model_version", server.version_id),
            ]:
                row = page.get_by_role("row").filter(has=page.get_by_text(label, exact=True)).first
                expect(row.get_by_role("cell").last).to_have_text(str(value))

        _shown(
            page,
            f"{server.url}/assets/embeddings",
            metadata_shown,
            "the materialization's metadata",
        )
        page.screenshot(path=str(ARTIFACTS / "asset-embeddings.png"))


def test_lineage_graph_shows_every_asset_and_its_checks(server: Server, serving_run: str, browser):
    served = server.materializations(serving_run)
    assert set(served) == {"embeddings", "serving_index"}
    assert served["serving_index"]["pointer_moved"] is True  # the only model version serves

    def graph_shown(page):
        expect(page.get_by_text("Global asset lineage")).to_be_visible()
        nodes = page.locator("foreignObject")  # the graph's nodes (the sidebar lists the names too)
        for asset in ASSETS:
            expect(nodes.get_by_text(asset, exact=True)).to_be_visible()
        expect(nodes).to_have_count(len(ASSETS))
        # each node's live data (latest event, checks, partitions) arrives after the graph itself
        expect(nodes.get_by_text("100% filled")).to_have_count(len(ASSETS))
        expect(nodes.get_by_text("Loading…")).to_have_count(0)
        return nodes

    # twice the pixels: the graph is cropped to its nodes for the operator guide
    with _page(browser, server, "lineage", device_scale_factor=2) as page:
        nodes = _shown(page, f"{server.url}/asset-groups", graph_shown, "the lineage graph")
        boxes = [node.bounding_box() for node in nodes.all()]
        left, top = min(b["x"] for b in boxes) - 24, min(b["y"] for b in boxes) - 24
        right = max(b["x"] + b["width"] for b in boxes) + 24
        bottom = max(b["y"] + b["height"] for b in boxes) + 24
        clip = {"x": max(left, 0), "y": max(top, 0), "width": right - left, "height": bottom - top}
        page.screenshot(path=str(ARTIFACTS / "lineage.png"), clip=clip)

    def checks_shown(checks):
        def step(page):
            expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
            for check in checks:
                expect(page.get_by_text(check, exact=True).first).to_be_visible()
            # every check of the cell ran in serving_run and passed
            expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(checks))
            expect(page.get_by_text("Not evaluated", exact=False)).to_have_count(0)

        return step

    with _page(browser, server, "checks") as page:
        for asset, checks in CHECKS.items():
            _shown(
                page,
                f"{server.url}/assets/{asset}?view=checks",
                checks_shown(checks),
                f"the checks of {asset}",
            )
            page.screenshot(path=str(ARTIFACTS / f"checks-{asset}.png"))
