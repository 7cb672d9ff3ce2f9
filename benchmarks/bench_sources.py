"""Change detection that costs what changed: sensor ticks and snapshots of large sources (issue 17).

    nice -n 10 .venv/bin/python benchmarks/bench_sources.py          # 1,000,000 documents and a
                                                                     # 100,000-row table: ~40 min
    .venv/bin/python benchmarks/bench_sources.py --documents 20000 --rows 5000   # smoke: not saved
    nice -n 10 .venv/bin/python benchmarks/bench_sources.py --only postgres   # one source: its
                                              # rows replace its own in RESULTS.md, the rest stay

Four sources of short synthetic documents, generated under benchmarks/out/sources/ (gitignored):
a Parquet folder of 100 files, a folder of one file per document (subfolders of 1,000), an
Iceberg table of 100 data files (pyiceberg's SQL catalog on SQLite) and a PostgreSQL table (a
throwaway server on 127.0.0.1, Debian's postgresql package). For each:

- the full re-read, the baseline: what the sensor did on every tick before change detection by
  entry (read and hash every document: `source_fingerprint` without the store);
- a sensor tick on the unchanged source: the kind's `signature()` (what the sensor compares),
  and the real `source_change_sensor` evaluated with `build_sensor_context` (steady state: its
  cursor knows the listing and the grid, materialized once as in a deployment; also its first
  tick, cursor empty, after a restart);
- after 1% of the documents change (one Parquet file rewritten; every 100th file of the folder
  edited; the rows of one Iceberg data file overwritten; every 100th row of the table updated):
  the snapshot step (`take_snapshot`, what a snapshot run does) against a full snapshot of the
  same change (`full=True`, the previous behaviour), each on its own copy of the store, both
  checked to give the same snapshot id. The folder is watched by this process as by the
  sensor's, so the step uses the watcher's journal; the benchmark waits until the watcher has
  seen the edits (a tick comes every 30 s) and counts the walks the step made.

Each figure is the min and median of --runs runs (default 3).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import OUT, RESULTS, ROOT, bench_main, machine, timed  # noqa: E402

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORK = OUT / "sources"
FILES = 100  # Parquet files: one of them is 1% of the rows
WORDS = "tide harbour gull pier ferry lantern kelp dune reef buoy anchor mast".split()


def text(i: int, token: str = "") -> str:
    a, b, c = WORDS[i % 12], WORDS[(i * 7) % 12], WORDS[(i * 5 + 3) % 12]
    return f"Note {i} about the {a}, the {b} and a {c}; item {i * 31 % 1000}.{token}"


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "runs": values}


# --- data ------------------------------------------------------------------------------------


def make_parquet(folder: Path, n: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for f in range(FILES):
            ids = range(f * n // FILES, (f + 1) * n // FILES)
            pq.write_table(
                pa.table({"id": [f"d{i}" for i in ids], "text": [text(i) for i in ids]}),
                folder / f"part-{f:03d}.parquet",
            )
        (folder / "done").write_text(str(n))
    return {"name": "lake", "kind": "parquet", "path": str(folder)}


def change_parquet(folder: Path, n: int, token: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = range(0, n // FILES)
    table = pa.table({"id": [f"d{i}" for i in ids], "text": [text(i, token) for i in ids]})
    pq.write_table(table, folder / "part-000.parquet")


def _file(folder: Path, i: int) -> Path:
    return folder / f"{i // 1000:04d}" / f"{i:07d}.txt"


def make_folder(folder: Path, n: int) -> dict:
    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        for i in range(n):
            if i % 1000 == 0:
                _file(folder, i).parent.mkdir(parents=True)
            _file(folder, i).write_text(text(i))
        (folder / "done").write_text(str(n))
    return {"name": "files", "kind": "folder", "path": str(folder)}


def change_folder(folder: Path, n: int, token: str) -> None:
    for i in range(0, n, 100):
        _file(folder, i).write_text(text(i, token))


ICEBERG_TABLE = "docs.notes"


def _iceberg_catalog(folder: Path) -> dict:
    return {
        "type": "sql",
        "uri": f"sqlite:///{folder}/catalog.db",
        "warehouse": f"file://{folder}/warehouse",
    }


def _iceberg_rows(ids: range, token: str = ""):
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([f"d{i}" for i in ids], pa.string()),
            "n": pa.array(list(ids), pa.int64()),
            "text": pa.array([text(i, token) for i in ids], pa.string()),
        }
    )


def make_iceberg(folder: Path, n: int) -> dict:
    """A table of FILES appends (one data file each) in a SQL catalog on SQLite."""
    from pyiceberg.catalog import load_catalog

    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "warehouse").mkdir(parents=True)
        catalog = load_catalog("lake", **_iceberg_catalog(folder))
        catalog.create_namespace("docs")
        table = catalog.create_table(ICEBERG_TABLE, schema=_iceberg_rows(range(0)).schema)
        for f in range(FILES):
            table.append(_iceberg_rows(range(f * n // FILES, (f + 1) * n // FILES)))
        (folder / "done").write_text(str(n))
    return {
        "name": "lake",
        "kind": "iceberg",
        "catalog": _iceberg_catalog(folder),
        "catalog_name": "lake",
        "table": ICEBERG_TABLE,
        "id_column": "id",
        "text_columns": ["text"],
    }


def change_iceberg(folder: Path, n: int, token: str) -> None:
    """The rows of the first data file rewritten: one commit deletes them, one appends."""
    from pyiceberg.catalog import load_catalog
    from pyiceberg.expressions import LessThan

    table = load_catalog("lake", **_iceberg_catalog(folder)).load_table(ICEBERG_TABLE)
    table.overwrite(
        _iceberg_rows(range(n // FILES), token), overwrite_filter=LessThan("n", n // FILES)
    )


def make_postgres(server, rows: int) -> dict:
    import psycopg

    server.execute("DROP TABLE IF EXISTS notes")
    server.execute(
        "CREATE TABLE notes (id text PRIMARY KEY, body text, "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    with psycopg.connect(server.dsn, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY notes (id, body) FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((f"r{i}", text(i)))
        cur.execute("CREATE INDEX ON notes (updated_at)")
        cur.execute("ANALYZE notes")
    os.environ["EMBEDDINGS_PG_DSN"] = server.dsn
    return {
        "name": "crm",
        "kind": "postgres",
        "table": "public.notes",
        "text_columns": ["body"],
        "updated_at_column": "updated_at",
    }


def change_postgres(server, rows: int, token: str) -> None:
    server.execute(
        "UPDATE notes SET body = body || %s, updated_at = clock_timestamp() "
        "WHERE (substr(id, 2))::int %% 100 = 0",
        (token,),
    )


# --- measuring -------------------------------------------------------------------------------


def settle(source) -> None:
    """Wait until the folder's watcher has seen the writes just made (inotify events reach it in
    batches, about half a second late): a sensor tick comes every 30 s, not at once."""
    from embeddings_platform.core.sources import watch

    seen = watch._watches.get(os.path.realpath(getattr(source, "path", "")))
    if seen is None:
        return
    last = -1
    while seen.events != last:
        last = seen.events
        time.sleep(1.0)


class Walks:
    """Counts the folder walks (one stat per file) the snapshot step makes: none while the
    watcher's journal is trusted (core/sources/journal.py)."""

    def __init__(self):
        from embeddings_platform.core.sources import folder

        self.count, self._folder, self._real = 0, folder, folder._listing

    def __enter__(self):
        def counting(*args):
            self.count += 1
            return self._real(*args)

        self._folder._listing = counting
        return self

    def __exit__(self, *exc):
        self._folder._listing = self._real


