"""The fusion protocol: members' logits on validation fit the method, test is scored once, the gain is judged.

Input: loaded members (`FusionMember`), the shared data splits, the method config. Output: a `FusionOutcome`
with the report (every member, the best member chosen on validation, the uniform mean, the fused model; a
paired bootstrap interval of fused - best on test), the fused predictor, and which model ships.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tasks.fusion.base import Combination, nll, score, softmax
from tasks.fusion.members.base import FusionMember
from tasks.fusion.report import BestMember, FusionReport, MemberScores, Scores, paired_bootstrap


@dataclass
class FusionData:
    """The splits every member was trained on, as raw inputs (DataFrames of raw rows, or texts) and class ids."""

    X: dict[str, Any]
    y: dict[str, np.ndarray]
    classes: list[Any]
    digest: str
    feature_names: list[str]
    modality: str = "tabular"
    splits: Any = None  # what the data step returned (TabularSplits or TextSplits), to log the dataset input


def load_fusion_data(data: dict[str, Any], base_dir: Path) -> FusionData:
    """Load the members' shared data section with its split seed, without preprocessing (members bring their own)."""
    from pydantic import TypeAdapter

    from tasks.data.tabular import load_tabular
    from tasks.registry import DATA_SOURCES

    config = TypeAdapter(DATA_SOURCES.union()).validate_python(data)
    if config.modality == "text":
        return _text_data(config, base_dir)
    splits = load_tabular(config, int(config.split.seed), base_dir, None)
    if splits.task != "classification":
        raise ValueError(f"fusion combines classifiers; {splits.name} is a {splits.task} dataset")
    inputs = [i["name"] for i in (splits.features or {}).get("inputs", [])] or splits.feature_names
    return FusionData(splits.raw or splits.X, splits.y, list(splits.classes), splits.digest, inputs, splits=splits)


def _text_data(config: Any, base_dir: Path) -> FusionData:
    """Texts (or text pairs) and labels of each split, as the text pipelines split them."""
    from tasks.data.splits import SPLITS
    from tasks.data.text import load_text

    splits = load_text(config, int(config.split.seed), base_dir)
    columns = splits.text_columns
    X = {s: (list(zip(*(splits.datasets[s][c] for c in columns))) if len(columns) > 1 else list(splits.datasets[s][columns[0]]))
         for s in SPLITS}
    return FusionData(X, {s: splits.labels(s) for s in SPLITS}, list(splits.classes), splits.digest, columns, "text",
                      splits)


@dataclass
class FusionOutcome:
    """What the run logs: the report, the fused members with their combination, and what ships."""

    report: FusionReport
    members: list[FusionMember]  # what the fused model carries (the soup is one member)
    combination: Combination
    shipped: str  # "fused" or "best_member"
    best_index: int
    fused_test_probs: np.ndarray
    best_test_probs: np.ndarray


