"""Model preparation in a run, never in a sensor tick.

A model2vec model registered with `distill_from` is distilled from an installed model the first
time it is needed (minutes on 2 cores). Its version id hashes the distilled files, so computing
it inside `source_change_sensor` would distil inside the tick, which Dagster cuts off at 60 s.
The sensor skips such a model (its partitions wait) and requests `prepare_models_job`; once
the files exist, the next tick registers the model's partitions.
"""

from datetime import datetime

from dagster import OpExecutionContext, RunRequest, job, op

from ..core.config import ModelConfig, PlatformConfig
from ..core.models import distilled_model_path, model_is_prepared, model_version
from .resources import PlatformResource

TRIGGER = "embeddings_platform/trigger"


@op(
    description="Prepare every registered model whose files do not exist yet (distil model2vec)."
)
def prepare_models(context: OpExecutionContext, platform: PlatformResource) -> None:
    for model in unprepared(platform.load()):
        context.log.info(
            f"preparing model {model.name!r} at {model.path} (distilling from {model.distill_from})"
        )
        distilled_model_path(model)
        context.log.info(f"model {model.name!r} ready: version {model_version(model).version_id}")


@job(
    description="Prepare registered models (distil model2vec); the sensor requests it for new ones."
)
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
