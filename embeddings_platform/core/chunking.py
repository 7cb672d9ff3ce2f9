"""Token-window chunking with deterministic, content-addressed chunk ids."""

from __future__ import annotations

from dataclasses import dataclass

from .documents import overlong_runs, within_runs
from .ids import digest
from .models import Tokenizer


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    chunk_index: int
    text: str

    @property
    def chunk_sha256(self) -> str:
        return digest(self.text, length=64)


def make_chunk_id(doc_id: str, strategy_id: str, text: str) -> str:
    """hash(doc_id, strategy, text): equal input gives an equal id, so reruns embed nothing."""
    return digest(doc_id, strategy_id, text, length=32)


def chunk_document(
    doc_id: str, text: str, tokenizer: Tokenizer, window: int, overlap: int, strategy_id: str
) -> list[Chunk]:
    """Split text into windows of `window` tokens overlapping by `overlap` tokens.

    Chunk text is a slice of the original text (token offsets), so what is shown to a
    user is exactly what was embedded. Identical windows within one document share an id
    and are kept once. A window lying wholly inside over-long whitespace-free runs (see
    documents.MAX_RUN_CHARS) has no usable token and is not made into a chunk.
    """
    if overlap >= window:
        raise ValueError(f"overlap {overlap} must be smaller than window {window}")
    spans = tokenizer.token_spans(text)
    if not spans:
        return []
    if any(ch.isalnum() for ch in text[spans[-1][1] :]):
        # A tokenizer that truncates would silently drop the rest of the document.
        raise ValueError(
            f"tokenizer stopped at character {spans[-1][1]} of {len(text)} in {doc_id!r}: "
            "it truncates; chunking needs every token of the document"
        )
    runs = overlong_runs(text)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    step = window - overlap
    start = 0
    while True:
        end = min(start + window, len(spans))
        piece = text[spans[start][0] : spans[end - 1][1]]
        chunk_id = make_chunk_id(doc_id, strategy_id, piece)
        if chunk_id not in seen and not within_runs(text, runs, spans[start][0], spans[end - 1][1]):
            seen.add(chunk_id)
            chunks.append(Chunk(chunk_id, doc_id, len(chunks), piece))
        if end >= len(spans):
            return chunks
        start += step
