"""Reading sources into documents, and deciding which documents are fit to embed.

A document that cannot be decoded or has no usable text goes to quarantine with a reason;
it never stops the rest of the batch and is never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

from .config import SourceConfig, check_source_path
from .sharding import parse_key as parse_shard_key

FOLDER_SUFFIXES = (".md", ".txt", ".rst", ".html", ".htm")
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MIN_PRINTABLE_RATIO = 0.85


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_sha256(self) -> str:
        return sha256_text(self.text)


@dataclass(frozen=True)
class Rejected:
    """A document set aside, with the reason an operator can act on."""

    doc_id: str
    reason: str
    sample: str = ""


@dataclass(frozen=True)
class RawDocument:
    """What a reader yields before validation: bytes or text plus metadata."""

    doc_id: str
    content: bytes | str
    metadata: dict[str, Any] = field(default_factory=dict)
    is_html: bool = False


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _TextExtractor(HTMLParser):
    """The visible text of a page, parsed as browsers do: a bare `<` or `&` in prose stays text."""

    SKIP = {"script", "style", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skipping += 1
        self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page with entities resolved (an unknown `&name;` stays literal)."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def _decode(content: bytes) -> str:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    if content.startswith(b"\xef\xbb\xbf"):
        return content[3:].decode("utf-8")
    if b"\x00" in content:
        raise ValueError("contains NUL bytes: binary or UTF-16 without a byte-order mark")
    return content.decode("utf-8")


def validate(raw: RawDocument) -> Document | Rejected:
    """Decode and check one document; returns the clean Document or the reason it is not."""
    content = raw.content
    size = len(content.encode("utf-8") if isinstance(content, str) else content)
    if size > MAX_DOCUMENT_BYTES:
        return Rejected(raw.doc_id, f"too large: {size} bytes > limit {MAX_DOCUMENT_BYTES}")
    if isinstance(content, bytes):
        try:
            text = _decode(content)
        except (UnicodeDecodeError, ValueError) as exc:
            return Rejected(raw.doc_id, f"undecodable: {exc}", repr(content[:80]))
    else:
        text = content
    if raw.is_html:
        text = html_to_text(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")
    stripped = text.strip()
    if not stripped:
        return Rejected(raw.doc_id, "empty: no text after decoding")
    lost = stripped.count("\ufffd")
    if lost:
        # U+FFFD is what a lossy decode upstream, or an invalid entity like &#xD800;, leaves behind.
        return Rejected(
            raw.doc_id,
            f"lossy text: {lost} replacement characters (U+FFFD) from a wrong encoding upstream "
            "or invalid character references; fix the source text",
            repr(stripped[max(0, stripped.index("\ufffd") - 40):][:80]),
        )
    printable = sum(1 for ch in stripped if ch.isprintable() or ch in "\n\t")
    ratio = printable / len(stripped)
    if ratio < MIN_PRINTABLE_RATIO:
        return Rejected(
            raw.doc_id,
            f"unprintable: only {ratio:.0%} printable characters (< {MIN_PRINTABLE_RATIO:.0%})",
            repr(stripped[:80]),
        )
    return Document(raw.doc_id, text, dict(raw.metadata))


# --- readers: one per source kind -------------------------------------------------------


def _read_folder(source: SourceConfig) -> Iterator[RawDocument]:
    root = source.path.resolve()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in FOLDER_SUFFIXES:
            continue
        rel = path.relative_to(root).as_posix()
        real = path.resolve()
        if not real.is_relative_to(root):
            yield RawDocument(rel, b"", {"_reject": f"escapes source root: links to {real}"})
            continue
        yield RawDocument(
            rel,
            real.read_bytes(),
            {"path": rel},
            is_html=path.suffix.lower() in (".html", ".htm"),
        )


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield line_no, f"line {line_no} is not valid JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield line_no, f"line {line_no} is not a JSON object"
                continue
            yield line_no, record


def _read_jsonl_file(path: Path, id_field: str, text_fields: tuple[str, ...]) -> Iterator[RawDocument]:
    for line_no, record in _jsonl_records(path):
        if isinstance(record, str):
            yield RawDocument(f"line-{line_no}", b"", {"_reject": record})
            continue
        doc_id = record.get(id_field)
        if doc_id is None or str(doc_id) == "":
            yield RawDocument(f"line-{line_no}", b"", {"_reject": f"missing {id_field!r}"})
            continue
        parts = [str(record[f]) for f in text_fields if record.get(f)]
        metadata = {
            k: v for k, v in record.items()
            if k not in (id_field, *text_fields) and isinstance(v, (str, int, float, bool))
        }
        yield RawDocument(str(doc_id), "\n\n".join(parts), metadata)


def _read_pydoc_topics(_: SourceConfig) -> Iterator[RawDocument]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield RawDocument(name, topics[name], {"topic": name})


def read_raw(source: SourceConfig) -> Iterator[RawDocument]:
    """Yield every document of a source, unvalidated, in a stable order.

    A missing path raises SourceError: read as empty it would unserve every document.
    """
    check_source_path(source)
    if source.kind == "folder":
        yield from _read_folder(source)
    elif source.kind == "jsonl":
        text_fields = tuple(source.options.get("text_fields", ("title", "text")))
        yield from _read_jsonl_file(source.path, source.options.get("id_field", "id"), text_fields)
    elif source.kind == "beir":
        yield from _read_jsonl_file(source.path / "corpus.jsonl", "_id", ("title", "text"))
    elif source.kind == "pydoc_topics":
        yield from _read_pydoc_topics(source)
    else:  # config validation makes this unreachable for loaded configs
        raise ValueError(f"unknown source kind {source.kind!r}")


def read_source(source: SourceConfig) -> tuple[list[Document], list[Rejected]]:
    """Read and validate a whole source; duplicates of a doc id are quarantined, not merged."""
    good: dict[str, Document] = {}
    rejected: list[Rejected] = []
    shard = parse_shard_key(source.name)  # a shard reads only its own documents
    for raw in read_raw(source):
        if not shard.holds(raw.doc_id):
            continue
        if "_reject" in raw.metadata:
            rejected.append(Rejected(raw.doc_id, raw.metadata["_reject"]))
            continue
        result = validate(raw)
        if isinstance(result, Rejected):
            rejected.append(result)
        elif result.doc_id in good:
            rejected.append(Rejected(result.doc_id, "duplicate doc id: first occurrence kept"))
        else:
            good[result.doc_id] = result
    return list(good.values()), rejected