@contextmanager
def watching(max_age: float):
    from embeddings_platform.core.sources import watch

    kept = watch.MAX_AGE_SECONDS
    watch.MAX_AGE_SECONDS = max_age
    try:
        yield
    finally:
        watch.MAX_AGE_SECONDS = kept


def built(instance, source: str, version: str) -> None:
    """The source's partitions as a deployment has them: materialized once by runs (the first
    snapshot here is taken without Dagster), so the tick sees a built grid, not a new one."""
    from dagster import AssetMaterialization

    from embeddings_platform.defs.partitions import grid_key

    cell = str(grid_key(source, version))
    for asset, partition in [
        ("source_snapshot", source),
        ("chunks", source),
        ("embeddings", cell),
        ("serving_index", cell),
    ]:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


def _sensor_tick(instance, path: Path, cursor):
    from dagster import build_sensor_context

    from embeddings_platform.defs.resources import PlatformResource
    from embeddings_platform.defs.sensors import source_change_sensor

    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"platform": PlatformResource(config_path=str(path))},
    )
    started = time.perf_counter()
    result = source_change_sensor(context)
    return time.perf_counter() - started, result, context.cursor


def measure(variant: str, source: dict, change, runs: int) -> dict:
    from dagster import DagsterInstance, SkipReason

    from embeddings_platform.core.config import load_config
    from embeddings_platform.core.models import model_version
    from embeddings_platform.core.refresh import listing_signature, source_fingerprint
    from embeddings_platform.core.stages.snapshot import take_snapshot
    from embeddings_platform.core.store import Store
    from embeddings_platform.testing import write_config

    base = WORK / variant
    shutil.rmtree(base / "a", ignore_errors=True)
    shutil.rmtree(base / "b", ignore_errors=True)
    (base / "a").mkdir(parents=True)
    (base / "b").mkdir(parents=True)
    path = write_config(base / "a" / "platform.yaml", [source])
    full_path = write_config(base / "b" / "platform.yaml", [source])
    config, full_config = load_config(path), load_config(full_path)
    src, docs = config.sources[0], config.documents
    print(f"[{variant}] first snapshot", flush=True)
    first, first_seconds = timed(take_snapshot, Store(config.storage_uri), src, "first", docs)
    shutil.copytree(base / "a" / "lancedb", base / "b" / "lancedb")  # the same start for both

    print(f"[{variant}] unchanged: full re-reads, signatures, sensor ticks", flush=True)
    full_reads, signatures, walked = [], [], []
    for _ in range(runs):
        fingerprint, seconds = timed(source_fingerprint, src, docs)
        assert fingerprint == first.snapshot_id
        full_reads.append(seconds)
    with watching(max_age=0.0):  # what a signature costs unwatched (the listing itself)
        for _ in range(runs):
            walked.append(timed(listing_signature, src)[1])
    listing_signature(src)  # a large folder is watched from here on
    for _ in range(runs):
        signatures.append(timed(listing_signature, src)[1])
    instance = DagsterInstance.ephemeral()
    version = model_version(config.models[0]).version_id
    instance.add_dynamic_partitions("source", src.partition_keys)
    instance.add_dynamic_partitions("model", [version])
    built(instance, src.name, version)
    first_tick, result, cursor = _sensor_tick(instance, path, None)
    assert isinstance(result, SkipReason), result
    ticks = []
    for _ in range(runs):
        seconds, result, cursor = _sensor_tick(instance, path, cursor)
        assert isinstance(result, SkipReason), result
        ticks.append(seconds)

    print(f"[{variant}] 1% changed: snapshot step against a full snapshot", flush=True)
    partial, full, changed_ticks, read, walks, loads = [], [], [], [], [], []
    for run in range(runs):
        change(f" Edited in run {run} at {time.time():.0f}.")
        settle(src)
        changed_tick, result, _ = _sensor_tick(instance, path, cursor)
        assert not isinstance(result, SkipReason)
        changed_ticks.append(changed_tick)
        loads.append(os.getloadavg()[0])
        with Walks() as walked_in_step:
            report, seconds = timed(take_snapshot, Store(config.storage_uri), src, f"p{run}", docs)
        partial.append(seconds)
        read.append(report.documents_read)
        walks.append(walked_in_step.count)
        baseline, seconds = timed(
            take_snapshot,
            Store(full_config.storage_uri),
            full_config.sources[0],
            f"f{run}",
            docs,
            True,
        )
        full.append(seconds)
        assert report.snapshot_id == baseline.snapshot_id and report.is_new
        assert not report.full_read and baseline.full_read
        _, result, cursor = _sensor_tick(instance, path, cursor)  # the change is in
        assert isinstance(result, SkipReason), result
    return {
        "documents": first.documents,
        "first_snapshot_seconds": first_seconds,
        "full_reread": stats(full_reads),
        "signature": stats(signatures),
        "signature_unwatched": stats(walked),
        "sensor_tick": stats(ticks),
        "sensor_first_tick_seconds": first_tick,
        "sensor_tick_after_change": stats(changed_ticks),
        "changed_documents": report.changed,
        "documents_read": read,
        "walks_in_step": walks,
        "load_average": loads,
        "partial_snapshot": stats(partial),
        "full_snapshot": stats(full),
    }


