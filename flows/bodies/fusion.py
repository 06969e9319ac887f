"""The body of a fusion pipeline: train inline members through the runner (nested MLflow runs), load every member,
fit the fusion on validation, score test once, and log the report and ONE model (fused, or the best member).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from prefect import get_run_logger

from tasks.pipeline.resolved import ResolvedPipeline
from tasks.fusion.report import FusionReport
from tasks.pipeline.spec import PipelineSpec
from tasks.pipeline.summary import FusionSummary, RunSummary
from tasks.steps.fusion import fuse_members, load_member
from tasks.tracking import tags
from tasks.tracking.logger import RunLogger, write_json
from tasks.tracking.system_metrics import system_metrics


def _member_pipeline(fusion_spec: PipelineSpec, member: Any) -> ResolvedPipeline:
    """The member's pipeline, recorded in the fusion's experiment and store with a readable run name."""
    tracking = member.spec.tracking.model_copy(update={
        "experiment": fusion_spec.experiment, "uri": fusion_spec.tracking.uri,
        "run_name": f"{fusion_spec.tracking.run_name or fusion_spec.name}/{member.name}"})
    return ResolvedPipeline(member.spec.model_copy(update={"tracking": tracking}))


def run_fusion(pipeline: ResolvedPipeline, logger: RunLogger, base_dir: Path, data: Any = None) -> RunSummary:
    """Run the fusion into `logger`'s (the parent) MLflow run; returns run id, model URI and test metrics. `data` is
    the members' shared data when it was loaded before the run opened (flows/bodies/data.py)."""
    from flows.nested import NestedJob
    from flows.progress import artifact_key, train_all_with_progress
    from tasks.fusion.fuse import load_fusion_data

    spec, resolved = pipeline.spec, pipeline.fusion
    fusion = spec.fusion
    logger.set_tags({tags.FUSION_METHOD: fusion.method.method,
                     tags.FUSION_MEMBERS: json.dumps([m.describe for m in resolved.members])})
    if data is None:
        data = load_fusion_data(resolved.data, base_dir)
    log_fusion_dataset(data, logger)  # before the members: they then find the shared dataset registered (no insert race)
    inline = [m for m in resolved.members if m.inline]
    jobs = [NestedJob(m.name, _member_pipeline(spec, m), m.overrides, {tags.FUSION_MEMBER: m.name}) for m in inline]
    with system_metrics(logger):  # the members' runs are nested: the machine's load while they train is here
        outcomes = dict(zip((m.index for m in inline), train_all_with_progress(  # + a Prefect progress artifact
            jobs, spec.runner, None, base_dir, logger.run_id, f"{spec.name}-members",
            key=artifact_key(spec.name, "members"), description=f"fusion members of {spec.name}")))
    failed = [(resolved.members[i].name, o) for i, o in outcomes.items() if not o.ok]
    if failed:
        name, outcome = failed[0]
        raise RuntimeError(f"member {name} failed ({len(failed)} of {len(outcomes)} inline members failed): "
                           f"{outcome.error}")
    uris = [outcomes[m.index].summary.model_uri if m.inline else m.uri for m in resolved.members]
    run_ids = [outcomes[m.index].summary.run_id if m.inline else m.run_id for m in resolved.members]
    return fuse_into_run(spec, fusion, resolved, data, uris, run_ids, logger, record_uri_members=True)


