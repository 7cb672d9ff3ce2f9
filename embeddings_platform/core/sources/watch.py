"""Large folders watched between sensor ticks, so an idle tick does not stat a million files.

A folder's signature is a digest of every file's stamp: one stat per file, about 2.5 to 5 us
each here, seconds for a million files. The sensor runs in a long-lived process (the code
server), so once a walk of a folder has taken WATCH_AFTER_SECONDS, the folder is watched with
watchdog (inotify on Linux; polling elsewhere). While no write, create, delete, move or
attribute change arrived below it since the last walk began, its signature is that walk's; any
such event makes the next signature walk again. A watcher can miss what it cannot see (a
network file system, an overflowing event queue), so a listing older than MAX_AGE_SECONDS is
walked again whatever the watcher says, and a folder that cannot be watched is walked every
time, as a small one is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

WATCH_AFTER_SECONDS = 0.5  # a folder listed faster than this is not worth a watcher
MAX_AGE_SECONDS = 300.0  # the longest a watched listing is trusted without a walk
CHANGES = [
    FileModifiedEvent,  # content and attributes (inotify IN_MODIFY, IN_ATTRIB)
    FileClosedEvent,  # closed after a write
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    DirModifiedEvent,
]  # not opened or read: a snapshot run reading the folder changes nothing

log = logging.getLogger(__name__)


class _Watch(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events = 0  # changes seen below the folder since it is watched
        self.digest: str | None = None  # the last walk's, with the event count before it
        self.seen = -1
        self.walked_at = 0.0

    def on_any_event(self, event) -> None:
        self.events += 1


_lock = threading.Lock()
_observer: Observer | None = None
_watches: dict[str, _Watch | None] = {}  # None: cannot be watched, walked every time


def watched_signature(root: str, walk: Callable[[], str]) -> str:
    """The folder's signature: the last walk's while its watcher saw nothing, else `walk()`."""
    watch = _watches.get(root)
    now = time.monotonic()
    if (
        watch is not None
        and watch.digest is not None
        and watch.events == watch.seen
        and now - watch.walked_at < MAX_AGE_SECONDS
    ):
        return watch.digest
    before = watch.events if watch is not None else 0  # counted before: none is missed
    digest = walk()
    took = time.monotonic() - now
    if watch is not None:
        watch.digest, watch.seen, watch.walked_at = digest, before, now
    elif root not in _watches and took >= WATCH_AFTER_SECONDS:
        _watches[root] = _start(root)  # trusted from the next walk on: it began watched
    return digest


def _start(root: str) -> _Watch | None:
    global _observer
    watch = _Watch()
    try:
        with _lock:
            if _observer is None:
                _observer = Observer()
                _observer.daemon = True
                _observer.start()
            _observer.schedule(watch, root, recursive=True, event_filter=CHANGES)
    except Exception as exc:  # noqa: BLE001 - out of inotify watches, an unsupported file system
        log.warning("cannot watch %s (%s); it is walked on every tick", root, exc)
        return None
    return watch


def stop_watching() -> None:
    """Stop every watcher (tests; a process that is done with its sources)."""
    global _observer
    with _lock:
        if _observer is not None:
            _observer.unschedule_all()
            _observer.stop()
            _observer.join(timeout=5)
        _observer = None
        _watches.clear()