def run(args) -> dict:
    from embeddings_platform.testing import PgServer

    WORK.mkdir(parents=True, exist_ok=True)
    n, rows = args.documents, args.rows
    data = WORK / f"data-{n}"
    results = {}
    only = set(args.only or _NAMES)
    if "parquet" in only:
        parquet = make_parquet(data / "parquet", n)
        results["parquet"] = measure(
            "parquet", parquet, lambda t: change_parquet(data / "parquet", n, t), args.runs
        )
    if "folder" in only:
        print("generating the folder", flush=True)
        files = make_folder(data / "files", n)
        results["folder"] = measure(
            "folder", files, lambda t: change_folder(data / "files", n, t), args.runs
        )
    if "iceberg" in only:
        print("generating the Iceberg table", flush=True)
        lake = make_iceberg(data / "iceberg", n)
        results["iceberg"] = measure(
            "iceberg", lake, lambda t: change_iceberg(data / "iceberg", n, t), args.runs
        )
    if "postgres" in only:
        server = PgServer()
        server.start()
        try:
            table = make_postgres(server, rows)
            results["postgres"] = measure(
                "postgres", table, lambda t: change_postgres(server, rows, t), args.runs
            )
        finally:
            server.remove()
    return {
        "command": "nice -n 10 .venv/bin/python benchmarks/bench_sources.py"
        + ("" if (n, rows) == (1_000_000, 100_000) else f" --documents {n} --rows {rows}")
        + (f" --only {' '.join(args.only)}" if args.only else ""),
        "only": sorted(only) if args.only else None,
        "machine": machine(),
        "runs": args.runs,
        "results": results,
    }


