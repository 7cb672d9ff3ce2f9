"""What `embeddings-platform materialize` shows while it runs: one line per step as each run
ends, and the full Dagster log (its DEBUG events, whatever libraries print) in a file it names.

An operator watching `make demo` wants to see what was built, not hundreds of event lines; the
event lines stay in the file (and in the Dagster instance, for `make ui`).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .cli_output import clean


def log_path(home: Path) -> Path:
    """A new log file under $DAGSTER_HOME/materialize-logs/, one per materialize command
    (Dagster keeps its own telemetry in $DAGSTER_HOME/logs/)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = home / "materialize-logs" / f"{stamp}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def output_into(path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr meanwhile to `path` (appended).

    At the file-descriptor level, so native code (Lance, onnxruntime) and loggers that hold the
    original streams are caught as well as Dagster's console logger.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def run_lines(result) -> list[str]:
    """One line per materialized asset of an in-process run, then one for its checks."""
    seconds = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.get_step_success_events()
    }
    lines = []
    where = ""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        asset = materialization.asset_key.to_user_string()
        meta = {key: value.value for key, value in materialization.metadata.items()}
        where = _where(materialization.partition or "")
        took = seconds.get(event.step_key)
        lines.append(
            f"  {where:<40} {asset:<16} {describe(asset, meta, where)}"
            + (f" ({took:.1f} s)" if took is not None else "")
        )
    checks = result.get_asset_check_evaluations()
    if checks:
        failed = [c for c in checks if not c.passed]
        text = f"{len(checks) - len(failed)} of {len(checks)} passed"
        if failed:
            text += "; not passed: " + ", ".join(
                f"{c.check_name} ({c.severity.value})" for c in failed
            )
        lines.append(f"  {where:<40} {'checks':<16} {text}")
    for failure in result.get_step_failure_events():
        lines.append(f"  {where:<40} {failure.step_key:<16} FAILED (see the Dagster log)")
    return [clean(line) for line in lines]


def _where(partition: str) -> str:
    """`model|source` (a grid cell) as `source / model`; a source partition as it is."""
    model, _, source = partition.partition("|")
    return f"{source} / {model}" if source else partition


def describe(asset: str, meta: dict[str, Any], where: str = "") -> str:
    """What one step did, in words, from its materialization metadata."""
    if meta.get("retired"):
        return "retired model version: nothing to refresh"
    if asset == "source_snapshot":
        text = (
            f"{meta['documents']} documents: {meta['added']} added, {meta['changed']} changed, "
            f"{meta['removed']} removed, {meta['unchanged']} unchanged"
        )
        return text + (f", {meta['quarantined']} quarantined" if meta.get("quarantined") else "")
    if asset == "chunks":
        return (
            f"{meta['total_chunks']} chunks: {meta['chunks_written']} written, "
            f"{meta['chunks_deleted']} deleted"
        )
    if asset == "embeddings":
        if not meta["embedded"]:
            return f"nothing to embed ({meta['skipped']} unchanged), {meta['deleted']} deleted"
        return (
            f"{meta['embedded']} embedded, {meta['skipped']} unchanged, {meta['deleted']} "
            f"deleted; {meta['chunks_per_second']:.1f} chunks/s, model load "
            f"{meta['model_load_seconds']:.1f} s"
        )
    if asset == "serving_index":
        model = where.split(" / ")[-1]
        serves = meta.get("serving_model_version") == model
        role = "serving" if serves else "shadow (does not serve)"
        return (
            f"{meta['rows']} rows, {meta['index_type']} index, table v{meta['table_version']}, "
            + role
        )
    return ""
