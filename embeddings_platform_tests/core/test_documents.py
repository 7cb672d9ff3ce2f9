"""Validation and reading: bad documents are quarantined with a reason, good ones pass."""

import base64
import json
import os
import socket
import tracemalloc

import pytest

from embeddings_platform.core import documents as documents_module
from embeddings_platform.core.config import DocumentsConfig, source_from
from embeddings_platform.core.documents import (
    Document,
    RawDocument,
    Rejected,
    SourceError,
    read_source,
    validate,
)


def test_html_is_stripped_and_entities_unescaped():
    doc = validate(
        RawDocument("t.html", b"<p>Fish &amp; chips</p><script>x=1</script>", is_html=True)
    )
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


def test_printable_share_counts_line_breaks_and_tabs_but_no_other_control():
    """The whole-text fast path must agree with the per-character count at the 85% line."""
    lines = "col\tvalue\n" * 200  # line breaks and tabs are text
    assert isinstance(validate(RawDocument("table", lines.encode())), Document)
    for share, fits in ((0.10, True), (0.20, False)):
        bad = int(1000 * share)
        text = "word " * ((1000 - bad) // 5) + "\x0b\x0c\x1b" * (bad // 3) + "\nend"
        result = validate(RawDocument(f"vt{share}", text.encode()))
        assert isinstance(result, Document) is fits, (share, result)
        if not fits:
            assert result.reason.startswith("unprintable")


def test_utf16_with_bom_decodes():
    doc = validate(RawDocument("u16", "hello world".encode("utf-16")))
    assert isinstance(doc, Document) and doc.text == "hello world"


def test_folder_source_quarantines_and_keeps_good(tmp_path):
    (tmp_path / "good.md").write_text("Useful words here.")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "ignored.png").write_bytes(b"\x89PNG")
    docs, rejected = read_source(source_from(name="s", kind="folder", path=tmp_path))
    assert [d.doc_id for d in docs] == ["good.md"]
    assert [r.doc_id for r in rejected] == ["bad.txt"]


def test_folder_source_refuses_symlinks_out_of_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("outside text")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
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
    docs, rejected = read_source(source_from(name="j", kind="jsonl", path=path))
    assert [(d.doc_id, d.text, d.metadata) for d in docs] == [
        ("a", "T\n\nalpha text", {"lang": "en"})
    ]
    assert sorted(r.reason.split(":")[0] for r in rejected) == [
        "duplicate doc id",
        "line 2 is not valid JSON",
        "missing 'id'",
    ]

    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "", "text": "beir body"}) + "\n"
    )
    docs, _ = read_source(source_from(name="b", kind="beir", path=beir))
    assert [(d.doc_id, d.text) for d in docs] == [("d1", "beir body")]


def test_pydoc_topics_is_real_bundled_text():
    docs, rejected = read_source(source_from(name="p", kind="pydoc_topics"))
    ids = {d.doc_id for d in docs}
    assert {"try", "with", "lambda"} <= ids and not rejected


# --- one bad document affects only itself ------------------------------------------------

GOOD = {"a.md": "Alpha words about cats.", "b.txt": "Beta words about dogs."}


def _folder(tmp_path, extra=None):
    root = tmp_path / "root"
    root.mkdir()
    for name, text in {**GOOD, **(extra or {})}.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _reasons(rejected):
    return {r.doc_id: r.reason for r in rejected}


def test_html_parser_error_quarantines_only_that_page(tmp_path):
    root = _folder(tmp_path, {"bad.html": "<p>intro</p><![foo[ x ]]> more"})
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {
        "bad.html": "parser error: HTML line 1, column 12: "
        "AssertionError: unknown status keyword 'foo' in marked section"
    }


