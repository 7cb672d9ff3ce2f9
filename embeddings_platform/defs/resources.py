"""Resources: the platform config and store, and the (cached) embedding models."""

from typing import Optional

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from ..core.config import ModelConfig, PlatformConfig, load_config
from ..core.models import _EMBEDDERS as _EMBEDDERS  # noqa: F401 - tests seed the cache
from ..core.models import Embedder, cached_embedder
from ..core.models import clear_embedder_cache as clear_embedder_cache
from ..core.store import Store


class PlatformResource(ConfigurableResource):
    """Where the registry lives and where LanceDB stores data.

    Both default to the environment (EMBEDDINGS_PLATFORM_CONFIG,
    EMBEDDINGS_PLATFORM_STORAGE_URI) so deployments differ only in env vars.
    """

    config_path: Optional[str] = None
    # Dagster builds the resource once per step: the registry is parsed and the store opened
    # once per step, not once per call (an asset and its checks call both several times).
    _config: Optional[PlatformConfig] = PrivateAttr(default=None)
    _store: Optional[Store] = PrivateAttr(default=None)

    def load(self) -> PlatformConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self, config: PlatformConfig | None = None) -> Store:
        uri = (config or self.load()).storage_uri
        if self._store is None or self._store.uri != uri:
            self._store = Store(uri)
        return self._store

    def embedder(self, model: ModelConfig) -> Embedder:
        return cached_embedder(model)
