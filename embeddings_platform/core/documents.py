"""Deciding which documents are fit to embed; reading them is each source kind's (core/sources/).

A document that cannot be read, parsed or decoded, or has no usable text, goes to quarantine
with a reason; it never stops the rest of the batch and is never silently dropped.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Iterable

from .ids import digest
from .registry import SourceError  # noqa: F401 - raised by read_source
from .settings import DocumentsConfig
from .sharding import parse_key as parse_shard_key
from .sources import RawDocument, SourceSettings

MAX_DOCUMENT_BYTES = DocumentsConfig().max_document_bytes
MIN_PRINTABLE_RATIO = 0.85
# A whitespace-free run longer than this is one opaque "word" (base64, a blob, a 2 MB line) that
# tokenizers turn into a single unknown token, unless it is mostly East Asian wide characters
# (Chinese and Japanese prose are written without spaces; each character is a token there).
MAX_RUN_CHARS = 1000
_LONG_RUN = re.compile(r"(?<!\S)\S{%d,}" % (MAX_RUN_CHARS + 1))  # lookbehind: linear time
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    entry: str = field(default="", compare=False)  # what it was read from (a file, a row)

    @property
    def content_sha256(self) -> str:
        return sha256_text(self.text)

    @property
    def lossy(self) -> bool:
        """Kept although it holds U+FFFD (below documents.max_replacement_fraction)."""
        return "\ufffd" in self.text


@dataclass(frozen=True)
class Rejected:
    """A document set aside, with the reason an operator can act on."""

    doc_id: str
    reason: str
    sample: str = ""
    entry: str = field(default="", compare=False)


def sha256_text(text: str) -> str:
    return digest(text, length=64)


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


class HtmlError(ValueError):
    """html.parser gave up on the markup (it raises AssertionError on `<![foo[`, for one)."""


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page with entities resolved (an unknown `&name;` stays literal)."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, it is this page's fault
        line, column = parser.getpos()
        raise HtmlError(f"line {line}, column {column}: {type(exc).__name__}: {exc}") from exc
    return "".join(parser.parts)


def _decode(content: bytes) -> str:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    if content.startswith(b"\xef\xbb\xbf"):
        return content[3:].decode("utf-8")
    if b"\x00" in content:
        raise ValueError("contains NUL bytes: binary or UTF-16 without a byte-order mark")
    return content.decode("utf-8")


def _text(raw: RawDocument, limit: int) -> str | Rejected:
    """The document's text (HTML reduced to what a browser shows), or why there is none."""
    content = raw.content
    if isinstance(content, str):
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return Rejected(
                raw.doc_id,
                f"undecodable: a lone surrogate at character {exc.start} "
                "(an invalid \\uD800-\\uDFFF escape upstream)",
                repr(content[max(0, exc.start - 40) : exc.start + 40]),
            )
    else:
        size = len(content)
    if size > limit:
        return Rejected(raw.doc_id, f"too large: {size} bytes > limit {limit}")
    if isinstance(content, bytes):
        try:
            content = _decode(content)
        except (UnicodeDecodeError, ValueError) as exc:
            return Rejected(raw.doc_id, f"undecodable: {exc}", repr(content[:80]))
    if not raw.is_html:
        return content
    try:
        return html_to_text(content)
    except HtmlError as exc:
        return Rejected(raw.doc_id, f"parser error: HTML {exc}", repr(content[:80]))


def _lossy(text: str, max_fraction: float) -> tuple[str, str] | None:
    """U+FFFD is what a lossy decode upstream, or an invalid entity like &#xD800;, leaves behind.

    A few in a long text (a stray byte in one name) lose little: the document is kept and
    counted as lossy; a meaningful share means the text itself is damaged.
    """
    lost = text.count("\ufffd")
    if lost <= max_fraction * len(text):
        return None
    return (
        f"lossy text: {lost} replacement characters (U+FFFD), {lost / len(text):.2%} of the "
        f"text > documents.max_replacement_fraction {max_fraction:.2%}; from a wrong encoding "
        "upstream or invalid character references; fix the source text",
        repr(text[max(0, text.index("\ufffd") - 40) :][:80]),
    )


def _unprintable(text: str) -> tuple[str, str] | None:
    if text.replace("\n", "").replace("\t", "").isprintable():
        return None  # the common case, checked in C: a refresh re-validates every document read
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    ratio = printable / len(text)
    if ratio >= MIN_PRINTABLE_RATIO:
        return None
    return (
        f"unprintable: only {ratio:.0%} printable characters (< {MIN_PRINTABLE_RATIO:.0%})",
        repr(text[:80]),
    )