def _row(name: str, r: dict) -> str:
    full, tick, sig = r["full_reread"]["median"], r["sensor_tick"], r["signature"]
    partial, snap = r["partial_snapshot"], r["full_snapshot"]
    return (
        f"| {name} | {r['documents']:,} | {full:.2f} | {sig['min']:.3f} / {sig['median']:.3f} | "
        f"{tick['min']:.3f} / {tick['median']:.3f} | {tick['median'] / full:.2%} | "
        f"{snap['min']:.2f} / {snap['median']:.2f} | {partial['min']:.2f} / "
        f"{partial['median']:.2f} | {partial['median'] / snap['median']:.2%} |"
    )


def render(r: dict) -> str:
    """The section; for a run of some sources alone (--only), their rows and the prose put into
    the section as it stands, the other sources' rows kept from the run that made them."""
    return _merged(r, _render(r)) if r.get("only") else _render(r)


def _merged(r: dict, new: str) -> str:
    start, end = "<!-- bench_sources:start -->", "<!-- bench_sources:end -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if start not in text or end not in text:
        return new
    old = text[text.index(start) + len(start) : text.index(end)].split("\n\n", 1)[1]
    names = [_NAMES[key] for key in r["only"]]
    rows = {name: [ln for ln in new.splitlines() if ln.startswith(f"| {name} |")] for name in names}
    lines = []
    for line in old.split("Where the time goes.", 1)[0].rstrip().splitlines():
        name = next((n for n in names if line.startswith(f"| {n} |")), None)
        if line.startswith("Re-measured alone:"):
            continue
        lines.append(rows[name].pop(0) if name and rows[name] else line)
        if line.startswith("Command:"):
            loads = [x for key in r["only"] for x in r["results"][key]["load_average"]]
            lines += [
                "",
                f"Re-measured alone: the rows of {', '.join(names)}, with `{r['command']}` "
                f"(load average {min(loads):.1f} to {max(loads):.1f} at its steps).",
            ]
    body = "\n".join(lines)
    while "\n\n\n" in body:  # the blank line after a replaced note
        body = body.replace("\n\n\n", "\n\n")
    return body + "\n\n" + new[new.index("Where the time goes.") :]