def test_jsonl_recursion_and_huge_numbers_quarantine_only_their_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "alpha"}),
                '{"id": "deep", "text": ' + "[" * 100_000 + "]" * 100_000 + "}",
                '{"id": ' + "9" * 5000 + ', "text": "x"}',
                json.dumps({"id": "b", "text": "beta"}),
            ]
        )
    )
    docs, rejected = read_source(source_from(name="j", kind="jsonl", path=path))
    assert [d.doc_id for d in docs] == ["a", "b"]
    assert _reasons(rejected) == {
        "line-2": "too deeply nested: line 2 nests JSON deeper than the parser can follow",
        "line-3": "line 3 is not valid JSON: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits",
    }


def test_jsonl_odd_ids_and_values_quarantine_their_line(tmp_path):
    path = tmp_path / "d.jsonl"
    records = [
        {"id": ["x"]},
        {"id": {"k": 1}},
        {"id": True},
        {"id": 1.5},
        {"id": 7},
        {"id": "big", "n": 10**4000},
    ]
    lines = [json.dumps({**r, "text": "words"}) for r in records]
    lines += [
        '{"id": "nan", "text": "words", "score": NaN}',
        '{"id": "inf", "text": "words", "score": -Infinity}',
        '{"id": "\\ud800", "text": "words"}',
        '{"id": "s", "text": "a\\ud800b"}',
        '{"id": "m", "text": "words", "\\udfff": "v"}',
    ]
    path.write_text("\n".join(lines))
    docs, rejected = read_source(source_from(name="j", kind="jsonl", path=path))
    assert [(d.doc_id, d.metadata) for d in docs] == [("7", {}), ("big", {"n": 10**4000})]
    escape = "(an invalid \\uD800-\\uDFFF escape"
    surrogate = f"undecodable: id or metadata holds a lone surrogate {escape})"
    assert _reasons(rejected) == {
        "line-1": "bad id: 'id' must be a string or a whole number, not list",
        "line-2": "bad id: 'id' must be a string or a whole number, not dict",
        "line-3": "bad id: 'id' must be a string or a whole number, not bool",
        "line-4": "bad id: 'id' must be a string or a whole number, not float",
        "line-7": "line 7 is not valid JSON: NaN is not standard JSON (RFC 8259)",
        "line-8": "line 8 is not valid JSON: -Infinity is not standard JSON (RFC 8259)",
        "line-9": surrogate,
        "s": f"undecodable: a lone surrogate at character 1 {escape} upstream)",
        "line-11": surrogate,
    }


def test_any_exception_while_validating_one_document_quarantines_it(tmp_path, monkeypatch):
    root = _folder(tmp_path, {"boom.md": "this one breaks the checker"})
    real = documents_module._unprintable

    def flaky(text):
        if "breaks" in text:
            raise MemoryError("out of memory")
        return real(text)

    monkeypatch.setattr(documents_module, "_unprintable", flaky)
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {"boom.md": "unreadable: MemoryError: out of memory"}


