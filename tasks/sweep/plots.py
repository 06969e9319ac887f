"""The study's standard plots (Optuna's, drawn with matplotlib): optimisation history, parallel coordinates,
parameter importances, and every trial's per-epoch values (where pruned trials stop). A plot the study cannot
have yet (importances need two finished trials that differ) is left out and the reason logged."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from tasks.plots import pyplot, save_figure

log = logging.getLogger("fuseflow")

#: file name -> Optuna's plot function (optuna.visualization.matplotlib), whether it takes the metric's name, and
#: how many finished trials it needs
PLOTS = {
    "optimization_history.png": ("plot_optimization_history", True, 1),
    "parallel_coordinates.png": ("plot_parallel_coordinate", True, 1),
    "param_importances.png": ("plot_param_importances", True, 2),
    "intermediate_values.png": ("plot_intermediate_values", False, 0),
}


def plot_study(study: Any, metric: str, folder: Path) -> list[Path]:
    """Write the study's plots into `folder`; the ones written."""
    pyplot()  # the Agg backend before Optuna imports pyplot
    from optuna.visualization import matplotlib as optuna_plots

    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state == TrialState.COMPLETE for t in trials)
    written = []
    for file_name, (function, takes_name, needs) in PLOTS.items():
        try:
            if finished < needs:
                raise ValueError(f"it needs {needs} finished trials, the study has {finished}")
            if function == "plot_intermediate_values" and not any(t.intermediate_values for t in trials):
                raise ValueError("no trial reported per-epoch values (pruner: none)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                kwargs = {"target_name": metric} if takes_name else {}
                axes = getattr(optuna_plots, function)(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("sweep: no %s (%s)", file_name, exc)
            pyplot().close("all")
            continue
        if function == "plot_intermediate_values":  # Optuna's step is fuseflow's epoch; its value the metric
            axes.set_xlabel("epoch")
            axes.set_ylabel(metric)
        figure = getattr(axes, "figure", None) or axes.flat[0].figure
        figure.set_size_inches(9, 5)
        written.append(save_figure(figure, folder / file_name))
    return written
