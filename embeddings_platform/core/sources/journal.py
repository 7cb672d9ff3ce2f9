"""The watcher's journal: which paths below a watched folder changed since its last walk, on disk,
so a snapshot run in another process stats those paths instead of walking a million files.

The sensor's process watches a large folder (watch.py). Each walk it makes of the folder is a
*generation*: the listing it found, and a journal of every path an event named since that walk
began. A snapshot step on the same machine then takes the newest generation's listing, stats
again the paths its journal names (and every link: a link's target can change without an event
on the link), walks the folders created or moved in, and drops what was deleted: that is the
folder as a walk would find it, at the cost of what changed.

It is trusted only while nothing can have been missed, otherwise the step walks:
- the watching process is alive (it holds `lock`; a dead process's lock is free);
- no event was lost (inotify's queue overflowed: the journal says `!`);
- the folder is still the one walked (same device and inode) and the walk is younger than
  watch.MAX_AGE_SECONDS: the sensor walks at least that often, whatever its watcher says, so
  what no event shows (a network file system, writes through mmap) is seen within that time;
- the walk could list every folder, and what changed is small against the listing.

Layout: STATE/<hash of the folder>/<session>/ for each watching process: `lock`, `current`
(JSON: generation, wall-clock time of the walk, the folder's device and inode), `listing-<g>`
(Arrow IPC, core/sources/listing.py LISTING, hidden files included), `journal-<g>` (a JSON
path per line). The state folder is the user's own (0700); any other is not used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .listing import LISTING, FolderListing

STATE_ENV = "EMBEDDINGS_WATCH_STATE"  # where journals live (default: a folder in the temp dir)
OVERFLOW = b"!"

log = logging.getLogger(__name__)


def state_root() -> Path:
    return Path(
        os.environ.get(STATE_ENV)
        or Path(tempfile.gettempdir()) / f"embeddings-platform-watch-{os.getuid()}"
    )


def _folder_state(root: str, create: bool = False) -> Path | None:
    """The journals of one watched folder; None when the state folder is not safely ours."""
    base = state_root()
    if create:
        base.mkdir(mode=0o700, exist_ok=True)
    try:
        info = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning("%s is not a private folder of this user: journals are not used", base)
        return None
    path = base / hashlib.sha256(os.fsencode(root)).hexdigest()[:32]
    if create:
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Session:
    """One watching process's journal of one folder (written by watch.py)."""

    def __init__(self, root: str):
        self.root = root
        state = _folder_state(root, create=True)
        if state is None:
            raise OSError(f"no private state folder for {root}")
        _remove_dead(state)
        # made under a hidden name and locked before it is visible: never taken for dead
        self.id = uuid.uuid4().hex
        hidden = state / f".{self.id}"
        hidden.mkdir(mode=0o700)
        self._lock_fd = os.open(hidden / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.dir = state / self.id
        os.rename(hidden, self.dir)
        self._mutex = threading.Lock()
        self._open: dict[int, int] = {}  # generation -> journal descriptor
        self._written: dict[int, set[str]] = {}
        self.generation = 0  # the newest begun
        self.published = 0  # the newest whose listing is saved

    def begin(self) -> int:
        """A new generation, before its walk begins: events from here on are in its journal."""
        with self._mutex:
            for gen in [g for g in self._open if g > self.published]:  # a walk that failed
                self._close(gen)
            self.generation += 1
            path = self.dir / f"journal-{self.generation}"
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._open[self.generation] = os.open(path, flags, 0o600)
            self._written[self.generation] = set()
            return self.generation

    def record(self, rel: str) -> None:
        """A path below the folder that an event named (every open generation's journal)."""
        line = (json.dumps(rel) + "\n").encode()
        with self._mutex:
            for gen, fd in self._open.items():
                if rel not in self._written[gen]:
                    self._written[gen].add(rel)
                    os.write(fd, line)

    def overflow(self) -> None:
        """Events were lost: no open generation is trusted; the next signature walks."""
        with self._mutex:
            for fd in self._open.values():
                os.write(fd, OVERFLOW + b"\n")

    def publish(
        self, gen: int, listing: FolderListing, walked_at: float, watched: tuple[int, int]
    ) -> None:
        """The walk of `gen` is done: its listing is what a step starts from; older ones go.
        `watched`: the device and inode of the folder the events come from."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, LISTING) as writer:
            writer.write_table(listing.table)
        _write_atomic(self.dir / f"listing-{gen}", sink.getvalue().to_pybytes())
        current = {"generation": gen, "walked_at": walked_at, "root": list(watched)}
        with self._mutex:
            if gen != self.generation:  # another walk began meanwhile: it publishes instead
                return
            _write_atomic(self.dir / "current", json.dumps(current).encode())
            self.published = gen
            for old in [g for g in self._open if g < gen]:
                self._close(old)

    def _close(self, gen: int) -> None:
        os.close(self._open.pop(gen))
        self._written.pop(gen, None)
        for name in (f"journal-{gen}", f"listing-{gen}"):
            (self.dir / name).unlink(missing_ok=True)

    def close(self) -> None:
        with self._mutex:
            for gen in list(self._open):
                self._close(gen)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)


def _alive(session: Path) -> bool:
    """Is the session's process still watching? It holds an exclusive lock on `lock`."""
    try:
        fd = os.open(session / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove_dead(state: Path) -> None:
    for session in state.iterdir():
        if not session.name.startswith(".") and not _alive(session):
            shutil.rmtree(session, ignore_errors=True)


@dataclass(frozen=True)
class Generation:
    """A trusted walk of a watched folder and the paths journaled since it began."""

    tag: str  # "<session>:<generation>": a snapshot built on it says so (journaled.py)
    walked_at: float
    table: pa.Table  # the walk's listing (LISTING), hidden files included
    rels: frozenset[str]


def current_generation(root: str, max_age: float) -> Generation | None:
    """The newest trusted generation of any process watching the folder; None: walk."""
    state = _folder_state(root)
    if state is None or not state.is_dir():
        return None
    found = [
        generation
        for session in state.iterdir()
        if not session.name.startswith(".")
        and (generation := _generation(session, root, max_age)) is not None
    ]
    return max(found, key=lambda g: g.walked_at) if found else None


def _generation(session: Path, root: str, max_age: float) -> Generation | None:
    """A session's current generation, if it is trusted (module docstring)."""
    try:
        current = json.loads((session / "current").read_bytes())
        gen = int(current["generation"])
        info = os.stat(root)
        if current["root"] != [info.st_dev, info.st_ino]:
            return None  # the folder was replaced since the walk
        if not 0 <= time.time() - float(current["walked_at"]) < max_age:
            return None
        with pa.memory_map(str(session / f"listing-{gen}")) as source:
            table = pa.ipc.open_file(source).read_all()
        lines = (session / f"journal-{gen}").read_bytes().split(b"\n")[:-1]  # whole lines
        rels = {json.loads(line) for line in lines if line != OVERFLOW}
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None  # rotated away while read, or not written in full: not trusted
    if OVERFLOW in lines or not table.schema.equals(LISTING) or not _alive(session):
        return None  # alive after the journal was read: it missed nothing before that
    if not all(isinstance(rel, str) and _relative(rel) for rel in rels):
        return None  # only a path below the folder is ever journaled
    return Generation(f"{session.name}:{gen}", float(current["walked_at"]), table, frozenset(rels))


def _relative(rel: str) -> bool:
    parts = rel.split("/")
    return "\0" not in rel and all(p not in ("", ".", "..") for p in parts)