def _render(r: dict) -> str:
    res = r["results"]
    rows = "\n".join(_row(name, res[key]) for key, name in _NAMES.items() if key in res)
    extra = "\n".join(
        f"| {name} | {res[key]['signature_unwatched']['median']:.3f} | "
        f"{res[key]['sensor_first_tick_seconds']:.2f} | "
        f"{res[key]['sensor_tick_after_change']['median']:.2f} | "
        f"{res[key]['changed_documents']:,} | {max(res[key]['documents_read']):,} | "
        f"{max(res[key].get('walks_in_step', [0]))} | "
        f"{', '.join(f'{x:.1f}' for x in res[key].get('load_average', []))} | "
        f"{res[key]['first_snapshot_seconds']:.1f} |"
        for key, name in _NAMES.items()
        if key in res
    )
    return f"""Command: `{r["command"]}`. Machine: {r["machine"]}, shared with other jobs \
while it ran. Data: short synthetic documents (about 60 bytes), generated under \
benchmarks/out/sources/; min / median of {r["runs"]} runs, seconds.

| source | documents | full re-read (baseline) | signature | sensor tick | tick / re-read \
| full snapshot after 1% changed | snapshot step after 1% changed | step / full |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Targets: a tick on an unchanged source <= 1 s and <= 1% of the full re-read; the snapshot step
after 1% of the documents changed <= 5% of a full snapshot. The sensor tick is the real
`source_change_sensor` (build_sensor_context, cursor from the tick before); the signature is
the part of it that looks at the source (for the folder: watched, see below). The full
snapshot is `take_snapshot(full=True)` on a copy of the store (what every snapshot did before).

| source | signature unwatched (median) | first tick after a restart | tick after the change \
| documents changed | documents read by the step | walks in the step | load average (1 min) at \
each step | first snapshot |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |
{extra}

Where the time goes. Folder: a walk is one `stat` per file (the unwatched signature above), so
neither the tick nor the step walks while the sensor's watcher is trusted: the tick compares the
watcher's event count, the step stats only the paths the watcher journaled (core/sources/
journal.py). Its first step after the sensor's walk compares that whole listing with the last
snapshot's stamps in Arrow (about a second here: the slowest of the three runs); later steps on
the same walk compare only the journaled paths. PostgreSQL: a whole re-read of 100,000 short
rows takes about a second, so fixed costs weigh, whatever number of rows changed: a tick is one
statement on the sensor's kept connection (a `count(*)` over the table, ~3 ms) plus the sensor's
own work. A step: the last snapshot's row, loaded while the source is checked on the kept
connection (~5 ms); one read-only transaction in that connection with one aggregate over the
keys and the changed rows (~12 ms); the changed rows' last manifest rows, looked up with
lance's hashed IN (~15 ms); their new texts inserted by content hash (~16 ms, a join against
every stored hash, run while the lookup runs); two appends, the manifest delta under its
snapshot row's key and the snapshot row (~7 ms); validation and comparison in Python (~8 ms).
(Spans from cProfile and perf_counter at a load of about 1.5.) Before, the step took 110 to
150 ms at a load of 3.6: the delta was a merge against every manifest row, the lookup used
LanceDB's `isin` (an OR of one equality a value: 17 ms of CPU for 1,000 ids over 100,000 rows,
against 5), the read opened a connection of its own (2 to 10 ms under load), and every table
was listed before it was opened.
"""


_NAMES = {
    "parquet": "Parquet, 100 files",
    "folder": "folder, one file per document",
    "iceberg": "Iceberg, 100 data files",
    "postgres": "PostgreSQL table",
}


def main(argv: list[str] | None = None) -> int:
    def arguments(parser):
        parser.add_argument("--documents", type=int, default=1_000_000)
        parser.add_argument("--rows", type=int, default=100_000, help="PostgreSQL table rows")
        parser.add_argument("--runs", type=int, default=3)
        parser.add_argument(
            "--only",
            nargs="+",
            choices=list(_NAMES),
            help="these sources alone: their rows replace theirs in RESULTS.md",
        )

    return bench_main(
        argv,
        __doc__,
        "sources",
        "Sources: change detection that costs what changed (issue 17)",
        run,
        render,
        arguments,
        smoke=lambda args: (args.documents, args.rows) != (1_000_000, 100_000),
    )


if __name__ == "__main__":
    raise SystemExit(main())
