"""Learning curves (grm.training.curves): the accuracy of a vote, what `measure` reports on a scripted judge, and
the callback's rows (one per step, resumable, the model's train/eval mode restored)."""

import json

import pytest
import torch

from grm import GRM, Example
from grm.training.curves import CurveCallback, measure, table, vote_accuracy
from helpers import ScriptedBackend, judge_by

EXAMPLES = [
    Example("always right", ["8 good", "3 bad"], [1.0, 0.0], id="a"),
    Example("always wrong", ["3 good", "8 bad"], [1.0, 0.0], id="b"),
    Example("a tie", ["5 a", "5 b"], [0.0, 1.0], id="c"),
]


def scripted() -> GRM:
    return GRM(ScriptedBackend(judge_by(lambda r: int(r.split()[0]))))  # each response's leading number


def test_vote_accuracy_sums_scores_and_splits_ties():
    assert vote_accuracy([[9, 2], [2, 9], [9, 2]], [1, 0]) == 1.0
    assert vote_accuracy([[9, 2], [2, 9]], [1, 0]) == 0.5
    assert vote_accuracy([[2, 9, 9]], [0, 1, 0.5]) == 0.5 and vote_accuracy([[9, 9, 9]], [0, 1, 0.5]) == 1 / 3
    assert vote_accuracy([None, [2, 9]], [0, 1]) == 1.0 and vote_accuracy([None], [0, 1]) == 0.5
    assert vote_accuracy([[2, 9, 1]], [0, 1]) == 0.5  # a judgement of the wrong length does not vote
    assert vote_accuracy([[6], [8]], [7]) == 1.0 and vote_accuracy([[7]], [6]) == 0.0
    assert vote_accuracy([None], [7]) == 0.0


def test_measure_reports_the_rule_reward_and_accuracy():
    out = measure(scripted(), EXAMPLES, k=4, seed=0, rule=lambda j, e: e.id != "b")
    assert out == {
        "reward": pytest.approx((1 - 1 - 1) / 3),  # a tie is not correct by SPCT's rule
        "rule_pass": pytest.approx(2 / 3),
        "voting@1": pytest.approx(0.5),
        "voting@4": pytest.approx(0.5),  # right, wrong, a coin toss
        "greedy": pytest.approx(0.5),
    }
    assert set(measure(scripted(), EXAMPLES[:1], k=1, greedy=False)) == {"reward", "voting@1"}
    with pytest.raises(ValueError, match="at least one labelled example"):
        measure(scripted(), [])


def test_the_callback_writes_a_row_per_step_once_and_restores_the_mode(tmp_path):
    model = torch.nn.Linear(2, 2)
    modes = []

    def make_grm(m):
        modes.append(m.training)
        m.eval()  # as the transformers backend does
        return scripted()

    path = tmp_path / "curves.jsonl"
    callback = CurveCallback(path, make_grm, EXAMPLES, EXAMPLES[:1], every=2, k=2, seed=1)

    class State:
        global_step, max_steps = 0, 5

    callback.on_train_begin(None, State, None, model=model)
    for step in range(1, 6):
        State.global_step = step
        callback.on_step_end(None, State, None, model=model)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4, 5]  # every 2 steps, and the last
    assert rows[0]["train_reward"] == 1.0 and rows[0]["heldout_reward"] == pytest.approx(-1 / 3)
    assert {"greedy", "voting@1", "voting@2", "seconds"} <= set(rows[0]) and "heldout_rule_pass" not in rows[0]
    assert model.training and all(modes)
    assert callback.point(4, model) is None and len(path.read_text().splitlines()) == 4  # a resumed run goes on
    with pytest.raises(ValueError, match="every must be >= 1"):
        CurveCallback(path, make_grm, EXAMPLES, [], every=0)
    lines = table([tmp_path]).splitlines()  # python -m grm.training.curves RUN...: a sweep's curves side by side
    assert lines[0] == "| run | step | heldout_reward | train_reward | greedy | voting@1 | voting@2 |"
    assert len(lines) == 2 + 4 and lines[2].startswith(f"| {tmp_path.name} | 0 | -0.333 | +1.000 | 50.0 |")
    with pytest.raises(ValueError, match="no curves.jsonl"):
        table([tmp_path / "elsewhere"])