def test_a_source_that_cannot_be_read_is_a_clear_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "file.jsonl").write_text("{}")
    (tmp_path / "folder").mkdir()
    cases = [
        (
            source_from(name="gone", kind="folder", path=tmp_path / "missing"),
            r"sources\[gone\]\.path: .*missing does not exist; fix the path or create it",
        ),
        (
            source_from(name="notdir", kind="folder", path=tmp_path / "file.jsonl"),
            r"sources\[notdir\]\.path: .*file\.jsonl is a file; a folder source needs a folder",
        ),
        (
            source_from(name="isdir", kind="jsonl", path=tmp_path / "folder"),
            r"sources\[isdir\]\.path: .*folder is a folder; a jsonl source needs a \.jsonl file",
        ),
        (
            source_from(name="nobeir", kind="beir", path=tmp_path / "folder"),
            r"sources\[nobeir\]\.path: .*folder has no corpus\.jsonl",
        ),
    ]
    for source, message in cases:
        with pytest.raises(SourceError, match=message):
            read_source(source)
    real_scandir = os.scandir

    def denied(path):
        if str(path) == str(tmp_path / "folder"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    locked = r"sources\[locked\]\.path: .*folder cannot be listed: Permission denied"
    with pytest.raises(SourceError, match=locked):
        read_source(source_from(name="locked", kind="folder", path=tmp_path / "folder"))


def test_a_huge_sparse_file_is_quarantined_without_being_read(tmp_path):
    root = _folder(tmp_path)
    with open(root / "huge.txt", "wb") as handle:
        os.truncate(handle.fileno(), 3 * 1024**3)  # 3 GB, sparse: no disk used
    tracemalloc.start()
    try:
        docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {"huge.txt": f"too large: {3 * 1024**3} bytes > limit 8388608"}
    assert peak < 2 * 1024**2  # nothing near the file's size was allocated


def test_a_file_larger_than_its_stat_size_is_read_only_to_the_limit(tmp_path, monkeypatch):
    root = _folder(tmp_path, {"grows.txt": "word " * 400})  # 2,000 bytes
    real_fstat = os.fstat

    def lying(fd):  # a file that grew after stat, or a /proc-like file reporting size 0
        info = real_fstat(fd)
        return os.stat_result((*info[:6], 0, *info[7:]))

    monkeypatch.setattr(os, "fstat", lying)
    small = DocumentsConfig(max_document_bytes=1000)
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root), small)
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {
        "grows.txt": "too large: more than 1000 bytes (the file grew while it was read)"
    }


def test_a_jsonl_line_over_the_limit_is_quarantined_and_the_next_lines_read(tmp_path):
    path = tmp_path / "d.jsonl"
    long_line = json.dumps({"id": "long", "text": "word " * 1000})  # about 5,000 bytes
    prefix = '{"id": "fits", "text": "'
    fits = prefix + ("word " * 200)[: 1000 - len(prefix) - 2] + '"}'  # exactly 1,000 bytes
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "alpha"}),
                long_line,
                fits,
                json.dumps({"id": "b", "text": "beta"}),
            ]
        )
    )
    assert len(fits.encode()) == 1000
    small = DocumentsConfig(max_document_bytes=1000)
    docs, rejected = read_source(source_from(name="j", kind="jsonl", path=path), small)
    assert [d.doc_id for d in docs] == ["a", "fits", "b"]
    assert _reasons(rejected) == {"line-2": "too large: line 2 is longer than 1000 bytes"}


def test_broken_links_and_special_files_get_quarantine_rows(tmp_path):
    root = _folder(tmp_path)
    (root / "self.md").symlink_to("self.md")
    (root / "loop1.md").symlink_to("loop2.md")
    (root / "loop2.md").symlink_to("loop1.md")
    (root / "dangling.txt").symlink_to("nowhere.txt")
    os.mkfifo(root / "pipe.txt")  # opening it would block: it must never be opened
    os.mkfifo(root / "pipe")  # whatever its name: not a regular file is worth a row
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "s.sock"))
        docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {
        "dangling.txt": "dangling symlink: links to nowhere.txt, which does not exist",
        "loop1.md": "symlink loop: links to loop2.md, which leads back to itself",
        "loop2.md": "symlink loop: links to loop1.md, which leads back to itself",
        "pipe": "not a regular file: FIFO",
        "pipe.txt": "not a regular file: FIFO",
        "s.sock": "not a regular file: socket",
        "self.md": "symlink loop: links to self.md, which leads back to itself",
    }


def test_an_unlistable_subfolder_and_an_unopenable_file_get_rows(tmp_path, monkeypatch):
    root = _folder(tmp_path, {"locked.md": "words"})
    (root / "private").mkdir()
    (root / "private" / "p.md").write_text("private words")
    real_scandir, real_open = os.scandir, os.open

    def scandir(path):  # as a non-root user meets a folder without read permission
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def open_(path, *args, **kwargs):  # the folder is opened to be listed through its descriptor
        if str(path).endswith(("locked.md", "private")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_)
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt"]
    assert _reasons(rejected) == {
        "locked.md": "unreadable: Permission denied",
        "private": "unreadable: folder cannot be listed: Permission denied",
    }


