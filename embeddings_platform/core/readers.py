"""Reading a source into raw documents, with every read bounded.

One entry that cannot be read (too large, a broken link, a FIFO, a line that is not JSON)
becomes a RawDocument carrying its rejection, so it reaches quarantine and the rest of the
source goes on. A source that cannot be read at all (its path is missing, of the wrong type
or unreadable) raises SourceError naming the source and the setting to fix: that is an
operator's mistake, not a bad document.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .config import DocumentsConfig, SourceConfig, SourceError, check_source_path

FOLDER_SUFFIXES = (".md", ".txt", ".rst", ".html", ".htm")
_SKIP_CHUNK = 1024 * 1024  # how much of an over-long JSONL line is read at a time to skip it
_FILE_TYPES = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
               (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
# O_NONBLOCK: opening a FIFO that replaced a file after it was listed must not hang the read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class RawDocument:
    """What a reader yields before validation: bytes or text plus metadata, or why it could not."""

    doc_id: str
    content: bytes | str
    metadata: dict[str, Any] = field(default_factory=dict)
    is_html: bool = False
    rejection: str = ""  # set when the reader could not read this entry at all
    sample: str = ""


class _Unusable(Exception):
    """One entry of a source cannot be read; the message is its quarantine reason."""


def _rejected(doc_id: str, reason: str, sample: str = "") -> RawDocument:
    return RawDocument(doc_id, b"", rejection=reason, sample=sample)


def _source_error(source: SourceConfig, path: Path, problem: str) -> SourceError:
    return SourceError(f"source {source.name!r} (kind {source.kind}): {path} {problem}; "
                       f"fix the source's path in the registry")


def _clean_id(name: str) -> str:
    """A file name that is not UTF-8 cannot be stored as an id: escape its bytes visibly."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# --- folders -----------------------------------------------------------------------------


def _folder_root(source: SourceConfig) -> Path:
    root = Path(os.path.realpath(source.path))
    if not root.exists():
        raise _source_error(source, source.path, "does not exist")
    if not root.is_dir():
        raise _source_error(source, source.path, "is not a folder (a folder source needs one)")
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        raise _source_error(source, source.path, f"cannot be listed: {exc.strerror}") from exc
    return root


def _entries(root: Path, include_hidden: bool) -> list[tuple[Path, str]]:
    """Every file-like entry under root, sorted, with the error of each folder not listable.

    Links to folders are listed, not followed (rglob did not follow them either); hidden
    names (a leading '.') are skipped with their whole subtree unless include_hidden.
    """
    errors: list[OSError] = []
    found: list[tuple[Path, str]] = []
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        if not include_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files = [f for f in files if not f.startswith(".")]
        base = Path(folder)
        found.extend((base / name, "") for name in dirs if (base / name).is_symlink())
        found.extend((base / name, "") for name in files)
    found.extend((Path(e.filename), f"unreadable: folder cannot be listed: {e.strerror}")
                 for e in errors)
    return sorted(found)


def _target(path: Path, root: Path) -> os.stat_result | None:
    """The stat of what `path` names, following links inside root; None for a folder link."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Unusable(f"symlink loop: links to {os.readlink(path)}, which leads back to "
                            "itself") from exc
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise _Unusable(f"dangling symlink: links to {os.readlink(path)}, "
                            "which does not exist") from exc
        raise _Unusable(f"unreadable: {exc.strerror}") from exc
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise _Unusable(f"escapes source root: links to {real}")
    if stat.S_ISDIR(info.st_mode):
        return None  # a link to a folder inside root: its files are read where they live
    for is_kind, kind in _FILE_TYPES:
        if is_kind(info.st_mode):
            raise _Unusable(f"not a regular file: {kind}")
    return info


def read_bounded(path: Path, limit: int) -> bytes:
    """At most limit bytes of a regular file: the size is checked before reading, and the read
    stops one byte past the limit in case the file grew or its size lied."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _Unusable(f"unreadable: {exc.strerror}") from exc
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Unusable("not a regular file: it changed while the source was read")
        if info.st_size > limit:
            raise _Unusable(f"too large: {info.st_size} bytes > limit {limit}")
        want = min(info.st_size, limit) + 1  # a buffer of the file's size, not of the limit
        content = handle.read(want)
        if len(content) == want <= limit:  # more than stat said: read on, to the limit at most
            content += handle.read(limit + 1 - want)
    if len(content) > limit:
        raise _Unusable(f"too large: more than {limit} bytes (the file grew while it was read)")
    return content


