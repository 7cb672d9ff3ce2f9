"""Content-derived ids: one hash for every id the platform derives from its parts.

Equal parts give an equal id in every process and on every machine, which is what makes
reruns idempotent (chunk ids, snapshot ids, quarantine and dead-letter rows).
"""

from __future__ import annotations

import hashlib


def digest(*parts: str, length: int = 20) -> str:
    """The first `length` hex digits of sha256 over the parts joined by a unit separator."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:length]
