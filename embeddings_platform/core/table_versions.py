"""What a table's commit log says: which version last changed rows (the `embeddings` asset's
data version) and when each version was committed (retention expiry). A table's version also
moves for commits that change no row, so the number alone answers neither question."""

from __future__ import annotations

from datetime import datetime

from .schemas import utcnow

# Commits that leave every row as it was: an index build, a declared key, a compaction.
_CONTENT_NEUTRAL = {"CreateIndex", "UpdateConfig", "Rewrite", "ReserveFragments"}


def last_data_version(table) -> int:
    """The newest version of a table whose commit changed rows (not an index build or compaction).

    The table version also moves when serving_index indexes the table, so it alone cannot say
    whether the next `embeddings` run changed any data. A version whose commit record is gone
    (cleaned up) counts as a change. Compaction commits a fragment-id reservation (which pylance
    reads back only as a `BaseOperation`) right before its `Rewrite`.
    """
    dataset = table.to_lance()
    version, later = dataset.version, None
    while version > 1:
        transaction = dataset.read_transaction(version)
        kind = type(transaction.operation).__name__ if transaction is not None else None
        reservation = kind == "BaseOperation" and later == "Rewrite"
        if kind not in _CONTENT_NEUTRAL and not reservation:
            return version
        version, later = version - 1, kind
    return version


def version_times(table) -> dict[int, datetime]:
    """When each version of a table was committed (UTC)."""
    utc = utcnow().tzinfo
    return {
        int(info["version"]): info["timestamp"]
        if info["timestamp"].tzinfo
        else info["timestamp"].replace(tzinfo=utc)
        for info in table.list_versions()
    }
