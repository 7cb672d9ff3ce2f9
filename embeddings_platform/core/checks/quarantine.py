"""Quarantine: what the newest snapshot of a source set aside, counted by kind of reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..filters import equal
from ..store import DEAD_LETTER_REASON, Store
from .common import OK, WARN


@dataclass
class QuarantineReport:
    """What the newest snapshot of a source set aside, counted by kind of reason."""

    source: str
    snapshot_id: str
    table_name: str = "quarantine"
    table_version: int = 0
    documents: int = 0
    quarantined: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    severity: str = OK
    problems: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, float | int]:
        share = self.quarantined / max(1, self.documents + self.quarantined)
        return {
            "documents": self.documents,
            "quarantined": self.quarantined,
            "quarantined_share": round(share, 4),
            **{f"reason_{kind}": n for kind, n in sorted(self.by_kind.items())},
        }

    def facts(self) -> dict[str, str | bool]:
        return {"snapshot_id": self.snapshot_id} if self.snapshot_id else {}


def reason_kind(reason: str) -> str:
    """`undecodable: ...` -> `undecodable`; the part before the colon names the kind."""
    return re.sub(r"[^a-z0-9]+", "_", reason.split(":", 1)[0].lower()).strip("_")[:40] or "other"


def quarantine(store: Store, source: str) -> QuarantineReport:
    """WARN when the newest snapshot of `source` quarantined documents, with the reasons."""
    snapshot = store.latest_snapshot(source)
    if snapshot is None:
        return QuarantineReport(source, "", severity=WARN, problems=[f"{source}: no snapshot yet"])
    report = QuarantineReport(source, snapshot["snapshot_id"], documents=int(snapshot["documents"]))
    if not store.has_table("quarantine"):
        return report
    table = store.table("quarantine")
    report.table_version = table.version
    rows = Store.read(
        table, ["doc_id", "reason"], where=equal(source=source, snapshot_id=snapshot["snapshot_id"])
    ).to_pylist()
    rows = [
        r for r in rows if not r["reason"].startswith(DEAD_LETTER_REASON)
    ]  # those belong to embeddings
    report.quarantined = len(rows)
    for row in rows:
        kind = reason_kind(row["reason"])
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
    if rows:
        report.severity = WARN
        examples = ", ".join(f"{r['doc_id']!r} ({r['reason'][:60]})" for r in rows[:3])
        report.problems.append(
            f"{len(rows)} documents quarantined in snapshot {snapshot['snapshot_id']}: {examples}"
        )
    return report
