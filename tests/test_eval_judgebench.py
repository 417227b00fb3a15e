"""JudgeBench: the loader on the official schema, both orders, and the official +1/-1/0 metric by hand.

tests/fixtures/eval/judgebench holds six pairs (tags ``[qN]`` give each response's score), worked out from
``utils/metrics.py::compute_final_metrics``: per order +1 (agrees with the label), -1 (the opposite), 0 (a tie); a
pair is right when the sum is > 0.

- A judge by the tags alone: pair 1 (A8 B3, A>B) +2; pair 2 (A8 B3, B>A) -2; pair 3 (A5 B5) 0 + 0; pair 4 (A2 B9,
  B>A) +2; pair 5 (A7 B4, A>B) +2; pair 6 (A5 B6, B>A) +2. Right: 1, 4, 5, 6 -> 4/6.
- The same judge with a bonus point for the response shown first: pair 3: (A6 B5) +1, (B6 A5) -1: sum 0, wrong;
  pair 6: (A6 B6) a tie, 0, then (B7 A5) +1: sum 1, right. Still 4/6, by other routes.
- A judge that always prefers the response shown first: +1 and -1 on every pair: 0/6.
"""

import json

import pytest
from eval_helpers import FIXTURES, marker, marker_scalar, run, scripted

from grm.eval import DatasetUnavailable, get_benchmark
from grm.eval.judgebench import family_of
from helpers import shown_responses

DATA = FIXTURES / "judgebench"
FILE = DATA / "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl"


def load(source, **kw):
    return list(get_benchmark("judgebench").items(source, **kw))


def test_loader_reads_the_official_schema_as_two_orders_per_pair():
    items = load(DATA)
    assert [it.id for it in items[:4]] == ["pair-1:AB", "pair-1:BA", "pair-2:AB", "pair-2:BA"] and len(items) == 12
    ab, ba = items[2], items[3]
    assert ab.responses == ["x = 4. [q8]", "x = 2. [q3]"] and ab.truth == [0.0, 1.0], "label B>A"
    assert ba.responses == ab.responses[::-1] and ba.truth == [1.0, 0.0]
    assert ab.subset == "mmlu-pro-math" and ab.query == "Question 2?"
    assert family_of("mmlu-pro-computer science") == "mmlu-pro" and family_of("other") == "other"


def test_loader_names_bad_rows_and_reads_the_gpt_split_by_default(tmp_path, monkeypatch):
    row = json.loads(FILE.read_text().splitlines()[0])
    bad = tmp_path / "jb.jsonl"
    bad.write_text(json.dumps({**row, "label": "A=B"}) + "\n")
    with pytest.raises(ValueError, match="jb.jsonl line 1: label 'A=B'; expected 'A>B' or 'B>A'"):
        load(bad)
    bad.write_text(json.dumps({**row, "response_B": None}) + "\n")
    with pytest.raises(ValueError, match="must be strings"):
        load(bad)
    bad.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="duplicate item id 'pair-1:AB'"):
        run("judgebench", bad, marker_scalar)
    del row["pair_id"]
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"missing field\(s\) \['pair_id'\]"):
        load(bad)
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetUnavailable, match=r"'ScalerLab/JudgeBench' \(config None, split 'gpt'\)"):
        load("ScalerLab/JudgeBench")


def test_a_tag_judge_by_hand():
    r = run("judgebench", DATA, marker_scalar)
    s = r.scores["voting"]
    assert r.headline == s["overall"] == pytest.approx(4 / 6)
    assert s["groups/mmlu-pro"] == 0.5 and s["groups/livebench-math"] == 0.0
    assert s["groups/livebench-reasoning"] == s["groups/livecodebench"] == 1.0
    assert [key for key in s if key.startswith("groups/")] == [
        "groups/mmlu-pro",
        "groups/livebench-reasoning",
        "groups/livebench-math",
        "groups/livecodebench",
    ]
    assert s["subsets/mmlu-pro-law"] == 1.0 and s["subsets/mmlu-pro-math"] == 0.0


def test_a_grm_judges_each_pair_in_both_orders_with_shuffling_off():
    grm, backend = scripted(lambda shown: [marker(x) + (i == 0) for i, x in enumerate(shown)])
    r = run("judgebench", DATA, grm)
    s = r.scores["voting"]
    assert s["overall"] == pytest.approx(4 / 6)
    assert s["subsets/livebench-math"] == 0.0, "pair 3: +1 then -1 sums to 0"
    assert s["subsets/livebench-reasoning"] == 1.0, "pair 6: a tie then +1 sums to 1"
    shown = [shown_responses(req.messages) for call in backend.calls for req in call]
    items = load(DATA)
    assert shown == [it.responses for it in items], "every item shown in its own order"
    assert r.config["shuffle"] is False


def test_a_judge_that_always_picks_the_first_shown_gets_nothing():
    grm, _ = scripted(lambda shown: [9, 1])
    assert run("judgebench", DATA, grm).scores["voting"]["overall"] == 0.0
    with pytest.raises(ValueError, match="judgebench shows the responses in a fixed order: shuffle must be off"):
        run("judgebench", DATA, grm, shuffle=True)


def test_an_unreadable_order_counts_zero():
    grm, _ = scripted(lambda shown: [])  # an empty box: no readable judgement
    r = run("judgebench", DATA, grm)
    assert r.scores["voting"]["overall"] == 0.0 and r.n_unscored == 12


def test_the_bootstrap_draws_both_orders_of_a_pair_together(tmp_path):
    bench = get_benchmark("judgebench")
    assert bench.unit("pair-1:AB") == bench.unit("pair-1:BA") == "pair-1"
    assert bench.unit("odd:id:CD") == "odd:id:CD"
    row = json.loads(FILE.read_text().splitlines()[0])
    data = tmp_path / "law.jsonl"
    data.write_text("".join(json.dumps({**row, "pair_id": f"p{i}"}) + "\n" for i in range(8)))
    # a first-shown judge gets +1 and -1 on every pair: a pair is never right, in any resample of whole pairs
    # (drawn order by order, a resample could hold an AB without its BA and count it right)
    grm, _ = scripted(lambda shown: [9, 1])
    r = run("judgebench", data, grm, n_bootstrap=300)
    assert r.scores["voting"]["overall"] == 0.0 and r.intervals["voting"]["overall"] == (0.0, 0.0)
    # half the pairs right: resampled pair shares are multiples of 1/8
    rows = [{**row, "pair_id": f"p{i}", "label": ["A>B", "B>A"][i % 2]} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("judgebench", data, marker_scalar, n_bootstrap=300, seed=0)
    lo, hi = r.intervals["voting"]["overall"]
    assert r.scores["voting"]["overall"] == 0.5 and lo < 0.5 < hi and (8 * lo) % 1 == 0 == (8 * hi) % 1
