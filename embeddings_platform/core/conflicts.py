"""LanceDB commits that race other writers: retried, or recognised as already done (part of
the store layer: only core/store.py uses it).

Several processes write one LanceDB database (shards, two runs of a partition, a refresh during a
migration). A commit that loses a race is run again with jittered backoff (tenacity); a table
another process is creating is waited for; a primary key another process declared first counts
as declared.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import lance
import pyarrow as pa
from lance.commit import CommitConflictError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

T = TypeVar("T")

# LanceDB 0.40 gives a commit conflict no exception type of its own: its Python binding maps
# every lance error but a few to RuntimeError (lancedb python/src/error.rs), so a lost race reads
# "Retryable commit conflict for version N ... Please retry" or "Incompatible transaction" only in
# the message. pylance (`table.to_lance()` writes) does raise a type, lance.commit.
# CommitConflictError; it is matched by type. Every action retried here is re-run in full against
# the newest version (an upsert, a delete, an index replace), so an incompatible one is retried too.
_CONFLICT_MESSAGES = (
    "commit conflict",
    "incompatible transaction",
    "please retry",
    "too many concurrent writers",
)


def is_commit_conflict(exc: BaseException) -> bool:
    """Did a LanceDB commit lose a race with another writer (so that running it again helps)?"""
    if isinstance(exc, CommitConflictError):
        return exc.retryable
    if not isinstance(exc, (RuntimeError, OSError)):
        return False
    message = str(exc).lower()
    return any(m in message for m in _CONFLICT_MESSAGES)


@dataclass
class ConflictCount:
    """Commit conflicts retried while counting (a step reports them in its metadata)."""

    retried: int = 0


_COUNTERS: ContextVar[tuple[ConflictCount, ...]] = ContextVar("commit_conflicts", default=())


@contextmanager
def counting_conflicts() -> Iterator[ConflictCount]:
    """Count the commit conflicts `retry_on_conflict` retries inside the block: how often
    concurrent writers (shards) collided is measured, not guessed."""
    count = ConflictCount()
    token = _COUNTERS.set((*_COUNTERS.get(), count))
    try:
        yield count
    finally:
        _COUNTERS.reset(token)


def _count_conflict(_retry_state) -> None:
    for count in _COUNTERS.get():
        count.retried += 1


def retry_on_conflict(action: Callable[[], T], attempts: int = 8, base_delay: float = 0.05) -> T:
    """Run a LanceDB commit, again after a lost race with another writer (jittered backoff).

    Bounded: after `attempts` tries (about 6 s of backoff at the defaults) the conflict is raised.
    """
    return Retrying(
        retry=retry_if_exception(is_commit_conflict),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(
            initial=base_delay, max=base_delay * 2**attempts, jitter=base_delay
        ),
        before_sleep=_count_conflict,
        reraise=True,
    )(action)


def create_table_once(db, name: str, schema: pa.Schema):
    """Create an empty table, or fail when another process created it first: never overwrite.

    LanceDB's `create_table` can commit as an overwrite of the table another process created a
    moment earlier, erasing the rows it wrote since (lance issue 4451; here 7 of 120 two-process
    races lost a row). A lance commit without retries creates version 1 or fails.
    """
    uri = f"{db.uri.rstrip('/')}/{name}.lance"
    lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, []), max_retries=0)
    return db.open_table(name)


def half_created(exc: BaseException) -> bool:
    """Another process is creating the table: listed but not committed yet, or committed first.

    LanceDB and lance say so with ValueError or OSError, as for any bad input or I/O failure,
    so the message decides.
    """
    if not isinstance(exc, (ValueError, OSError)):
        return False
    message = str(exc).lower()
    return "not found" in message or "already exists" in message


_PRIMARY_KEY = b"lance-schema:unenforced-primary-key"


def primary_key(table) -> list[str]:
    """The table's declared (unenforced) primary key columns, in order; [] when none."""
    positions = {}
    for index, field in enumerate(table.schema):
        metadata = field.metadata or {}
        if any(k.startswith(_PRIMARY_KEY) for k in metadata):
            positions[field.name] = int(metadata.get(_PRIMARY_KEY + b":position", index + 1))
    return sorted(positions, key=positions.get)


def declare_key(table, key: str) -> None:
    """Declare `key` the table's primary key, once, however many processes race to do it.

    LanceDB refuses a second declaration ("already set" to a fresh handle, "Incompatible
    transaction" to one that read the table before the first): the table's schema, read again,
    decides whether the key the loser wanted is there, so the race is success, not an error.
    """
    if primary_key(table) == [key]:
        return
    try:
        retry_on_conflict(lambda: table.set_unenforced_primary_key(key))
    except (ValueError, RuntimeError, OSError):
        if primary_key(table) != [key]:
            raise
