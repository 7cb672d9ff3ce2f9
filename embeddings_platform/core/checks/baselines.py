"""Stored baselines of the retrieval check: the first passing result of (source, model version)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..filters import equal
from ..store import Store

BASELINES = pa.schema(
    [
        pa.field("baseline_key", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("check", pa.string()),
        pa.field("labels_sha256", pa.string()),
        pa.field("k", pa.int64()),
        pa.field("queries", pa.int64()),
        pa.field("recall", pa.float64()),
        pa.field("ndcg", pa.float64()),
        pa.field("context_recall", pa.float64()),
        pa.field("context_precision", pa.float64()),
        pa.field("table_version", pa.int64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("run_id", pa.string()),
    ]
)


BASELINES_TABLE = "check_baselines"


def _baseline_key(source: str, version_id: str, check: str) -> str:
    return f"{source}:{version_id}:{check}"


def get_baseline(
    store: Store, source: str, version_id: str, check: str = "retrieval_recall"
) -> dict | None:
    if not store.has_table(BASELINES_TABLE):
        return None
    rows = Store.read(
        store.open_table(BASELINES_TABLE),
        where=equal(baseline_key=_baseline_key(source, version_id, check)),
    ).to_pylist()
    return rows[0] if rows else None


def record_baseline(store: Store, row: dict[str, Any]) -> None:
    row = dict(row, baseline_key=_baseline_key(row["source"], row["model_version"], row["check"]))
    table = store.table(BASELINES_TABLE, BASELINES, "baseline_key")
    store.upsert(table, pa.Table.from_pylist([row], schema=BASELINES), "baseline_key")


def reset_baseline(
    store: Store, source: str, version_id: str, check: str = "retrieval_recall"
) -> bool:
    """Forget a baseline: the next passing run sets a new one. Returns whether one existed."""
    if get_baseline(store, source, version_id, check) is None:
        return False
    store.delete_where_in(
        store.open_table(BASELINES_TABLE),
        "baseline_key",
        [_baseline_key(source, version_id, check)],
    )
    return True
