"""`embeddings-platform materialize` (what `make demo` runs) gives a short account: one line per
step, the status table and a sample search; Dagster's full log goes to a file it names. No
DEBUG lines, progress bars or deprecation warnings reach the terminal or the log.

Run as a separate process, as an operator runs it: the account is about file descriptors 1 and 2,
which an in-process call under pytest does not own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from embeddings_platform.testing import write_config

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("source_snapshot", "chunks", "embeddings", "serving_index")
NOISE = re.compile(r" - DEBUG - |DEBUG|Warning|warnings\.warn|it/s\]|\d+%\|", re.IGNORECASE)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "PYTHONWARNINGS")
        and not k.startswith("EMBEDDINGS_PLATFORM_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def test_materialize_prints_a_short_account_and_logs_the_rest_to_a_named_file(tmp_path, corpus):
    path = write_config(
        tmp_path / "embeddings_platform.yaml",
        [{"name": "notes", "kind": "folder", "path": str(corpus)}],
    )
    home = tmp_path / "dagster_home"
    done = subprocess.run(
        # -W default: every DeprecationWarning is shown (Python hides most by default)
        [sys.executable, "-W", "default", "-m", "embeddings_platform.cli", "materialize"],
        cwd=path.parent,  # the config is found in the folder it runs in
        env=_env(DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    out = done.stdout.splitlines()
    assert len(out) <= 30, done.stdout  # short: a line per step, the table, three hits
    assert not [line for line in out if NOISE.search(line)], done.stdout
    assert out[0] == f"config {path}, storage {tmp_path / 'lancedb'}"
    steps = {line[43:60].strip(): line for line in out if line.startswith("  notes")}
    assert [s for s in steps if s != "checks"] == list(ASSETS)  # one line per step
    assert len([line for line in out if line.startswith("  notes")]) == len(ASSETS) + 2
    assert "8 embedded, 0 unchanged, 0 deleted" in steps["embeddings"]
    assert re.search(
        r"8 rows, exact index, table v\d+, serving \(\d+\.\d s\)$", steps["serving_index"]
    )
    assert out.index("Built:") > out.index(steps["serving_index"])
    assert any(line.startswith("Sample search on 'notes'") for line in out)
    # the full log: where the account says it is, with what the terminal was spared
    named = {line.split(": ", 1)[1] for line in out if line.startswith(("Full Dagster log: "))}
    assert len(named) == 1
    log = Path(named.pop())
    assert log.parent == home / "materialize-logs" and log.is_file()
    text = log.read_text()
    assert " - DEBUG - " in text and "RUN_START" in text and "STEP_SUCCESS" in text
    assert "embedded 8 chunks in " in text  # the embed step's own progress line
    assert text.count("RUN_SUCCESS") == 2  # snapshot + chunks, then embeddings + serving_index
    assert "DeprecationWarning" not in text and "it/s]" not in text


def test_importing_the_package_turns_library_progress_bars_off():
    """tqdm and huggingface_hub read their switches when imported: the package sets them first."""
    code = (
        "import embeddings_platform, tqdm\n"
        "from huggingface_hub.utils import are_progress_bars_disabled\n"
        "print(tqdm.tqdm(range(2)).disable, are_progress_bars_disabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]
    # an operator who wants them back says so
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TQDM_DISABLE="", HF_HUB_DISABLE_PROGRESS_BARS="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]
