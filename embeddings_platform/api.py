"""The Python API: search what serves from a script, a notebook or a service.

```python
from embeddings_platform.api import Searcher

searcher = Searcher()  # embeddings_platform.yaml here or above, else $EMBEDDINGS_PLATFORM_CONFIG
hits = searcher.search("how do I catch an exception", source="python-docs", k=5)
```

The registry is read and the store opened once per `Searcher`; the model that embeds queries is
loaded once per process (the first query pays for it, every later one reuses it), whichever
Searcher asks. `embeddings-platform search` goes through the same path.
"""

from __future__ import annotations

from pathlib import Path

from .core.config import CONFIG_ENV, CONFIG_NAME, ConfigError, PlatformConfig, find_config
from .core.config import load_config as _load_config
from .core.models import cached_embedder
from .core.serving import Hit, embedder_query_function, search
from .core.store import Store


def resolve_config(given: str | Path | None = None) -> Path:
    """`given`, else embeddings_platform.yaml in this folder or the nearest parent (as git finds
    its repository), else $EMBEDDINGS_PLATFORM_CONFIG; never a file nobody pointed at."""
    if given:
        return Path(given)
    found = find_config()
    if found is None:
        raise ConfigError(
            f"config: no {CONFIG_NAME} in {Path.cwd()} or its parents and "
            f"${CONFIG_ENV} is not set; run where it is, or pass the config's path"
        )
    return found


class Searcher:
    """Searches the serving indexes of one registry."""

    def __init__(self, config: str | Path | PlatformConfig | None = None):
        self.config = (
            config if isinstance(config, PlatformConfig) else _load_config(resolve_config(config))
        )
        self.store = Store(self.config.storage_uri)

    def search(self, query: str, source: str, k: int = 10, mode: str | None = None) -> list[Hit]:
        """The top-k documents of `source` for `query`, through its serving pointer (the served
        model version and retrieval profile; `mode` overrides the profile's mode)."""
        self.config.source(source)  # an unregistered source: say so, list the registered ones
        embed = embedder_query_function(self.config, self.store, cached_embedder, query)
        return search(self.store, source, query, k, embed, mode)
