"""Which body runs a pipeline: one table from its kind (`PipelineSpec.kind`) to the function that runs it inside
the pipeline's open MLflow run. Fusion members and sweep trials are training pipelines (flows/bodies/training.py)."""
from __future__ import annotations

from flows.bodies.fusion import run_fusion
from flows.bodies.scoring import run_scoring
from flows.bodies.sweep import run_sweep
from flows.bodies.training import Body, run_training
from tasks.pipeline.resolved import ResolvedPipeline

#: pipeline kind -> its body
BODIES: dict[str, Body] = {
    "training": run_training,
    "fusion": run_fusion,
    "sweep": run_sweep,
    "scoring": run_scoring,
}


def body_for(pipeline: ResolvedPipeline) -> Body:
    return BODIES[pipeline.kind]
