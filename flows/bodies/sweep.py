"""The body of a sweep pipeline: an Optuna study drives the trials by ask/tell (planned ones for grid and random,
the sampler's for the others); each trains through the runner as a nested MLflow run, reports its metric per epoch
to the study and stops at once when the pruner says so; a failed trial is recorded and the sweep goes on. Then
rank the finished trials by the sweep's metric, log the trials table, the study's plots and the best parameters,
and ship the best trial's model — or, with `fuse_top: K`, a fusion of the K best trials."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

from prefect import get_run_logger

from tasks.pipeline.resolved import ResolvedPipeline
from tasks.pipeline.spec import PipelineSpec
from tasks.pipeline.summary import RunSummary, SweepSummary
from tasks.sweep.plots import plot_study
from tasks.sweep.report import (PRUNED, TrialResult, collect, markdown, metric_of_run, ranked, report_json,
                                table_rows, trial_runs, write_csv)
from tasks.sweep.search import SweepSearch
from tasks.sweep.space import corners
from tasks.sweep.study import StudyRef, masked_url, open_study, study_storage
from tasks.sweep.trials import SweepTrial
from tasks.tracking import tags
from tasks.tracking.config import TrackingConfig
from tasks.tracking.logger import RunLogger, absolute_uri, write_json
from tasks.tracking.system_metrics import system_metrics


def _trial_pipeline(spec: PipelineSpec, trial: Any) -> ResolvedPipeline:
    """The trial's pipeline, recorded in the sweep's experiment and store; trials never register a model themselves."""
    tracking = TrackingConfig(experiment=spec.experiment, uri=spec.tracking.uri,
                              run_name=f"{spec.tracking.run_name or spec.name}/{trial.name}")
    return ResolvedPipeline(trial.spec.model_copy(update={"tracking": tracking}))


def run_sweep(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path) -> RunSummary:
    """Run the sweep into `logger`'s (the parent) MLflow run; returns run id, shipped model URI and test metrics."""
    from flows.nested import train_feed
    from flows.progress import ProgressFeed, RunProgress, artifact_key
    from flows.task_runners import runner_workers

    log = get_run_logger()
    spec = pipeline.spec
    sweep = spec.sweep
    mode = sweep.resolved_mode
    experiment_id = logger.client.get_run(logger.run_id).info.experiment_id
    search = _open_search(pipeline, logger, base_dir, experiment_id)
    if search.done:
        log.info("sweep: resumed: %d trials finished or pruned before (%s), not run again", len(search.done),
                 ", ".join(f"trial-{i}" for i in sorted(search.done)))
    progress = RunProgress(artifact_key(spec.name, "trials"), sweep.trial_count, f"sweep trials of {spec.name}",
                           done=len(search.done))  # the Prefect run's progress artifact, n of N trials done
    with system_metrics(logger):  # trial runs are nested: the machine's load while they train is sampled here
        train_feed(ProgressFeed(search, progress), search.total, {pipeline.modality}, spec.runner,
                   sweep.max_concurrent or runner_workers(spec.runner), base_dir, logger.run_id, f"{spec.name}-trials")
    if progress.done < progress.total:
        progress.finish("stopped by the sweep's time limit")
    trials = [search.trials[i] for i in sorted(search.trials)]
    errors = dict(search.failed)
    results = collect(logger.client, logger.run_id, experiment_id, trials, errors, sweep.metric)
    for result in results:
        if result.run_id is None:  # failed before its run was opened (a lost worker): record it all the same
            result.run_id = _record_lost_trial(spec, result, experiment_id, logger)
        elif result.status == "RUNNING" and result.index in errors:  # its worker died mid-trial: nobody closes it
            logger.client.set_tag(result.run_id, tags.ERROR, (errors[result.index] or "worker lost")[:5000])
            logger.client.set_terminated(result.run_id, "FAILED")
            result.status = "FAILED"
    order = ranked(results, mode)
    _log_table(results, order, sweep.metric, mode, logger, search.study)
    pruned = sum(r.status == PRUNED for r in results)
    if not order:
        first = next((r for r in results if r.error), None)
        raise RuntimeError(f"no trial of the sweep finished with metric {sweep.metric} ({len(errors)} of "
                           f"{len(results)} failed, {pruned} pruned" + (f"; {first.name}: {first.error}" if first else "") + ")")
    best = order[0]
    log.info("sweep: best trial %s (%s=%.4f): %s", best.name, sweep.metric, best.metric,
             ", ".join(f"{k}={v}" for k, v in best.values.items()))
    _log_best_params(best, logger)
    logger.log_metrics({f"best_{sweep.metric}": best.metric, "trials_finished": float(len(order)),
                        "trials_pruned": float(pruned), "trials_failed": float(len(results) - len(order) - pruned)})
    logger.set_tags({tags.SWEEP_BEST_TRIAL: best.name, tags.SWEEP_BEST_RUN_ID: best.run_id})
    if sweep.fuse_top and len(order) < 2:
        log.warning("sweep: fuse_top needs 2 finished trials, %d finished: shipping the best trial", len(order))
        logger.set_tags({tags.SWEEP_FUSED_TRIALS: "0 (fewer than 2 trials finished)"})
    elif sweep.fuse_top:
        if len(order) < sweep.fuse_top:
            log.warning("sweep: fuse_top is %d but %d trials finished: fusing those", sweep.fuse_top, len(order))
        logger.append_note(f"**fusion of the {sweep.fuse_top} best trials**")
        summary = _fuse_top(spec, order[:sweep.fuse_top], logger, base_dir)  # appends the fusion's table
        logger.set_tags({tags.SWEEP_FUSED_TRIALS: ", ".join(r.name for r in order[:sweep.fuse_top])})
        return summary
    from tasks.tracking.logged_model import copy_model, run_model_uri

    logger.log_metrics(best.test_metrics)  # before the model: they are linked to it, with the trial's test split
    copy_model(logger.client, run_model_uri(best.run_id), logger.run_id, logger.tracking_uri,
               model_tags={tags.SWEEP_BEST_TRIAL: best.name, tags.SWEEP_BEST_RUN_ID: best.run_id},
               datasets_of=best.run_id)
    return RunSummary(logger.run_id, run_model_uri(logger.run_id), best.test_metrics, _task_of(best),
                      sweep=SweepSummary(best.index, best.run_id, best.values, finished=len(order),
                                         failed=len(results) - len(order) - pruned, pruned=pruned))


