"""Token windows: size, overlap, exact text slices and deterministic ids."""

import pytest

from embeddings_platform.core.chunking import chunk_document, make_chunk_id
from embeddings_platform.core.models import WordTokenizer


def _words(first: int, last: int) -> str:
    return " ".join(f"w{i}" for i in range(first, last + 1))


def test_windows_overlap_and_slice_original_text():
    text = _words(0, 24)
    chunks = chunk_document("d", text, WordTokenizer(), window=10, overlap=2, strategy_id="s")
    # windows of 10 tokens start every 8 (2 overlap); the last one ends with the text
    assert [(c.doc_id, c.chunk_index, c.text) for c in chunks] == [
        ("d", 0, _words(0, 9)),
        ("d", 1, _words(8, 17)),
        ("d", 2, _words(16, 24)),
    ]
    assert [c.chunk_id for c in chunks] == [make_chunk_id("d", "s", c.text) for c in chunks]


def test_chunk_ids_are_deterministic_and_depend_on_doc_strategy_and_text():
    a = chunk_document("d", "one two three", WordTokenizer(), 5, 1, "s1")
    b = chunk_document("d", "one two three", WordTokenizer(), 5, 1, "s1")
    # stored ids: a changed formula would re-embed every chunk of every table
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert [c.chunk_id for c in a] == ["1fbb3584c85b5f6fe8c17466b4956b1a"]
    assert a[0].chunk_sha256 == "6899ee404683a14e8c2a03149860df25d67d34d9cd4dae7350cbe91e4b3976be"
    ids = [make_chunk_id(*p) for p in [("d", "s1", "x"), ("d", "s2", "x"), ("e", "s1", "x")]]
    assert ids == [
        "5fcb652602eaba4b87b3f5a6c3c0944c",
        "2a18e3715e3b2d390e23db91dc7aa538",
        "8ba8bf73790c465224fe3a43ada9719f",
    ]


def test_repeated_windows_in_one_document_are_kept_once():
    chunks = chunk_document(
        "d", "a b a b a b a b", WordTokenizer(), window=2, overlap=0, strategy_id="s"
    )
    assert [c.text for c in chunks] == ["a b"]


class _TruncatingTokenizer(WordTokenizer):
    def token_spans(self, text):
        return super().token_spans(text)[:5]


def test_a_truncating_tokenizer_is_refused_instead_of_dropping_the_documents_tail():
    text = " ".join(f"w{i}" for i in range(20))
    with pytest.raises(ValueError, match="truncates"):
        chunk_document("d", text, _TruncatingTokenizer(), window=4, overlap=1, strategy_id="s")
    # trailing punctuation after the last token is not text lost
    kept = chunk_document("d", "one two.", _TruncatingTokenizer(), 4, 1, "s")
    assert [c.text for c in kept] == ["one two."]


def test_a_window_wholly_inside_an_overlong_run_is_not_a_chunk():
    """A tokenizer may split a blob into many tokens; windows of nothing but blob embed nothing."""
    text = "alpha beta " + "x+" * 600 + " gamma delta"  # a 1,200-character whitespace-free run
    chunks = chunk_document("d", text, WordTokenizer(), window=4, overlap=0, strategy_id="s")
    assert [(c.chunk_index, c.text) for c in chunks] == [
        (0, "alpha beta x+"),
        (1, "x+ gamma delta"),
    ]
    short = "alpha beta " + "x+" * 400 + " gamma delta"  # 800 characters: still words
    assert len(chunk_document("d", short, WordTokenizer(), 4, 0, "s")) == 3