def test_hidden_files_and_folders_are_skipped_unless_included(tmp_path):
    root = _folder(tmp_path, {".hidden.md": "hidden words"})
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.txt").write_text("ref words")
    (root / "sub" / ".cache").mkdir(parents=True)
    (root / "sub" / ".cache" / "c.md").write_text("cached words")
    (root / "sub" / "kept.md").write_text("kept words")
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root))
    assert sorted(d.doc_id for d in docs) == ["a.md", "b.txt", "sub/kept.md"] and rejected == []
    hidden = DocumentsConfig(include_hidden=True)
    docs, rejected = read_source(source_from(name="s", kind="folder", path=root), hidden)
    assert sorted(d.doc_id for d in docs) == [
        ".git/HEAD.txt",
        ".hidden.md",
        "a.md",
        "b.txt",
        "sub/.cache/c.md",
        "sub/kept.md",
    ]
    assert rejected == []


CHINESE = "机器学习是人工智能的一个分支，它使计算机能够从数据中学习并做出预测。" * 60  # no spaces
JAPANESE = "Pythonは読みやすさを重視したプログラミング言語で、多くの分野で使われています。" * 40


@pytest.mark.parametrize(
    "doc_id, text",
    [
        ("prose", "Plain prose with ordinary words. " * 200),
        ("code", "def add(a, b):\n    return a + b\n\nprint(add(1, 2))  # three\n" * 50),
        ("urls", "\n".join(f"https://example.org/{i}/{'section-' * 20}?p={i}" for i in range(60))),
        ("chinese", CHINESE),
        ("japanese", JAPANESE),
        (
            "one long url in prose",
            "See "
            + "https://example.org/?q="
            + "a1" * 700
            + " for details. "
            + "Ordinary words follow here. " * 60,
        ),
    ],
)
def test_text_with_usable_tokens_is_kept(doc_id, text):
    if doc_id not in ("prose", "code", "urls"):  # these do hold a whitespace-free run > 1000
        assert len(max(text.split(), key=len)) > 1000
    result = validate(RawDocument(doc_id, text.encode("utf-8")))
    assert isinstance(result, Document), result


@pytest.mark.parametrize(
    "doc_id, text, reason",
    [
        (
            "line",
            "x" * 2_000_000,
            "no usable tokens: 100% of the text is in whitespace-free runs longer than 1000 "
            "characters (a blob, not words)",
        ),
        (
            "base64",
            "Attachment:\n" + base64.b64encode(bytes(range(256)) * 12).decode(),
            "no usable tokens: 100% of the text is in whitespace-free runs longer than 1000 "
            "characters (a blob, not words)",
        ),
        (
            "mostly blob",
            "A short caption here. " * 20 + "Zm9v" * 500,
            "no usable tokens: 85% of the text is in whitespace-free runs longer than 1000 "
            "characters (a blob, not words)",
        ),
        ("punctuation", "--- *** ===\n!!! ???", "no usable tokens: no letter or digit in the text"),
    ],
)
def test_text_without_usable_tokens_is_quarantined(doc_id, text, reason):
    result = validate(RawDocument(doc_id, text.encode("utf-8")))
    assert isinstance(result, Rejected) and result.reason == reason