def _open_search(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path, experiment_id: str) -> SweepSearch:
    """The sweep's study (new, or the one a `--resume` reopens with its parent run) and the search over it."""
    from flows.nested import NestedJob

    spec = pipeline.spec
    sweep = spec.sweep
    sampler = sweep.resolved_sampler
    ref = StudyRef(study_storage(sweep.storage, absolute_uri(logger.tracking_uri), base_dir),
                   f"fuseflow-{spec.name}-{logger.run_id}")
    epochs = _trial_epochs(spec)
    study = open_study(ref, sweep, epochs, spec.seed)
    logger.set_tags({tags.SWEEP_METRIC: sweep.metric, tags.SWEEP_MODE: sweep.resolved_mode,
                     tags.SWEEP_SEARCH: sampler.name, tags.SWEEP_PRUNER: sweep.pruner.name,
                     tags.SWEEP_TRIALS: str(sweep.trial_count), tags.SWEEP_RUNNER: spec.runner.type,
                     tags.SWEEP_STUDY: ref.name, tags.SWEEP_STORAGE: masked_url(ref.storage)})
    planned = (pipeline.trials if sampler.planned else  # a model-based sampler opens with planned random draws
               [SweepTrial(i, v) for i, v in enumerate(sweep.assignments(spec.seed, min(sampler.startup_trials,
                                                                                        sweep.trial_count)))])

    def make_job(trial: SweepTrial, reporter: Any) -> NestedJob:
        return NestedJob(trial.name, _trial_pipeline(spec, trial), dict(trial.values),
                         {tags.SWEEP_TRIAL: str(trial.index), tags.SWEEP_VALUES: json.dumps(trial.values)}, reporter)

    def judge(outcome: Any) -> tuple[str, Optional[float]]:
        if outcome.pruned is not None:
            return "pruned", None
        if not outcome.ok:
            return "fail", None
        run = logger.client.get_run(outcome.summary.run_id)
        return "complete", metric_of_run(logger.client, run, sweep.metric)

    return SweepSearch(study, ref, sweep, epochs, planned, pipeline.resolve_trial, make_job, judge,
                       _recorded_trials(logger, experiment_id, sweep.metric))


def _trial_epochs(spec: PipelineSpec) -> int:
    """The most epochs a trial trains (a pruner's largest resource): `train.epochs`, or the largest swept value."""
    swept = spec.sweep.parameters.get("train.epochs")
    return max(corners(swept)) if swept is not None else spec.train.epochs


def _recorded_trials(logger: RunLogger, experiment_id: str, metric: str) -> dict[int, tuple[str, Optional[float]]]:
    """Trials this parent's MLflow runs hold as done (a resumed sweep): index -> (values JSON, metric; None when
    pruned). A study trial counts as done only when its run says so too."""
    recorded = {}
    for index, run in trial_runs(logger.client, logger.run_id, experiment_id).items():
        values = run.data.tags.get(tags.SWEEP_VALUES, "")
        if run.info.status == "FINISHED":
            value = metric_of_run(logger.client, run, metric)
            if value is not None and math.isfinite(value):  # without one it is told FAIL (rerun), never pruned
                recorded[index] = (values, value)
        elif run.data.tags.get(tags.SWEEP_TRIAL_STATE) == "pruned":
            recorded[index] = (values, None)
    return recorded


