"""Change detection for the refresh sensor: which sources changed, which need a re-check.

A source's fingerprint is the id its next snapshot would get (a hash over every document's
content hash and metadata), so a touched file with the same bytes is no change. It is computed
only when the kind's cheap signature moved, and then as the snapshot step would: reading only
the entries whose stamp moved since the last snapshot (core/stages/snapshot.py). The decisions
are pure functions of what the sensor read, what its cursor remembers and what the store last
recorded, so they are tested without Dagster and survive restarts through the cursor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import DocumentsConfig, SourceConfig
from .documents import read_source
from .stages.snapshot import plan_snapshot, snapshot_id_of
from .store import Store


def source_fingerprint(
    source: SourceConfig, documents: DocumentsConfig = DocumentsConfig(), store: Store | None = None
) -> str:
    """The id the source's next snapshot would get: with the store, read as the snapshot step
    reads (only what changed since the last snapshot); without, by reading everything."""
    if store is not None:
        return plan_snapshot(store, source, documents).report.snapshot_id
    docs, _ = read_source(source, documents)
    return snapshot_id_of(docs)


def listing_signature(source: SourceConfig) -> str | None:
    """The source kind's cheap change signature (`signature()`: a file listing, a table's
    snapshot id, a watermark), read without document contents: an unchanged signature lets an
    idle tick reuse the fingerprint it read before. None: the source is read every tick.
    """
    return source.signature()


@dataclass
class RefreshCursor:
    """What the sensor remembers between ticks: the fingerprint it last acted on per source, the
    file listing it last read each source at, and the partitions it saw waiting for their first
    build (their automation gets one tick first)."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    unbuilt: set[str] = field(default_factory=set)
    listings: dict[str, list[str]] = field(default_factory=dict)  # source -> [listing, fingerprint]
    # what the instance's event log said: "asset:partition" -> when it last materialized (a
    # re-check is not due before that plus the window; a grid partition built once is never a
    # missed first build again): an idle tick asks the event log nothing
    materialized: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "RefreshCursor":
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return cls()  # an unreadable cursor only costs one re-read of every source
        return cls(
            dict(data.get("fingerprints", {})),
            set(data.get("unbuilt", [])),
            dict(data.get("listings", {})),
            dict(data.get("materialized", {})),
        )

    def serialize(self) -> str:
        return json.dumps(
            {
                "fingerprints": self.fingerprints,
                "unbuilt": sorted(self.unbuilt),
                "listings": self.listings,
                "materialized": self.materialized,
            },
            sort_keys=True,
        )


def changed(
    source: str, fingerprint: str, cursor: RefreshCursor, recorded_snapshot: str | None
) -> bool:
    """True if the source's content is neither what the store recorded nor already requested.

    The store's latest snapshot is the reference, so a restart (or a lost cursor) does not
    re-request sources that are current; the cursor keeps a change that is already on its
    way from being requested again on every tick until its run lands.
    """
    return fingerprint != recorded_snapshot and fingerprint != cursor.fingerprints.get(source)


def known_fingerprint(source: str, listing: str | None, cursor: RefreshCursor) -> str | None:
    """The fingerprint read at this very file listing before, if any: no need to read again."""
    seen = cursor.listings.get(source)
    return seen[1] if listing is not None and seen and seen[0] == listing else None


def recheck_due(last_checked: datetime | None, now: datetime, window: timedelta) -> bool:
    """A partition not re-checked within its window is due; one never built is not (its first
    build is not a re-check: the automation starts it)."""
    return last_checked is not None and now - last_checked >= window
