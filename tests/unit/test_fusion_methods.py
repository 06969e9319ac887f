"""Fusion methods on synthetic logits with known answers, soups on small networks, the bootstrap and the report."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.fusion.base import Combination, SoupMismatch, average_states, score, softmax
from tasks.fusion.config import FusionConfig
from tasks.fusion.report import (BestMember, FusionReport, Interval, MemberScores, Scores, markdown_table,
                                 paired_bootstrap)

CLASSES, N = 4, 600


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three members: two informative ones with independent errors, one pure noise (useless) member."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, N)
    onehot = np.eye(CLASSES)[y]
    good_a = 2.0 * onehot + rng.normal(0, 1.2, (N, CLASSES))
    good_b = 2.0 * onehot + rng.normal(0, 1.2, (N, CLASSES))
    noise = rng.normal(0, 3.0, (N, CLASSES))
    return np.stack([good_a, good_b, noise]), y


def _method(spec):
    return FusionConfig.model_validate({"members": [{"pipeline": "a"}, {"pipeline": "b"}], "method": spec}).method


def test_mean_is_the_average_of_probabilities():
    logits, y = _synthetic()
    combination = _method("mean").fit(logits, y)
    np.testing.assert_allclose(combination.weights, [1 / 3] * 3)
    np.testing.assert_allclose(combination.probabilities(logits), softmax(logits).mean(0))


def test_weighted_gives_a_useless_member_about_zero_weight():
    logits, y = _synthetic()
    combination = _method("weighted").fit(logits, y)
    w = combination.weights
    assert w.shape == (3,) and w.min() >= 0 and abs(w.sum() - 1) < 1e-9
    assert w[2] < 0.05, w  # the noise member
    assert abs(w[0] - w[1]) < 0.15, w  # the two symmetric informative members share the rest
    fused = score(combination.probabilities(logits), y)
    assert fused > max(score(p, y) for p in softmax(logits))  # two independent members beat either one
    assert combination.details["val_loss_last"] < combination.details["val_loss_first"]


def test_weighted_per_class_and_temperature():
    logits, y = _synthetic(1)
    # member 0 is informative only about classes 0-1, member 1 only about classes 2-3
    mask_a = np.isin(np.arange(CLASSES), [0, 1])
    logits[0][:, ~mask_a] = np.random.default_rng(2).normal(0, 3.0, (N, CLASSES - 2))
    logits[1][:, mask_a] = np.random.default_rng(3).normal(0, 3.0, (N, 2))
    combination = _method({"weighted": {"per_class": True, "temperature": True, "steps": 300}}).fit(logits, y)
    w = combination.weights
    assert w.shape == (3, CLASSES)
    np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-9)
    assert (w[0, :2] > w[1, :2]).all() and (w[1, 2:] > w[0, 2:]).all(), w
    assert combination.temperature != 1.0
    plain = _method("weighted").fit(logits, y)
    assert score(combination.probabilities(logits), y) > score(plain.probabilities(logits), y)


def test_greedy_never_picks_a_useless_member_and_weights_are_counts():
    logits, y = _synthetic()
    combination = _method({"greedy": {"rounds": 20}}).fit(logits, y)
    counts = np.asarray(combination.details["counts"])
    assert counts.sum() == 20 and counts[2] == 0, counts
    np.testing.assert_allclose(combination.weights, counts / 20)
    assert combination.space == "probs"


def test_greedy_with_one_dominant_member_picks_only_it():
    rng = np.random.default_rng(4)
    y = rng.integers(0, CLASSES, N)
    perfect = 5.0 * np.eye(CLASSES)[y]
    logits = np.stack([perfect, rng.normal(0, 1, (N, CLASSES)), rng.normal(0, 1, (N, CLASSES))])
    combination = _method({"greedy": {"rounds": 10, "metric": "accuracy"}}).fit(logits, y)
    assert combination.details["counts"] == [10, 0, 0]


def test_combination_round_trips():
    combination = Combination("logits", np.array([[0.2, 0.7], [0.8, 0.3]]), 1.5, {"k": 1})
    again = Combination.from_dict(combination.to_dict())
    logits = np.random.default_rng(0).normal(size=(2, 5, 2))
    np.testing.assert_allclose(again.probabilities(logits), combination.probabilities(logits))


# --- soups -------------------------------------------------------------------------------------------------------

def _network(seed: int, hidden: int = 8):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3))


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_soup_of_identical_members_equals_the_member():
    import torch

    net = _network(0)
    states = [_state(net) for _ in range(3)]
    calls = []

    def evaluate(state):
        calls.append(state)
        return 0.5, -1.0

    for spec in ("soup_uniform", "soup_greedy"):
        result = _method(spec).fit_soup(states, ["a", "b", "c"], evaluate)
        for key, value in net.state_dict().items():
            assert torch.equal(result.state[key], value), (spec, key)
    uniform = _method("soup_uniform").fit_soup(states, ["a", "b", "c"], evaluate)
    np.testing.assert_allclose(uniform.weights, [1 / 3] * 3)


def test_soup_average_is_the_mean_of_weights():
    import torch

    a, b = _state(_network(0)), _state(_network(1))
    soup = average_states([a, b])
    for key in a:
        assert torch.allclose(soup[key], (a[key] + b[key]) / 2)


def test_soup_greedy_keeps_only_members_that_improve_validation():
    states = [_state(_network(s)) for s in range(3)]
    names = ["best", "helps", "hurts"]  # validation: 0.8, 0.7, 0.6 alone

    def evaluate(state):
        import torch

        # a state's score depends on which members it averages: (0, 1) improves on 0 alone, adding 2 does not
        for combo, value in (((0,), 0.8), ((1,), 0.7), ((2,), 0.6), ((0, 1), 0.85), ((0, 2), 0.5), ((0, 1, 2), 0.55)):
            avg = average_states([states[i] for i in combo])
            if all(torch.allclose(avg[k], state[k]) for k in state):
                return value, 0.0
        raise AssertionError("unexpected soup")

    result = _method("soup_greedy").fit_soup(states, names, evaluate)
    np.testing.assert_allclose(result.weights, [0.5, 0.5, 0.0])
    assert [t["kept"] for t in result.trace] == [True, True, False]


def test_soup_of_mismatched_architectures_names_the_first_parameter():
    states = [_state(_network(0, hidden=8)), _state(_network(0, hidden=16))]
    for spec in ("soup_uniform", "soup_greedy"):
        with pytest.raises(SoupMismatch, match=r"parameter '0\.weight' has shape \[16, 4\] in wide but \[8, 4\] in narrow"):
            _method(spec).fit_soup(states, ["narrow", "wide"], lambda s: (0.0, 0.0))
    import torch

    deeper = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 3))
    with pytest.raises(SoupMismatch) as err:
        _method("soup_uniform").fit_soup([_state(_network(0)), _state(deeper)], ["a", "b"], lambda s: (0.0, 0.0))
    assert err.value.parameter == "2.weight"


# --- bootstrap and report ----------------------------------------------------------------------------------------

def test_paired_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(0)
    best = rng.random(2000) < 0.80
    fused = best.copy()
    flip = rng.choice(2000, 100, replace=False)
    fused[flip] = True  # fused fixes some of best's errors: true delta = mean(fused - best) > 0
    ci = paired_bootstrap(fused, best, 1000, 0.95, 0)
    assert ci.low <= ci.delta <= ci.high
    assert ci.low > 0
    same = paired_bootstrap(best, best, 500, 0.95, 0)
    assert same.low == same.high == same.delta == 0


def test_markdown_table_lists_members_best_mean_fused():
    row = {"accuracy": 0.9, "f1_macro": 0.88, "log_loss": 0.3}
    report = FusionReport(
        members=[MemberScores(name="m0", source="p", run_id=None, weight=0.25, val=row, test=row),
                 MemberScores(name="m1", source="p", run_id=None, weight=0.75, val=row, test=row)],
        best_member=BestMember(name="m1", index=1, val=row, test=row), mean=Scores(val=row, test=row),
        fused=Scores(val=row, test=row), method={"method": "weighted"},
        bootstrap={"accuracy": Interval(delta=0.01, low=-0.01, high=0.03, samples=1000, confidence=0.95)},
        shipped="fused", note="ok", level="outputs", classes=["a", "b"], sizes={}, data_digest="", combination={},
        gain_on_validation=True, require_gain=True)
    text = markdown_table(report)
    for name in ("| m0 | 0.250", "| m1 | 0.750", "best member (m1)", "| mean |", "fused (weighted)", "+0.0100"):
        assert name in text, text