def fuse_into_run(spec: PipelineSpec, fusion: Any, resolved: Any, data: Any, uris: list[str],
                  run_ids: list[Optional[str]], logger: RunLogger, record_uri_members: bool) -> RunSummary:
    """Fuse trained members (their model URIs and runs) into `logger`'s run: load them, check they saw the
    fusion's data, fit the method on validation, score test once, and log the report and the shipped model.
    `record_uri_members` adds a nested run for each `model:` member (a sweep's trials have theirs already)."""
    log = get_run_logger()
    log.info("fusion: members ready: %s", ", ".join(f"{m.name}={u}" for m, u in zip(resolved.members, uris)))
    logger.set_tags({tags.fusion_member_run(m.name): rid for m, rid in zip(resolved.members, run_ids)})

    members = [load_member(m.name, uri, logger.tracking_uri) for m, uri in zip(resolved.members, uris)]
    _check_digests(resolved.members, run_ids, data.digest, logger)
    names = spec.evaluate.for_task("classification")
    outcome = fuse_members(fusion.method, members, data, names, fusion.bootstrap, fusion.require_gain,
                           [m.describe for m in resolved.members], run_ids)
    if record_uri_members:
        for member in resolved.members:
            if not member.inline:
                _record_uri_member(spec, member, run_ids[member.index], outcome.report, logger)
    model_uri = _log_outcome(outcome, data, names, logger,
                             best_uri=uris[outcome.best_index], best_name=resolved.members[outcome.best_index].name)
    log.info("fusion: %s", outcome.report.note)
    return RunSummary(logger.run_id, model_uri, _shipped_metrics(outcome.report, names), "classification",
                      fusion=FusionSummary(outcome.shipped, run_ids, outcome.report))


def log_fusion_dataset(data: Any, logger: RunLogger) -> None:
    """The members' shared data as the fusion run's dataset input (same name and digest as the members log)."""
    if data.modality == "text":
        from tasks.steps import text as steps_text

        steps_text.log_dataset(data.splits, logger)
    else:
        from tasks.steps import tabular as steps

        steps.log_dataset(data.splits, logger)


def _check_digests(members: list[Any], run_ids: list[Optional[str]], digest: str, logger: RunLogger) -> None:
    """Every member run that recorded its training data must have seen exactly the fusion's splits."""
    for member, run_id in zip(members, run_ids):
        if not run_id:
            continue
        inputs = logger.client.get_run(run_id).inputs
        digests = {d.dataset.digest for d in (inputs.dataset_inputs if inputs else [])}
        if digests and digest not in digests:
            raise ValueError(f"member {member.name} ({member.describe}) was trained on data with digest "
                             f"{', '.join(sorted(digests))}, but the fusion's splits have digest {digest}: "
                             "members must share one data split")


def _shipped_metrics(report: FusionReport, names: list[str]) -> dict[str, float]:
    return {f"test_{k}": v for k, v in report.shipped_scores.test.items() if k in names}


