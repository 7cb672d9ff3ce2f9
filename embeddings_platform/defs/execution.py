"""Where steps run: in the run's own process by default, on Celery workers if a broker is set.

Locally a run is ONE process: its steps run in it one after another, so a refresh pays one
process start and one model load per run, not one per step (the multiprocess executor starts a
process per step, each importing the code location and loading the model again). Runs of
different partitions still run side by side (run queue, `max_concurrent_runs`), and the
`embedding_model` pool still limits model-loading steps across them.

The same definitions run both ways; only the environment differs. With
EMBEDDINGS_PLATFORM_CELERY_BROKER set (e.g. redis://127.0.0.1:6379/0), every job the
daemon, the UI or a backfill launches hands its steps to Celery workers started with
`dagster-celery worker start -A dagster_celery.app` (docs/scale-out.md). Broker and backend are
read from the environment at run time (StringSource `env:`), so no URL or secret is stored in
the run config.
"""

import os

from dagster import in_process_executor

CELERY_BROKER_ENV = "EMBEDDINGS_PLATFORM_CELERY_BROKER"
CELERY_BACKEND_ENV = "EMBEDDINGS_PLATFORM_CELERY_BACKEND"


def platform_executor():
    """The Celery executor when a broker is configured, else the in-process executor."""
    if not os.environ.get(CELERY_BROKER_ENV):
        return in_process_executor
    from dagster_celery import celery_executor

    config = {"broker": {"env": CELERY_BROKER_ENV}}
    if os.environ.get(CELERY_BACKEND_ENV):
        config["backend"] = {"env": CELERY_BACKEND_ENV}
    return celery_executor.configured(config, name="celery")