def _mostly_wide(run: str) -> bool:
    """Mostly East Asian wide characters (CJK, kana, hangul): prose that needs no spaces."""
    counts = Counter(run)
    wide = sum(n for ch, n in counts.items() if unicodedata.east_asian_width(ch) in ("W", "F"))
    return 2 * wide >= len(run)


def overlong_runs(text: str) -> list[tuple[int, int]]:
    """Spans of the whitespace-free runs longer than MAX_RUN_CHARS that are not wide-script
    prose: no tokenizer reads them as words, so they embed as one unknown token."""
    return [m.span() for m in _LONG_RUN.finditer(text) if not _mostly_wide(m.group())]


def within_runs(text: str, runs: list[tuple[int, int]], start: int, end: int) -> bool:
    """True if every non-space character of text[start:end] sits in one of the sorted runs."""
    if not runs:
        return False
    covered = 0
    i = bisect.bisect_right(runs, start, key=lambda run: run[1])  # first run ending after start
    while i < len(runs) and runs[i][0] < end:
        covered += min(end, runs[i][1]) - max(start, runs[i][0])
        i += 1
    return covered > 0 and covered == len(_SPACE.sub("", text[start:end]))


def _no_usable_tokens(text: str) -> tuple[str, str] | None:
    """A blob is not text: quarantined when over-long runs hold more than half the visible
    characters, or when no letter or digit is left outside them."""
    runs = overlong_runs(text)
    rest = text
    if runs:
        in_runs = sum(e - s for s, e in runs)
        visible = len(_SPACE.sub("", text))
        if 2 * in_runs > visible:
            return (
                f"no usable tokens: {in_runs / visible:.0%} of the text is in whitespace-free "
                f"runs longer than {MAX_RUN_CHARS} characters (a blob, not words)",
                repr(text[runs[0][0] :][:80]),
            )
        bounds = [0, *(i for span in runs for i in span), len(text)]
        rest = " ".join(text[a:b] for a, b in zip(bounds[::2], bounds[1::2]))
    if _LETTER_OR_DIGIT.search(rest):
        return None
    return "no usable tokens: no letter or digit in the text", repr(text[:80])


def validate(
    raw: RawDocument, documents: DocumentsConfig = DocumentsConfig()
) -> Document | Rejected:
    """Decode and check one document; returns the clean Document or the reason it is not."""
    if raw.rejection:
        return Rejected(raw.doc_id, raw.rejection, raw.sample, raw.entry)
    text = _text(raw, documents.max_document_bytes)
    if isinstance(text, Rejected):
        return text
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")
    stripped = text.strip()
    if not stripped:
        return Rejected(raw.doc_id, "empty: no text after decoding")
    problem = (
        _lossy(stripped, documents.max_replacement_fraction)
        or _unprintable(stripped)
        or _no_usable_tokens(stripped)
    )
    if problem:
        return Rejected(raw.doc_id, *problem, raw.entry)
    return Document(raw.doc_id, text, dict(raw.metadata), raw.entry)


def read_source(
    source: SourceSettings, documents: DocumentsConfig = DocumentsConfig()
) -> tuple[list[Document], list[Rejected]]:
    """Read and validate a whole source; duplicates of a doc id are quarantined, not merged.

    Raises SourceError when the source itself cannot be read (its kind's `check`).
    """
    source.check()  # read as empty, a missing path would unserve every document
    good, rejected = validate_all(source.name, source.read(documents), documents)
    return list(good.values()), rejected


def validate_all(
    partition: str, raws: Iterable[RawDocument], documents: DocumentsConfig
) -> tuple[dict[str, Document], list[Rejected]]:
    """Validate what a reader yielded: the documents by id (a shard keeps only its own) and
    the rejected ones, a second copy of a doc id among them. Every result keeps its entry."""
    good: dict[str, Document] = {}
    rejected: list[Rejected] = []
    shard = parse_shard_key(partition)  # a shard reads only its own documents
    for raw in raws:
        if not shard.holds(raw.doc_id):
            continue
        try:
            result = validate(raw, documents)
        except Exception as exc:  # noqa: BLE001 - one document's failure must not stop the read
            reason = f"unreadable: {type(exc).__name__}: {str(exc)[:300]}"
            result = Rejected(raw.doc_id, reason, entry=raw.entry)
        if isinstance(result, Rejected):
            rejected.append(result)
        elif result.doc_id in good:
            rejected.append(duplicate(result.doc_id, result.entry))
        else:
            good[result.doc_id] = result
    return good, rejected


def duplicate(doc_id: str, entry: str) -> Rejected:
    return Rejected(doc_id, "duplicate doc id: first occurrence kept", entry=entry)
