"""The body of a training pipeline, by the modality of its data: one table, looked up once per run."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from flows.bodies.data import LoadedData
from flows.bodies.tabular import run_tabular
from flows.bodies.text import run_text
from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.summary import RunSummary
from tasks.tracking.logger import RunLogger

Body = Callable[[ResolvedPipeline, RunLogger, Path], RunSummary]
#: a training body: a `Body` that also takes the data loaded before the run opened (None: it loads the data itself)
TrainingBody = Callable[[ResolvedPipeline, RunLogger, Path, Optional[LoadedData]], RunSummary]

#: data modality (`DataBase.modality`) -> the body that trains on it
TRAINING_BODIES: dict[str, TrainingBody] = {
    "tabular": run_tabular,
    "text": run_text,
}


def run_training(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path,
                 data: Optional[LoadedData] = None) -> RunSummary:
    """Train one model into `logger`'s run with the body of the pipeline's modality, from `data` when it was loaded
    (and checked) before the run opened, its steps under the pipeline's retries and timeouts (set here too, so a
    fusion member or sweep trial on a cluster worker gets its own)."""
    from tasks.pipeline.retries import retry_policy

    with retry_policy(pipeline.spec.retry_policy):
        return TRAINING_BODIES[pipeline.modality](pipeline, logger, base_dir, data)