def _record_uri_member(spec: PipelineSpec, member: Any, run_id: Optional[str], report: FusionReport,
                       parent: RunLogger) -> None:
    """A nested run for a `model:` member: where it came from, and its metrics on the fusion's splits."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent_run = parent.client.get_run(parent.run_id)
    entry = report.members[member.index]
    run = parent.client.create_run(parent_run.info.experiment_id,
                                   run_name=f"{spec.tracking.run_name or spec.name}/{member.name}",
                                   tags={MLFLOW_PARENT_RUN_ID: parent.run_id, tags.FUSION_MEMBER: member.name,
                                         tags.PIPELINE: spec.name, tags.FUSION_SOURCE_URI: member.uri,
                                         tags.FUSION_SOURCE_RUN_ID: run_id or ""})
    child = RunLogger(run.info.run_id, parent.tracking_uri)
    try:
        child.log_params({"model_uri": member.uri, "source_run_id": run_id or ""})
        child.log_metrics({**{f"val_{k}": v for k, v in entry.val.items()},
                           **{f"test_{k}": v for k, v in entry.test.items()}})
    except BaseException:
        parent.client.set_terminated(run.info.run_id, "FAILED")
        raise
    parent.client.set_terminated(run.info.run_id, "FINISHED")


def _log_outcome(outcome: Any, data: Any, names: list[str], logger: RunLogger, best_uri: str, best_name: str) -> str:
    """Metrics, weights (params + artifact), tags, report JSON, table, bar chart, and the model."""
    from tasks.evaluate import report as ev
    from tasks.fusion.pyfunc import FusedPredictor, save_fused_model
    from tasks.fusion.report import markdown_table, plot_members
    from tasks.tracking.logged_model import copy_model as copy_logged_model, log_model_folder, run_model_uri

    rep = outcome.report
    metrics: dict[str, float] = dict(_shipped_metrics(rep, names))
    for member in rep.members:
        metrics.update({f"{member.name}_test_{k}": v for k, v in member.test.items()})
    for row, scores in (("best_member", rep.best_member), ("mean", rep.mean), ("fused", rep.fused)):
        metrics.update({f"{row}_test_{k}": v for k, v in scores.test.items()})
        metrics.update({f"{row}_val_{k}": v for k, v in scores.val.items()})
    for key, ci in rep.bootstrap.items():
        metrics.update({f"fused_minus_best_test_{key}": ci.delta, f"fused_minus_best_test_{key}_ci_low": ci.low,
                        f"fused_minus_best_test_{key}_ci_high": ci.high})
    logger.log_metrics(metrics)
    weights = {m.name: m.weight for m in rep.members}
    logger.log_params({f"fusion.weights.{k}": round(v, 6) for k, v in weights.items()})
    table = markdown_table(rep)
    logger.set_tags({tags.FUSION_SHIPPED: outcome.shipped, tags.FUSION_BEST_MEMBER: best_name,
                     tags.FUSION_GAIN: rep.gain_on_validation, tags.FUSION_NOTE: rep.note})
    logger.append_note(table)
    with tempfile.TemporaryDirectory(prefix="fuseflow-fusion-") as tmp:
        folder = Path(tmp) / "fusion"
        folder.mkdir()
        write_json(folder / "fusion_report.json", rep.to_dict())
        write_json(folder / "weights.json", {"members": weights, "combination": rep.combination})
        (folder / "member_table.md").write_text(table, encoding="utf-8")
        plot_members(rep, folder / "fusion_members.png")
        logger.log_artifacts(folder, "fusion")
        evaluation = Path(tmp) / "evaluation"
        evaluation.mkdir()
        shipped_probs = outcome.fused_test_probs if outcome.shipped == "fused" else outcome.best_test_probs
        cm = ev.classification_report(data.y["test"], shipped_probs, [str(c) for c in data.classes])
        ev.plot_confusion_matrix(cm["confusion_matrix"], cm["class_names"], evaluation / "confusion_matrix.png",
                                 title=f"confusion matrix (test, {outcome.shipped})")
        write_json(evaluation / "evaluation_report.json", {"task": "classification", "shipped": outcome.shipped,
                                                           "metrics": _shipped_metrics(rep, names), **cm})
        logger.log_artifacts(evaluation, "evaluation")
        if outcome.shipped == "fused":
            model_dir = Path(tmp) / "model"
            predictor = FusedPredictor(outcome.members, outcome.combination, data.classes)
            save_fused_model(predictor, model_dir, _input_example(data), rep.method)
            log_model_folder(logger.client, logger.run_id, model_dir, model_type=f"fusion/{rep.method_name}",
                             model_tags={tags.FUSION_SHIPPED: "fused"})
    if outcome.shipped != "fused":  # the best member's own model, as this run's LoggedModel
        copy_logged_model(logger.client, best_uri, logger.run_id, logger.tracking_uri,
                          model_tags={tags.FUSION_SHIPPED: outcome.shipped, tags.FUSION_BEST_MEMBER: best_name})
    return run_model_uri(logger.run_id)


def _input_example(data: Any) -> Any:
    if data.modality == "text":
        rows = list(data.X["test"][:3])
        if rows and isinstance(rows[0], tuple):  # text pairs: one column per text
            import pandas as pd

            return pd.DataFrame(rows, columns=data.feature_names)
        return [str(r) for r in rows]
    return data.X["test"].head(5)
