"""What the checks share: severities, plottable numbers, which table version to read."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from ..filters import equal
from ..sharding import parse_key as parse_shard_key
from ..store import Store, chunks_table_name, utcnow

OK, WARN, ERROR = "ok", "warn", "error"
_RANK = {OK: 0, WARN: 1, ERROR: 2}


def worst(*severities: str) -> str:
    return max(severities, key=_RANK.__getitem__, default=OK)


# Identities and settings: the same from run to run, or naming which thing was read (a table
# version), not measuring it. Plotted, they are noise; they go to the UI as text.
CONSTANTS = frozenset(
    {"table_version", "dimension", "expected_dimension", "k", "floor", "sample", "queries"}
)
UNKNOWN_IF_ZERO = frozenset({"table_version", "dimension", "expected_dimension"})
# Said elsewhere in the result (the table, the description) or not for the UI.
NOT_METADATA = frozenset({"source", "table_name", "problems", "note", "severity"})


def numeric(values: dict[str, Any]) -> dict[str, float | int]:
    """The measurements: numbers that change over time, for the UI's plots (no flags, no
    identities or settings: see `facts`)."""
    out: dict[str, float | int] = {}
    for key, value in values.items():
        if key in CONSTANTS or key in NOT_METADATA or isinstance(value, bool):
            continue
        if isinstance(value, (int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value)
    return out


def facts(values: dict[str, Any]) -> dict[str, str | bool]:
    """What is not a measurement: flags (bool), names, identities and settings (text)."""
    out: dict[str, str | bool] = {}
    for key, value in values.items():
        if key in NOT_METADATA or value is None or isinstance(value, (list, dict)):
            continue
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, str):
            if value:
                out[key] = value
        elif key in CONSTANTS and not (key in UNKNOWN_IF_ZERO and not value):
            out[key] = str(value)
    return out


def served_version(store: Store, source: str, name: str) -> int | None:
    pointer = store.pointer(source)
    if pointer is not None and pointer["table_name"] == name:
        return int(pointer["table_version"])
    return None


def resolve_version(store: Store, source: str, name: str, at: str) -> tuple[int | None, bool]:
    """(table version to read, whether it is the served one) for at = 'latest' | 'served'."""
    if at not in ("latest", "served"):
        raise ValueError(f"at: expected 'latest' or 'served', got {at!r}")
    served = served_version(store, source, name)
    if at == "served" and served is not None:
        return served, True
    return None, False


def strategy_of(store: Store, source: str, table) -> tuple[str | None, list[str]]:
    """The chunking strategy of a vectors table (from its rows, else the only chunks table)."""
    found = Store.read(table, ["chunking_strategy"]).column("chunking_strategy").unique()
    return pick_strategy(store, source, found)


def pick_strategy(store: Store, source: str, found) -> tuple[str | None, list[str]]:
    """(the strategy, every strategy) from the distinct strategies found in a table's rows;
    none found (an empty table): the source's only chunks table, if it has one."""
    strategies = sorted(s for s in found.to_pylist() if s is not None)
    if strategies:
        return strategies[0], strategies
    prefix = f"chunks__{source}__"
    tables = [n for n in store.table_names() if n.startswith(prefix)]
    return (tables[0][len(prefix) :] if len(tables) == 1 else None), []


def chunks_table(store: Store, source: str, strategy: str | None):
    if strategy is None:
        return None
    name = chunks_table_name(source, strategy)
    return store.open_table(name) if store.has_table(name) else None


def as_utc(value: datetime) -> datetime:
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def version_time(table) -> datetime:
    """Commit time of the checked-out table version (lance reports naive local time)."""
    current = int(table.version)
    for entry in table.list_versions():
        if int(entry["version"]) == current:
            return entry["timestamp"].astimezone(
                timezone.utc
            )  # naive = local time, as astimezone assumes
    return utcnow()


def shard_rows(rows: pa.Table, source: str) -> pa.Table:
    """The rows (with a doc_id column) that belong to the shard `source` names; all if unsharded."""
    shard = parse_shard_key(source)
    if shard.count == 1:
        return rows
    return rows.filter(
        pa.array([shard.holds(d) for d in rows.column("doc_id").to_pylist()], pa.bool_())
    )


def snapshots_of(store: Store, source: str) -> list[dict[str, Any]]:
    if not store.has_table("snapshots"):
        return []
    rows = Store.read(
        store.open_table("snapshots"), ["snapshot_id", "created_at"], where=equal(source=source)
    ).to_pylist()
    return sorted(rows, key=lambda r: r["created_at"])


class Report:
    """What every check report answers: ok or not, whether anything was measured at all, its
    plottable numbers and its facts (for the UI)."""

    severity: str
    problems: list[str]
    evaluated: bool = True  # False: nothing to evaluate (no labelled queries, no ANN index)

    @property
    def ok(self) -> bool:
        return self.severity == OK

    def metadata(self) -> dict[str, float | int]:
        """Measurements only; none when nothing was evaluated (no zeros posing as results)."""
        if not self.evaluated:
            return {}
        return numeric(asdict(self)) | {"problems": len(self.problems)}

    def facts(self) -> dict[str, str | bool]:
        return facts(asdict(self))
