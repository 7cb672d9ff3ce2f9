"""Shards: a large source split into independent partitions by a stable hash of doc id.

A source registered with `shards: N` (N > 1) becomes N `source` partitions named
`<source>.shard-<i>-of-<N>`. Each shard snapshots, chunks and embeds only its own documents,
so N runs can go to N workers and a changed document touches only its shard. All shards of a
source write into the source's one chunks table and one vectors table per model version, and
share the source's one serving pointer: search, migrations and rollbacks see one source.
Source names cannot contain '.', so the separator is unambiguous.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD_KEY = re.compile(r"^(?P<source>[^.]+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)$")


@dataclass(frozen=True)
class Shard:
    source: str  # the registered source the shard belongs to
    index: int
    count: int

    @property
    def key(self) -> str:
        return (
            self.source if self.count == 1 else f"{self.source}.shard-{self.index}-of-{self.count}"
        )

    def holds(self, doc_id: str) -> bool:
        return self.count == 1 or shard_of(doc_id, self.count) == self.index


def shard_of(doc_id: str, count: int) -> int:
    """Stable across processes, machines and Python versions (unlike hash())."""
    return (
        int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")
        % count
    )


def shard_keys(source: str, count: int) -> list[str]:
    return [Shard(source, i, count).key for i in range(count)] if count > 1 else [source]


def parse_key(partition_key: str) -> Shard:
    """A `source` partition key -> its shard (a plain source name is the single shard 0 of 1)."""
    match = _SHARD_KEY.match(partition_key)
    if not match:
        return Shard(partition_key, 0, 1)
    shard = Shard(match["source"], int(match["index"]), int(match["count"]))
    if not 0 <= shard.index < shard.count:
        raise ValueError(
            f"shard index {shard.index} out of range in partition key {partition_key!r}"
        )
    return shard


def owner(partition_key: str) -> str:
    """The source whose tables and serving pointer a partition key writes to."""
    return parse_key(partition_key).source
