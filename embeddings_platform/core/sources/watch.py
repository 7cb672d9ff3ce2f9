"""Large folders watched between sensor ticks, so an idle tick does not stat a million files.

A folder's signature is a digest of every file's stamp: one stat per file, about 2.5 to 5 us
each here, seconds for a million files. The sensor runs in a long-lived process (the code
server), so once a walk of a folder has taken WATCH_AFTER_SECONDS, the folder is watched with
watchdog (inotify on Linux; polling elsewhere). While no write, create, delete or move arrived
below it since the last walk began, its signature is that walk's; after one, it is that walk's
with the watcher's event count, and the paths the events named are journaled (journal.py) so a
snapshot step stats only those. A watcher can miss what it cannot see (a network file system,
writes through mmap, an overflowing event queue), so a listing older than MAX_AGE_SECONDS is
walked again whatever the watcher says, an overflow or a replaced folder makes the next
signature walk, and a folder that cannot be watched is walked every time, as a small one is.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
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

from .journal import Session
from .listing import FolderListing

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
    def __init__(self, root: str, session: Session | None) -> None:
        self.root, self.session, self.id = root, session, uuid.uuid4().hex[:12]
        info = os.stat(root)
        self.identity = (info.st_dev, info.st_ino)
        self.events = 0  # changes seen below the folder since it is watched
        self.overflows = 0  # times the event queue overflowed (events lost)
        self.ended = False  # the folder itself was deleted or moved: no more events come
        self.digest: str | None = None  # the last walk's, with the counts before it
        self.seen, self.seen_overflows = -1, 0
        self.walked_at = 0.0
        self.scheduled = None  # watchdog's handle, to stop watching

    def on_any_event(self, event) -> None:
        if isinstance(event, DirModifiedEvent):
            return  # a folder's entries changed (each has its own event), or its mode
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if event.src_path == self.root and isinstance(event, (DirDeletedEvent, DirMovedEvent)):
            self.ended = True
        try:
            for path in filter(None, paths):
                rel = os.path.relpath(path, self.root)
                if self.session is not None and rel != "." and not rel.startswith(".."):
                    self.session.record(rel)
        except Exception as exc:  # noqa: BLE001 - a full disk: steps walk, watching goes on
            log.warning("cannot journal %s (%s); snapshot steps walk it", self.root, exc)
            self.end_journal()
        self.events += 1  # after the journal: a count moves only once its paths are written

    def end_journal(self) -> None:
        """No step trusts this journal any more (its folder and lock are gone)."""
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def trusted(self, now: float) -> bool:
        return (
            self.digest is not None
            and self.overflows == self.seen_overflows
            and now - self.walked_at < MAX_AGE_SECONDS
        )

    def overflow(self) -> None:
        self.overflows += 1
        if self.session is not None:
            self.session.overflow()


_lock = threading.Lock()
_observer: Observer | None = None
_watches: dict[str, _Watch | None] = {}  # None: cannot be watched, walked every time


def watched_signature(root: str, walk: Callable[[], FolderListing]) -> str:
    """The folder's signature: the last walk's while its watcher saw nothing, that and the
    watcher's event count after it saw something, else the digest of a new `walk()`."""
    now = time.monotonic()
    if _observer is not None and not _observer.is_alive():
        stop_watching()  # its thread died: nothing is seen, no journal may be trusted
    watch = _watches.get(root)
    if watch is not None and (watch.ended or not _same_folder(watch) or not _emitting(watch)):
        _forget(root)  # a new folder at this path, or its watcher stopped: watched anew
        watch = None
    if watch is not None and watch.trusted(now):
        if watch.events == watch.seen:
            return watch.digest
        return f"{watch.digest}+{watch.id}:{watch.events}"
    before = (watch.events, watch.overflows) if watch is not None else (0, 0)  # none is missed
    generation = _begin(watch)
    walked_at = time.time()
    listing = walk()
    digest = listing.digest()
    took = time.monotonic() - now
    if watch is not None:
        watch.digest, watch.walked_at = digest, now
        watch.seen, watch.seen_overflows = before
        if generation is not None:
            _publish(watch, generation, listing, walked_at)
    elif root not in _watches and took >= WATCH_AFTER_SECONDS:
        _watches[root] = _start(root)  # trusted from the next walk on: it began watched
    return digest


