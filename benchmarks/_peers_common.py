"""What every side of bench_peers.py shares: the documents, our chunker, one counting embedder,
the change (edits and deletions) and how stale vectors are counted.

Every side reads the same SciFact copy through our `read_source` (the same document texts),
cuts it with our token-window chunker where its own splitter would run, and embeds through one
`CountingEmbedder`, so "texts embedded" is counted the same way for all of them.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from embeddings_platform.core.chunking import chunk_document
from embeddings_platform.core.documents import read_source
from embeddings_platform.core.models import chunk_window, load_tokenizer


class CountingEmbedder:
    """Our embedder with a count of the texts each side asks it to embed (batches and calls
    are each side's own; the count of texts is what is compared)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.texts = 0

    def __getattr__(self, name):  # dimension, tokenizer: ours reads them
        return getattr(self.embedder, name)

    def embed(self, texts):
        self.texts += len(texts)
        return self.embedder.embed(list(texts))


@dataclass(frozen=True)
class SourceDoc:
    doc_id: str
    text: str


class Chunker:
    """Our token-window chunker (the model's tokenizer, its window and overlap): the splitter
    every peer is given, so all sides embed the same chunk texts."""

    def __init__(self, model):
        self.tokenizer = load_tokenizer(model)
        self.window = chunk_window(model)
        self.overlap = model.chunking.overlap

    def texts(self, doc_id: str, text: str) -> list[str]:
        chunks = chunk_document(doc_id, text, self.tokenizer, self.window, self.overlap, "peers")
        return [c.text for c in chunks]


def read_documents(source) -> list[SourceDoc]:
    """The source's documents as our pipeline reads them (validated text, BEIR title + body)."""
    docs, rejected = read_source(source)
    if rejected:  # every side must see the same documents: none may be set aside silently
        raise ValueError(f"{len(rejected)} SciFact documents rejected: {rejected[:3]}")
    return [SourceDoc(d.doc_id, d.text) for d in docs]


def delete_documents(corpus: Path, count: int, keep: set[str], seed: int = 11) -> list[str]:
    """Remove `count` documents (none of `keep`) from a SciFact working copy; returns their ids."""
    path = corpus / "corpus.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    candidates = [i for i, r in enumerate(rows) if str(r["_id"]) not in keep]
    gone = set(random.Random(seed).sample(candidates, count))
    path.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i not in gone))
    return [str(rows[i]["_id"]) for i in sorted(gone)]


def vector_census(stored_texts: list[str], current: Counter) -> dict:
    """Stale = a stored vector whose text is no chunk of the source any more; missing = a current
    chunk text with no vector; duplicates = more vectors of one text than the source has chunks."""
    stored = Counter(stored_texts)
    return {
        "vectors": len(stored_texts),
        "stale_vectors": sum(n for t, n in stored.items() if t not in current),
        "missing_chunks": sum(1 for t in current if t not in stored),
        "duplicate_vectors": sum(max(0, n - current[t]) for t, n in stored.items() if t in current),
    }


def current_chunks(docs: list[SourceDoc], chunker: Chunker) -> Counter:
    return Counter(t for d in docs for t in chunker.texts(d.doc_id, d.text))


def load_average() -> float:
    return round(os.getloadavg()[0], 2)
