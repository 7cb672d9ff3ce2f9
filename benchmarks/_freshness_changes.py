"""What bench_freshness.py does to the source, and how it sees a change served.

Edits and deletes are planned from a seed, so every variant gets the same changes at the same
pauses; a change is saved (fsync) and then `core.serving.search` on the pinned serving pointer is
polled every 0.5 s until it returns the new text, or no longer returns the deleted document.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from pathlib import Path

SOURCE = "scifact"


def plan_changes(ids: list[str], edits: int, deletes: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    chosen = rng.sample(ids, edits + deletes)
    kinds = ["edit"] * edits + ["delete"] * deletes
    rng.shuffle(kinds)
    return [
        {
            "kind": k,
            "id": i,
            "pause": round(rng.uniform(0, 30), 1),
            "token": f"zq{rng.randrange(16**6):06x}",
        }
        for k, i in zip(kinds, chosen)
    ]


class Load:
    """Samples the 1-minute load average while the variant runs."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(5):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(statistics.mean(s), 2), "max": round(max(s), 2)}


def _served(store, query_vector, check) -> bool:
    from embeddings_platform.core.serving import search

    try:
        return check(search(store, SOURCE, "", 10, lambda _version: query_vector))
    except Exception:  # noqa: BLE001 - a pointer mid-swap or a table being written: poll again
        return False


def one_change(
    folder: Path, store, embed, step: dict, timeout: float
) -> tuple[float, float | None]:
    """Save one edit or delete; return (save time, seconds until search serves it or None)."""
    path = folder / "source" / f"{step['id']}.txt"
    title, _, text = path.read_text(encoding="utf-8").partition("\n\n")
    if step["kind"] == "edit":
        probe = f"Freshness probe {step['token']}: this abstract was revised."
        new_text = f"{title}\n\n{probe} {text}"
        vector = embed(f"{title} {probe} {text[:300]}")
        check = lambda hits: any(step["token"] in h.text for h in hits)  # noqa: E731
        t0 = _save(path, new_text)
    else:
        vector = embed(f"{title} {text[:300]}")
        gone = step["id"] + "."  # the folder source names a document by its file name
        check = lambda hits: all(not h.doc_id.startswith(gone) for h in hits)  # noqa: E731
        if _served(store, vector, check):
            raise RuntimeError(
                f"abstract {step['id']} is not found before its delete: nothing to measure"
            )
        path.unlink()
        t0 = time.time()
    while time.time() - t0 < timeout:
        if _served(store, vector, check):
            return t0, time.time() - t0
        time.sleep(0.5)
    return t0, None


def _save(path: Path, text: str) -> float:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return time.time()
