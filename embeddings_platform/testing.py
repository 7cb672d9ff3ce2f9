"""Deterministic material for tests and benchmarks: small corpora, bad input, registry files.

The test suite and the benchmarks both build throwaway sources and registries; they share them
from here, so a benchmark never imports a test module. Everything is written to the folder it
is given and embedded, when it is embedded, by the deterministic `hashing` model
(core/models.HashingEmbedder): no download, the same vectors on every machine.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DOCS = {
    "cats.md": "Cats are small domesticated carnivorous mammals. A cat purrs and hunts mice at "
    "night.",
    "dogs.txt": "Dogs are loyal companions. A dog barks, fetches sticks and guards the house.",
    "rust.rst": "Rust is a systems programming language focused on memory safety without garbage "
    "collection.",
    "python.md": "Python is a programming language with dynamic typing and garbage collection.",
    "tea.html": "<html><body><h1>Tea</h1><p>Green tea &amp; black tea are brewed from leaves.</p>"
    "</body></html>",
}


def hashing_model(name: str = "hash", dimension: int = 256) -> dict:
    """A registry entry of the deterministic hashing model, with windows small enough that the
    tiny test documents make several chunks."""
    return {
        "name": name,
        "kind": "hashing",
        "dimension": dimension,
        "max_seq_length": 16,
        "chunking": {"max_tokens": 12, "overlap": 3},
    }


HASHING_MODEL = hashing_model()


def write_corpus(folder: Path, docs: dict[str, str]) -> None:
    """A `folder` source: one file per entry of `docs` (file name -> text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def write_config(
    path: Path, sources: list[dict], models: list[dict] | None = None, **extra
) -> Path:
    """A registry file storing next to itself (`lancedb/`), by default with the hashing model."""
    config = {
        "storage": {"uri": str(path.parent / "lancedb")},
        "sources": sources,
        "models": models or [HASHING_MODEL],
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def many_docs(folder: Path, n: int) -> None:
    """`n` short documents of varied length, a few topics: enough chunks for many batches."""
    write_corpus(
        folder,
        {
            f"doc{i:03d}.txt": f"document {i} about topic {i % 7} " + "word " * (i % 23 + 5)
            for i in range(n)
        },
    )


def bad_corpus(folder: Path, outside: Path) -> dict[str, str]:
    """Every kind of bad document next to the good ones (DOCS); returns {file: expected reason}."""
    write_corpus(folder, DOCS)
    expected = {
        "binary.txt": "undecodable",
        "utf16-no-bom.txt": "undecodable",
        "latin1.md": "undecodable",
        "empty.md": "empty",
        "blank.txt": "empty",
        "control.txt": "unprintable",
        "bad-entities.html": "lossy text",
        "mojibake.txt": "lossy text",
        "huge.txt": "too large",
        "escape.md": "escapes source root",
    }
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "utf16-no-bom.txt").write_bytes("Owls hunt at night.".encode("utf-16-le"))
    (folder / "latin1.md").write_bytes("Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e.".encode("latin-1"))
    (folder / "empty.md").write_bytes(b"")
    (folder / "blank.txt").write_text("  \n\t \n")
    (folder / "control.txt").write_text("ok " + "\x01\x02\x03\x04\x05\x06\x07\x08" * 20)
    (folder / "bad-entities.html").write_text("<p>Broken &#xD800; and &#99999999; references</p>")
    (folder / "mojibake.txt").write_text("decoded upstream with errors='replace': caf\ufffd")
    (folder / "huge.txt").write_bytes(b"owl " * (6 * 1024 * 1024))  # 24 MB
    outside.write_text("a file outside the source root")
    (folder / "escape.md").symlink_to(outside)
    # prose with bare < and & is not bad input: it is kept, text intact
    (folder / "prose.html").write_text("<p>if a < b && c > d then AT&T wins &unknown; cases</p>")
    return expected


_SLOW_REFRESH = """
import sys, time
from embeddings_platform.core.config import load_config
from embeddings_platform.core.models import HashingEmbedder
from embeddings_platform.core.pipeline import refresh
from embeddings_platform.core.store import Store

class Slow(HashingEmbedder):
    def embed(self, texts):
        time.sleep(float(sys.argv[2]))
        return super().embed(texts)

config = load_config(sys.argv[1])
model = config.models[0]
refresh(Store(config.storage_uri), config.sources[0], model, config.serving,
        lambda: Slow(model.dimension), sys.argv[3])
print("done", flush=True)
"""


def start_refresh_process(config: Path, delay: float, run_id: str) -> subprocess.Popen:
    """A refresh of the registry's first source x model in its own process (session), the
    hashing model sleeping `delay` s per batch: something to kill mid-embedding."""
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_REFRESH, str(config), str(delay), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _pg_bin(name: str) -> str:
    """initdb/pg_ctl on PATH, else Debian's /usr/lib/postgresql/*/bin (`apt-get install
    postgresql`: make system-deps)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise FileNotFoundError(f"{name}: install Debian's postgresql (make system-deps does)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (socket in its folder), for the postgres
    source's tests and benchmark. PostgreSQL refuses to run as root: as root, it runs as the
    `postgres` user Debian's package creates."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres password=s3cret"
        self._run(
            _pg_bin("initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
            "-c full_page_writes=off"
        )
        data, log = str(self.dir / "data"), str(self.dir / "log")
        self._run(_pg_bin("pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def execute(self, query: str, params=None) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query, params)