def _log_best_params(best: TrialResult, logger: RunLogger) -> None:
    """`best.<key>` params; a resumed sweep whose interrupted attempt logged them already keeps those (MLflow params
    cannot change) and says so when the best trial changed since: the tags name the current best."""
    logged = logger.client.get_run(logger.run_id).data.params
    params = {f"best.{k}": v for k, v in best.values.items()}
    changed = [k for k, v in params.items() if k in logged and logged[k] != str(v)]
    if changed:
        get_run_logger().warning("sweep: the best trial changed since the interrupted attempt logged %s; the params "
                                 "keep the old values, tag %s names the new best", ", ".join(changed),
                                 tags.SWEEP_BEST_TRIAL)
    logger.log_params({k: v for k, v in params.items() if k not in logged})


def _task_of(result: TrialResult) -> str:
    """classification or regression, told by the trial's test metric names."""
    from tasks.evaluate.names import task_of_metrics

    return task_of_metrics(list(result.test_metrics))


def _record_lost_trial(spec: PipelineSpec, result: TrialResult, experiment_id: str, parent: RunLogger) -> str:
    """A FAILED nested run for a trial that failed before it could open its own (its worker died, say)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    run = parent.client.create_run(experiment_id, run_name=f"{spec.tracking.run_name or spec.name}/{result.name}",
                                   tags={MLFLOW_PARENT_RUN_ID: parent.run_id, tags.SWEEP_TRIAL: str(result.index),
                                         tags.PIPELINE: spec.name, tags.SWEEP_VALUES: json.dumps(result.values),
                                         tags.ERROR: (result.error or "the trial did not start")[:5000]})
    RunLogger(run.info.run_id, parent.tracking_uri).log_params(result.values)
    parent.client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def _log_table(results: list[TrialResult], order: list[TrialResult], metric: str, mode: str,
               logger: RunLogger, study: Any) -> str:
    """trials.csv, the trials table (an MLflow table and a Prefect table artifact), sweep_report.json, the study's
    plots, and the table as the run's description."""
    rows = table_rows(results, metric, order)
    table = markdown(rows, metric, mode)
    logger.append_note(table)
    logger.log_table(rows, "sweep/trials.json")
    _table_artifact(rows, logger)
    with tempfile.TemporaryDirectory(prefix="fuseflow-sweep-") as tmp:
        folder = Path(tmp) / "sweep"
        folder.mkdir()
        write_csv(rows, folder / "trials.csv")
        (folder / "trials.md").write_text(table, encoding="utf-8")
        write_json(folder / "sweep_report.json", report_json(results, order, metric, mode))
        plot_study(study, metric, folder)
        logger.log_artifacts(folder, "sweep")
    return table


def _table_artifact(rows: list[dict[str, Any]], logger: RunLogger) -> None:
    """The trials table on the Prefect flow run (its Artifacts tab), best first."""
    from prefect.artifacts import create_table_artifact

    ordered = sorted(rows, key=lambda r: (r["rank"] is None, r["rank"] or 0, r["trial"]))
    cells = [{k: ("" if v is None else v) for k, v in row.items()} for row in ordered]
    create_table_artifact(cells, key="sweep-trials", description=f"Sweep trials of MLflow run {logger.run_id}")


def _fuse_top(spec: PipelineSpec, top: list[TrialResult], logger: RunLogger, base_dir: Path) -> RunSummary:
    """Fuse the best trials' models (as `model: runs:/...` members) into the sweep's run with `fuse_method`."""
    from flows.bodies.fusion import log_fusion_dataset, fuse_into_run
    from tasks.fusion.checks import check_fusion
    from tasks.fusion.config import FusionConfig, ModelMember
    from tasks.fusion.fuse import load_fusion_data

    from tasks.tracking.logged_model import model_uris_in, run_model_uri

    fusion = FusionConfig(members=[ModelMember(model=run_model_uri(r.run_id), name=r.name)
                                   for r in top], method=spec.sweep.fuse_method)
    fusion_spec = PipelineSpec(name=spec.name, seed=spec.seed, tracking=spec.tracking, evaluate=spec.evaluate,
                               fusion=fusion)
    with model_uris_in(logger.tracking_uri):  # the trials' runs:/ URIs name LoggedModels of this store
        issues, resolved = check_fusion(fusion_spec, [], lambda name: None, lambda name, sets: None)
    if issues:
        raise RuntimeError("cannot fuse the best trials: " + "; ".join(message for _, message in issues))
    get_run_logger().info("sweep: fusing the %d best trials (%s) with %s", len(top),
                          ", ".join(r.name for r in top), fusion.method.method)
    logger.set_tags({tags.FUSION_METHOD: fusion.method.method,
                     tags.FUSION_MEMBERS: json.dumps([m.describe for m in resolved.members])})
    data = load_fusion_data(resolved.data, base_dir)
    log_fusion_dataset(data, logger)
    summary = fuse_into_run(fusion_spec, fusion, resolved, data, [m.uri for m in resolved.members],
                            [m.run_id for m in resolved.members], logger, record_uri_members=False)
    summary.sweep = SweepSummary(top[0].index, top[0].run_id, top[0].values, fused_trials=[r.index for r in top])
    return summary
