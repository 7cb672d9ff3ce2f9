"""Model preparation in a run, never in a sensor tick.

A model2vec model is distilled and an onnx-int8 model exported from installed weights the first
time it is needed (seconds to minutes on 2 cores). Its version id hashes the files made, so
computing it inside `source_change_sensor` would prepare inside the tick, which Dagster cuts
off at 60 s.
The sensor skips such a model (its partitions wait) and requests `prepare_models_job`; once
the files exist, the next tick registers the model's partitions.
"""

from datetime import datetime

from dagster import OpExecutionContext, RunRequest, job, op

from ..core.config import ModelConfig, PlatformConfig
from ..core.models import model_is_prepared, model_version, prepare_model
from .resources import PlatformResource

TRIGGER = "embeddings_platform/trigger"


@op(description="Prepare every registered model whose files do not exist yet (distil, export).")
def prepare_models(context: OpExecutionContext, platform: PlatformResource) -> None:
    for model in unprepared(platform.load()):
        context.log.info(f"preparing model {model.name!r} ({model.kind})")
        prepare_model(model)
        context.log.info(f"model {model.name!r} ready: version {model_version(model).version_id}")


@job(description="Prepare registered models (distil, export); the sensor requests it for new ones.")
def prepare_models_job():
    prepare_models()


def unprepared(config: PlatformConfig) -> list[ModelConfig]:
    return [m for m in config.models if not model_is_prepared(m)]


def prepare_request(models: list[ModelConfig], now: datetime) -> RunRequest:
    """One run for all unprepared models; the run key lets a failed preparation retry hourly."""
    names = ",".join(sorted(m.name for m in models))
    return RunRequest(
        job_name=prepare_models_job.name,
        run_key=f"prepare:{names}:{int(now.timestamp() // 3600)}",
        tags={TRIGGER: "prepare-models"},
    )


JOBS = [prepare_models_job]
