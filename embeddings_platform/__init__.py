"""embeddings_platform: embeddings as versioned data assets (Dagster + LanceDB)."""

__version__ = "0.1.0"