def read_folder(source: SourceConfig, documents: DocumentsConfig) -> Iterator[RawDocument]:
    root = _folder_root(source)
    for path, problem in _entries(root, documents.include_hidden):
        doc_id = _clean_id(path.relative_to(root).as_posix())
        if problem:
            yield _rejected(doc_id, problem)
            continue
        try:
            if _target(path, root) is None or path.suffix.lower() not in FOLDER_SUFFIXES:
                continue  # a folder link, or not a document type this source reads
            if doc_id != path.relative_to(root).as_posix():
                raise _Unusable("bad file name: not valid UTF-8; rename the file")
            content = read_bounded(path, documents.max_document_bytes)
        except _Unusable as exc:
            yield _rejected(doc_id, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the folder
            yield _rejected(doc_id, f"unreadable: {type(exc).__name__}: {exc}")
            continue
        is_html = path.suffix.lower() in (".html", ".htm")
        yield RawDocument(doc_id, content, {"path": doc_id}, is_html=is_html)


# --- JSONL -------------------------------------------------------------------------------


def _open_file(source: SourceConfig, path: Path) -> BinaryIO:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise _source_error(source, path, "does not exist") from exc
    except OSError as exc:
        raise _source_error(source, path, f"cannot be opened: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise _source_error(source, path, f"is {kind} (a {source.kind} source reads a JSONL file)")
    return open(fd, "rb")


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) with None for a line over limit bytes, which is skipped unread."""
    line_no = 0
    while line := handle.readline(limit + 1):
        line_no += 1
        if len(line) <= limit or line.endswith(b"\n"):
            yield line_no, line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(_SKIP_CHUNK)
        yield line_no, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON (RFC 8259)")


def _parse_line(line_no: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _Unusable(f"too deeply nested: line {line_no} nests JSON deeper than the parser "
                        "can follow") from exc
    except ValueError as exc:  # also UnicodeDecodeError and the int-digits limit
        raise _Unusable(f"line {line_no} is not valid JSON: {str(exc).split(';')[0]}") from exc
    if not isinstance(record, dict):
        raise _Unusable(f"line {line_no} is not a JSON object")
    return record


def _record(record: dict[str, Any], id_field: str, text_fields: tuple[str, ...]) -> RawDocument:
    doc_id = record.get(id_field)
    if doc_id is None or doc_id == "":
        raise _Unusable(f"missing {id_field!r}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise _Unusable(f"bad id: {id_field!r} must be a string or a whole number, "
                        f"not {type(doc_id).__name__}")
    doc_id = str(doc_id)
    parts = [str(record[f]) for f in text_fields if record.get(f)]
    metadata = {
        k: v for k, v in record.items()
        if k not in (id_field, *text_fields) and isinstance(v, (str, int, float, bool))
    }
    try:  # a lone surrogate (an invalid \ud800 escape) cannot be stored
        json.dumps([doc_id, metadata], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Unusable("undecodable: id or metadata holds a lone surrogate "
                        "(an invalid \\uD800-\\uDFFF escape)") from exc
    return RawDocument(doc_id, "\n\n".join(parts), metadata)


def read_jsonl(source: SourceConfig, path: Path, id_field: str, text_fields: tuple[str, ...],
               documents: DocumentsConfig) -> Iterator[RawDocument]:
    with _open_file(source, path) as handle:
        for line_no, line in _lines(handle, documents.max_document_bytes):
            try:
                if line is None:
                    raise _Unusable(f"too large: line {line_no} is longer than "
                                    f"{documents.max_document_bytes} bytes")
                if not line.strip():
                    continue
                yield _record(_parse_line(line_no, line), id_field, text_fields)
            except _Unusable as exc:
                yield _rejected(f"line-{line_no}", str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the file
                yield _rejected(f"line-{line_no}", f"unreadable: line {line_no}: "
                                f"{type(exc).__name__}: {exc}")


# --- dispatch ----------------------------------------------------------------------------


def _read_pydoc_topics(_: SourceConfig) -> Iterator[RawDocument]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield RawDocument(name, topics[name], {"topic": name})


def read_raw(source: SourceConfig, documents: DocumentsConfig = DocumentsConfig()
             ) -> Iterator[RawDocument]:
    """Yield every document of a source, unvalidated, in a stable order."""
    check_source_path(source)  # read as empty, a missing path would unserve every document
    if source.kind == "folder":
        yield from read_folder(source, documents)
    elif source.kind == "jsonl":
        text_fields = tuple(source.options.get("text_fields", ("title", "text")))
        id_field = source.options.get("id_field", "id")
        yield from read_jsonl(source, source.path, id_field, text_fields, documents)
    elif source.kind == "beir":
        yield from read_jsonl(source, source.path / "corpus.jsonl", "_id", ("title", "text"),
                              documents)
    elif source.kind == "pydoc_topics":
        yield from _read_pydoc_topics(source)
    else:  # config validation makes this unreachable for loaded configs
        raise ValueError(f"unknown source kind {source.kind!r}")