def test_a_few_replacement_characters_are_kept_a_share_above_the_setting_is_quarantined(tmp_path):
    few = "A mostly fine abstract about p53 in caf\ufffd culture. " + "More words here. " * 10
    many = "Broken \ufffd\ufffd text \ufffd decoded \ufffd badly."
    assert isinstance(validate(RawDocument("few", few.encode())), Document)
    assert Document("few", few).lossy and not Document("clean", "clean text").lossy
    rejected = validate(RawDocument("many", many.encode()))
    assert rejected.reason.startswith(
        "lossy text: 4 replacement characters (U+FFFD), 12.12% of the text > "
        "documents.max_replacement_fraction 1.00%; "
    )
    strict = DocumentsConfig(max_replacement_fraction=0.0)
    assert validate(RawDocument("few", few.encode()), strict).reason.startswith(
        "lossy text: 1 replacement characters (U+FFFD), 0.46% of the text"
    )
    page = "<p>Invalid reference &#xD800; in a long page. " + "word " * 100 + "</p>"  # 1 in 540
    assert isinstance(validate(RawDocument("p.html", page.encode(), is_html=True)), Document)


def test_snapshot_keeps_every_good_document_and_quarantines_each_bad_one(tmp_path):
    """End to end through take_snapshot: one quarantine row per bad document, with its reason."""
    from embeddings_platform.core.config import load_config
    from embeddings_platform.core.pipeline import take_snapshot
    from embeddings_platform.core.refresh import source_fingerprint
    from embeddings_platform.core.store import Store
    from embeddings_platform.testing import DOCS, write_config, write_corpus

    folder = tmp_path / "corpus"
    write_corpus(
        folder,
        {
            **DOCS,
            "lossy.md": "One stray caf\ufffd byte in a long text. " + "word " * 60,
            "bad.html": "<p>intro</p><![foo[ x ]]>",
            "blob.txt": "x" * 2_000_000,
            "mangled.md": "Mangled \ufffd\ufffd\ufffd text.",
            ".draft.md": "draft words",
        },
    )
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD.txt").write_text("ref words")
    with open(folder / "huge.txt", "wb") as handle:
        os.truncate(handle.fileno(), 3 * 1024**3)
    os.mkfifo(folder / "pipe.txt")
    (folder / "loop.md").symlink_to("loop.md")
    (folder / "gone.md").symlink_to("deleted.md")
    (tmp_path / "data.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "ok", "text": "fine words"}),
                '{"id": "deep", "text": ' + "[" * 100_000 + "]" * 100_000 + "}",
                '{"id": ' + "9" * 5000 + "}",
            ]
        )
    )
    config = load_config(
        write_config(
            tmp_path / "c.yaml",
            [
                {"name": "notes", "kind": "folder", "path": str(folder)},
                {"name": "data", "kind": "jsonl", "path": str(tmp_path / "data.jsonl")},
            ],
            documents={"max_replacement_fraction": 0.02},
        )
    )
    store = Store(config.storage_uri)
    report = take_snapshot(store, config.sources[0], "r1", config.documents)
    jsonl = take_snapshot(store, config.sources[1], "r1", config.documents)
    assert report.documents == len(DOCS) + 1 and report.lossy_documents == 1
    manifest = store.snapshot_manifest("notes", report.snapshot_id)
    assert sorted(manifest) == sorted([*DOCS, "lossy.md"])
    assert report.snapshot_id == source_fingerprint(config.sources[0], config.documents)
    assert jsonl.documents == 1 and jsonl.lossy_documents == 0
    rows = Store.read(store.table("quarantine")).to_pylist()
    reasons = {(r["source"], r["doc_id"]): r["reason"].split(":")[0] for r in rows}
    assert len(rows) == len(reasons) == 9
    assert reasons == {
        ("notes", "bad.html"): "parser error",
        ("notes", "blob.txt"): "no usable tokens",
        ("notes", "mangled.md"): "lossy text",
        ("notes", "huge.txt"): "too large",
        ("notes", "pipe.txt"): "not a regular file",
        ("notes", "loop.md"): "symlink loop",
        ("notes", "gone.md"): "dangling symlink",
        ("data", "line-2"): "too deeply nested",
        ("data", "line-3"): "line 3 is not valid JSON",
    }
