"""Validation and reading: bad documents are quarantined with a reason, good ones pass."""

import json

from embeddings_platform.core.config import SourceConfig
from embeddings_platform.core.documents import Document, RawDocument, Rejected, read_source, validate


def test_html_is_stripped_and_entities_unescaped():
    doc = validate(RawDocument("t.html", b"<p>Fish &amp; chips</p><script>x=1</script>", is_html=True))
    assert isinstance(doc, Document)
    assert doc.text.strip() == "Fish & chips"


def test_bad_documents_get_reasons():
    cases = {
        "empty": (b"   \n\t", "empty"),
        "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "undecodable"),
        "latin1": ("caf\xe9 cr\xe8me".encode("latin-1"), "undecodable"),
        "controls": ("\x01\x02\x03\x04\x05\x06\x07\x08abc".encode(), "unprintable"),
    }
    for doc_id, (content, reason) in cases.items():
        result = validate(RawDocument(doc_id, content))
        assert isinstance(result, Rejected), doc_id
        assert result.reason.startswith(reason), (doc_id, result.reason)


def test_utf16_with_bom_decodes():
    doc = validate(RawDocument("u16", "hello world".encode("utf-16")))
    assert isinstance(doc, Document) and doc.text == "hello world"


def test_folder_source_quarantines_and_keeps_good(tmp_path):
    (tmp_path / "good.md").write_text("Useful words here.")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "ignored.png").write_bytes(b"\x89PNG")
    docs, rejected = read_source(SourceConfig("s", "folder", tmp_path))
    assert [d.doc_id for d in docs] == ["good.md"]
    assert [r.doc_id for r in rejected] == ["bad.txt"]


def test_folder_source_refuses_symlinks_out_of_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("outside text")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    docs, rejected = read_source(SourceConfig("s", "folder", root))
    assert docs == []
    assert rejected[0].doc_id == "link.txt" and "escapes source root" in rejected[0].reason


def test_jsonl_and_beir_sources(tmp_path):
    lines = [
        json.dumps({"id": "a", "title": "T", "text": "alpha text", "lang": "en"}),
        "{not json",
        json.dumps({"text": "no id"}),
        json.dumps({"id": "a", "text": "duplicate"}),
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines))
    docs, rejected = read_source(SourceConfig("j", "jsonl", path))
    assert [(d.doc_id, d.text, d.metadata) for d in docs] == [("a", "T\n\nalpha text", {"lang": "en"})]
    assert sorted(r.reason.split(":")[0] for r in rejected) == [
        "duplicate doc id", "line 2 is not valid JSON", "missing 'id'"]

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "", "text": "beir body"}) + "\n")
    docs, _ = read_source(SourceConfig("b", "beir", beir))
    assert [(d.doc_id, d.text) for d in docs] == [("d1", "beir body")]


def test_pydoc_topics_is_real_bundled_text():
    docs, rejected = read_source(SourceConfig("p", "pydoc_topics"))
    ids = {d.doc_id for d in docs}
    assert {"try", "with", "lambda"} <= ids and not rejected