def metrics_of(probs: np.ndarray, y: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    from tasks.evaluate.report import classification_metrics

    wanted = list(dict.fromkeys(list(names) + ["accuracy", "log_loss"]))
    safe = np.clip(probs, 1e-7, 1.0)  # as classification_metrics clips, but renormalised so rows still sum to 1
    return classification_metrics(y, safe / safe.sum(1, keepdims=True), wanted)


def fuse(method: Any, members: list[FusionMember], data: FusionData, metric_names: Sequence[str], bootstrap: Any,
         require_gain: bool, sources: Optional[list[str]] = None, run_ids: Optional[list[Optional[str]]] = None) -> FusionOutcome:
    """Fit `method` on validation, score everything on test once, and decide what ships."""
    names = [m.name for m in members]
    for m in members:
        if [str(c) for c in m.classes] != [str(c) for c in data.classes]:
            raise ValueError(f"member {m.name} predicts classes {m.classes}, the data has {data.classes}")
    y_val, y_test = data.y["validation"], data.y["test"]
    val_logits = np.stack([m.logits(data.X["validation"]) for m in members])
    test_logits = np.stack([m.logits(data.X["test"]) for m in members])  # the one pass over test
    val_probs, test_probs = softmax(val_logits), softmax(test_logits)
    val_scores = [score(p, y_val) for p in val_probs]
    best = max(range(len(members)), key=lambda i: val_scores[i])  # ties -> the first member

    if method.level == "output":
        combination = method.fit(val_logits, y_val)
        fused_val, fused_test = combination.probabilities(val_logits), combination.probabilities(test_logits)
        carried, member_weights, details = members, combination.member_weights(), combination.to_dict()
    else:
        soup = _soup(method, members, data)
        combination = Combination("probs", np.ones(1), details={"trace": soup["trace"]})
        carried, member_weights, details = [soup["member"]], soup["weights"], {"trace": soup["trace"]}
        fused_val = softmax(soup["member"].logits(data.X["validation"]))
        fused_test = softmax(soup["member"].logits(data.X["test"]))
    mean_val, mean_test = val_probs.mean(0), test_probs.mean(0)

    gain = score(fused_val, y_val) > val_scores[best]
    shipped = "fused" if gain or not require_gain else "best_member"
    if gain:
        note = (f"fused model beats the best member ({names[best]}) on validation (accuracy, then log loss); "
                "the fused model is logged")
    elif require_gain:
        note = (f"fused model is not better than the best member ({names[best]}) on validation; "
                f"the best member is logged instead (require_gain: true)")
    else:
        note = (f"fused model is not better than the best member ({names[best]}) on validation; "
                "it is logged anyway (require_gain: false)")
    boot = {key: paired_bootstrap(fused, ref, bootstrap.samples, bootstrap.confidence, bootstrap.seed)
            for key, fused, ref in (
                ("accuracy", fused_test.argmax(1) == y_test, test_probs[best].argmax(1) == y_test),
                ("log_loss", nll(fused_test, y_test), nll(test_probs[best], y_test)))}
    def scores(val: np.ndarray, test: np.ndarray) -> dict[str, dict[str, float]]:
        return {"val": metrics_of(val, y_val, metric_names), "test": metrics_of(test, y_test, metric_names)}

    report = FusionReport(
        method=method.model_dump(mode="json"), level=method.level, classes=[str(c) for c in data.classes],
        sizes={split: int(len(y)) for split, y in data.y.items()}, data_digest=data.digest,
        members=[MemberScores(name=n, source=(sources or names)[i], run_id=(run_ids or [None] * len(names))[i],
                              weight=float(member_weights[i]), **scores(val_probs[i], test_probs[i]))
                 for i, n in enumerate(names)],
        best_member=BestMember(name=names[best], index=best, **scores(val_probs[best], test_probs[best])),
        mean=Scores(**scores(mean_val, mean_test)), fused=Scores(**scores(fused_val, fused_test)),
        combination=details, bootstrap=boot, gain_on_validation=bool(gain), require_gain=require_gain,
        shipped=shipped, note=note)
    return FusionOutcome(report, carried, combination, shipped, best, fused_test, test_probs[best])


def _soup(method: Any, members: list[FusionMember], data: FusionData) -> dict[str, Any]:
    """Average member weights with `method`, scoring candidate soups on validation."""
    if any(not hasattr(m, "state_dict") for m in members) or len({m.kind for m in members}) > 1:
        raise ValueError("soups average network weights; members must be networks of one kind")
    for m in members[1:]:
        if m.spec.get("scaling") != members[0].spec.get("scaling"):
            raise ValueError(f"soup members must share their preprocessing: {m.name}'s feature scaling differs from "
                             f"{members[0].name}'s")
    y_val = data.y["validation"]

    def evaluate(state: dict[str, Any]) -> tuple[float, float]:
        return score(softmax(members[0].with_state("candidate", state).logits(data.X["validation"])), y_val)

    result = method.fit_soup([m.state_dict() for m in members], [m.name for m in members], evaluate)
    return {"member": members[0].with_state("soup", result.state), "weights": result.weights, "trace": result.trace}