def _begin(watch: _Watch | None) -> int | None:
    """A new journal generation for the walk about to begin (None: no journal)."""
    if watch is None or watch.session is None:
        return None
    try:
        return watch.session.begin()
    except OSError as exc:
        log.warning("cannot journal %s (%s); snapshot steps walk it", watch.root, exc)
        watch.end_journal()
        return None


def _same_folder(watch: _Watch) -> bool:
    try:
        info = os.stat(watch.root)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == watch.identity


def _emitting(watch: _Watch) -> bool:
    """Is the thread reading this folder's events still running?"""
    observer = _observer
    if observer is None:
        return False
    return any(e.watch == watch.scheduled and e.is_alive() for e in list(observer.emitters))


def _publish(watch: _Watch, generation: int, listing: FolderListing, walked_at: float) -> None:
    session = watch.session
    if session is None:  # dropped while the folder was walked
        return
    try:
        session.publish(generation, listing, walked_at, watch.identity)
    except OSError as exc:  # a full disk: steps walk instead
        log.warning("cannot journal %s (%s); snapshot steps walk it", watch.root, exc)
        watch.end_journal()


def _start(root: str) -> _Watch | None:
    global _observer
    try:
        with _lock:
            if _observer is None:
                _observer = Observer()
                _observer.daemon = True
                _observer.start()
                atexit.register(stop_watching)
            watch = _Watch(root, _session(root))
            watch.scheduled = _observer.schedule(watch, root, recursive=True, event_filter=CHANGES)
    except Exception as exc:  # noqa: BLE001 - out of inotify watches, an unsupported file system
        log.warning("cannot watch %s (%s); it is walked on every tick", root, exc)
        return None
    return watch


def _session(root: str) -> Session | None:
    """A journal for snapshot steps, where a lost event is known (inotify's queue overflow)."""
    if not _notice_overflows():
        return None
    try:
        return Session(root)
    except OSError as exc:
        log.warning("cannot journal %s (%s); snapshot steps walk it", root, exc)
        return None


def _notice_overflows() -> bool:
    """watchdog drops inotify's queue-overflow event: note it, so no journal is trusted after
    events were lost. False where the observer is not inotify's (no journal then)."""
    try:
        from watchdog.observers import inotify_c
        from watchdog.observers.inotify import InotifyObserver
    except (ImportError, OSError):
        return False
    if not isinstance(_observer, InotifyObserver):
        return False
    parse = inotify_c.Inotify._parse_event_buffer
    if getattr(parse, "notes_overflow", False):
        return True
    overflow = inotify_c.InotifyConstants.IN_Q_OVERFLOW

    def parse_noting_overflow(buffer: bytes):
        for event in parse(buffer):
            if event[0] == -1 and event[1] & overflow:
                for watch in list(_watches.values()):
                    if watch is not None:
                        watch.overflow()
            yield event

    parse_noting_overflow.notes_overflow = True
    inotify_c.Inotify._parse_event_buffer = staticmethod(parse_noting_overflow)
    return True


def _forget(root: str) -> None:
    watch = _watches.pop(root, None)
    if watch is None:
        return
    with _lock:
        if _observer is not None and watch.scheduled is not None:
            try:
                _observer.unschedule(watch.scheduled)
            except KeyError:  # its emitter stopped when the folder went
                pass
    watch.end_journal()


def stop_watching() -> None:
    """Stop every watcher (tests; a process that is done with its sources)."""
    global _observer
    with _lock:
        if _observer is not None:
            _observer.unschedule_all()
            _observer.stop()
            _observer.join(timeout=5)
        _observer = None
        for watch in _watches.values():
            if watch is not None:
                watch.end_journal()
        _watches.clear()
