"""Token windows: size, overlap, exact text slices and deterministic ids."""

import pytest

from embeddings_platform.core.chunking import chunk_document, make_chunk_id
from embeddings_platform.core.models import WordTokenizer


def test_windows_overlap_and_slice_original_text():
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_document("d", text, WordTokenizer(), window=10, overlap=2, strategy_id="s")
    assert [c.text.split()[0] for c in chunks] == ["w0", "w8", "w16", "w24"][: len(chunks)]
    assert all(len(c.text.split()) <= 10 for c in chunks)
    assert chunks[0].text.split()[-2:] == chunks[1].text.split()[:2]  # 2 tokens of overlap
    assert chunks[-1].text.endswith("w24")
    assert all(c.text in text for c in chunks)


def test_chunk_ids_are_deterministic_and_depend_on_doc_strategy_and_text():
    a = chunk_document("d", "one two three", WordTokenizer(), 5, 1, "s1")
    b = chunk_document("d", "one two three", WordTokenizer(), 5, 1, "s1")
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert make_chunk_id("d", "s1", "x") != make_chunk_id("d", "s2", "x")
    assert make_chunk_id("d", "s1", "x") != make_chunk_id("e", "s1", "x")


def test_repeated_windows_in_one_document_are_kept_once():
    chunks = chunk_document("d", "a b a b a b a b", WordTokenizer(), window=2, overlap=0, strategy_id="s")
    assert [c.text for c in chunks] == ["a b"]


class _TruncatingTokenizer(WordTokenizer):
    def token_spans(self, text):
        return super().token_spans(text)[:5]


def test_a_truncating_tokenizer_is_refused_instead_of_dropping_the_documents_tail():
    text = " ".join(f"w{i}" for i in range(20))
    with pytest.raises(ValueError, match="truncates"):
        chunk_document("d", text, _TruncatingTokenizer(), window=4, overlap=1, strategy_id="s")
    # trailing punctuation after the last token is not text lost
    assert chunk_document("d", "one two.", _TruncatingTokenizer(), 4, 1, "s")[-1].text.startswith("one")


def test_a_window_wholly_inside_an_overlong_run_is_not_a_chunk():
    """A tokenizer may split a blob into many tokens; windows of nothing but blob embed nothing."""
    text = "alpha beta " + "x+" * 600 + " gamma delta"  # a 1,200-character whitespace-free run
    chunks = chunk_document("d", text, WordTokenizer(), window=4, overlap=0, strategy_id="s")
    assert [(c.chunk_index, c.text) for c in chunks] == [
        (0, "alpha beta x+"), (1, "x+ gamma delta")]
    short = "alpha beta " + "x+" * 400 + " gamma delta"  # 800 characters: still words
    assert len(chunk_document("d", short, WordTokenizer(), 4, 0, "s")) == 3
