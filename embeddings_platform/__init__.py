"""embeddings_platform: embeddings as versioned data assets (Dagster + LanceDB)."""

import os

# No progress bars from the libraries underneath ("Loading weights", "Encoding tokens"): the
# platform reports progress itself, as log lines on a timer (core/progress.py), and a bar in
# a run log or a CLI account is noise. Read by tqdm and huggingface_hub when they are imported,
# so set here, before anything imports them; set TQDM_DISABLE= (empty) to have the bars back.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

__version__ = "0.1.0"
