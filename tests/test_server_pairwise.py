"""``grm serve`` with a judge that compares two responses at a time (``pairwise-verdict``): a warning at start
where per-sample RL requests could not be judged (no group size), a refusal where they never could (chunks of 2),
and, through the app, a sample left with no other response to be compared with answered with an error naming the
judge and what to change, not a template's UndefinedError; a prompt's per-sample requests held as a group are
compared pair by pair."""

import asyncio
import json

import httpx
import pytest
from rl_helpers import LongerWins
from servers import AppServer

import grm.cli
from grm import GRM, Item, ScoringOptions
from grm.cli import main
from grm.integrations.groups import Sample, group_key
from grm.server import ServerConfig, create_app

PROMPT = "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"
MESSAGES = [{"role": "user", "content": "Name a fruit."}]


def pairwise(backend=None) -> GRM:
    return GRM(backend or LongerWins(), judge="pairwise-verdict")


@pytest.fixture
def served():
    started = []

    def start(rm, **config):
        started.append(AppServer(create_app(rm, ServerConfig(**config))))
        return started[-1].url

    yield start
    for s in started:
        s.stop()


def openrlhf(response: str, prompt: str = PROMPT) -> dict:
    return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [None]}


def post_all(url, posts):
    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(*(client.post(path, json=b) for path, b in posts))

    return asyncio.run(main())


@pytest.mark.parametrize("judge", ["pairwise-verdict", "prometheus-relative", "rm-r1"])
def test_a_pairwise_judge_without_a_group_size_serves_score_and_warns_about_single_samples(judge, caplog, served):
    rm = GRM(LongerWins(), judge=judge)
    with caplog.at_level("WARNING", logger="grm.server"):
        url = served(rm)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"the {judge!r} judge compares two responses at a time: /score works" in warning
    assert "--group-size" in warning and "/get_reward" in warning
    if judge == "pairwise-verdict":  # the scripted judge reads this format's prompt
        score = httpx.post(f"{url}/score", json={"query": "Name a fruit.", "responses": ["fig", "kiwi"]})
        assert score.status_code == 200 and score.json()["best"] == 1
    single = httpx.post(f"{url}/get_reward", json=openrlhf("fig"))  # not held in a group: an error, not judged
    assert single.status_code == 400
    error = single.json()["error"]
    assert f"the {judge!r} judge compares two responses at a time and needs at least two" in error
    assert "group size 0" in error and "--group-size" in error and "Undefined" not in error
    with pytest.raises(ValueError, match="--n-max .* at least 3"):  # chunks of 2 can leave one response alone
        create_app(rm, ServerConfig(group_size=8, n_max=2))
    caplog.clear()
    with caplog.at_level("WARNING", logger="grm.server"):
        create_app(rm, ServerConfig(group_size=8))  # holds a prompt's samples: no warning
        create_app(GRM(LongerWins()), ServerConfig())  # a judge that scores one response needs no group
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_grm_serve_refuses_chunks_of_two_before_loading_the_model(monkeypatch, tmp_path, capsys):
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(grm.cli, "load_grm", load)
    assert main(["serve", "--judge", "pairwise-verdict", "--group-size", "8", "--n-max", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'pairwise-verdict' judge" in err and "--n-max" in err
    folder = tmp_path / "grm"  # the judge named by the model folder's grm_config.json
    folder.mkdir()
    (folder / "grm_config.json").write_text(json.dumps({"judge": "rm-r1"}))
    assert main(["serve", "--model", str(folder), "--n-max", "2"]) == 2
    assert "'rm-r1' judge compares two responses" in capsys.readouterr().err


def test_one_response_to_score_gets_an_error_naming_the_judge(served):
    url = served(pairwise(), group_size=4)
    reply = httpx.post(f"{url}/score", json={"query": "Name a fruit.", "responses": ["fig"]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "'pairwise-verdict' judge" in error and "at least 2 responses, got 1" in error and "Undefined" not in error
    assert httpx.post(f"{url}/score", json={"query": "Name a fruit.", "responses": ["fig", "kiwi"]}).status_code == 200


def test_per_sample_requests_held_as_a_group_are_compared_pair_by_pair(served):
    responses = ["fig", "kiwi", "apple", "banana"]
    rm = pairwise()
    url = served(rm, seed=7, group_size=len(responses), group_wait_s=10, default_k=2)
    replies = post_all(url, [("/get_reward", openrlhf(r)) for r in reversed(responses)])
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    got = {r: reply.json() for r, reply in zip(reversed(responses), replies)}
    # the longer wins every comparison: reward = the share of the others it beats
    assert {r: g["rewards"][0] for r, g in got.items()} == pytest.approx({r: i / 3 for i, r in enumerate(responses)})
    assert all(g["extra_logs"]["grm_group_size"] == [4.0] for g in got.values())
    options = ScoringOptions(k=2, seed=7)  # the same as scoring the group at once
    key = group_key(Sample(MESSAGES, ""), options)
    (expected,) = pairwise().score_batch([Item(MESSAGES, sorted(responses))], options, keys=[key])
    assert dict(zip(sorted(responses), expected.normalized(rm.score_range))) == {
        r: g["scores"][0] for r, g in got.items()
    }


def test_a_sample_left_alone_gets_an_error_naming_the_judge_and_what_to_do(served):
    backend = LongerWins()
    url = served(pairwise(backend), seed=1, group_size=3, group_wait_s=0.3)
    other = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    posts = [("/get_reward", openrlhf("fig"))]  # its group's other samples never come
    posts += [("/get_reward", openrlhf(r, other)) for r in ("red", "blue")]  # a group of two, released on time
    lone, red, blue = post_all(url, posts)
    assert lone.status_code == 400
    error = lone.json()["error"]
    assert "'pairwise-verdict' judge compares two responses at a time and needs at least two" in error
    assert "released after the 0.3 s wait holding it alone" in error and "--group-size" in error
    assert (red.status_code, blue.status_code) == (200, 200)
    assert red.json()["rewards"] == [0.0] and blue.json()["rewards"] == [1.0]  # the other group is unaffected
    assert backend.pairs and all("fig" not in pair for pair in backend.pairs)  # the lone one cost no judgement
    # slime: one sample alone, or a group of one
    late = httpx.post(f"{url}/reward", json={"prompt": MESSAGES, "response": "fig"})  # its group was judged
    assert late.status_code == 400 and "needs at least two" in late.json()["error"]
    one = httpx.post(f"{url}/reward", json={"samples": [{"prompt": MESSAGES, "response": "plum"}]})
    assert one.status_code == 400 and "sent as a group of one sample" in one.json()["error"]


def test_a_group_of_identical_responses_compares_the_response_with_itself(served):
    backend = LongerWins()
    url = served(pairwise(backend), seed=2, group_size=3, group_wait_s=10, default_k=2)
    replies = post_all(url, [("/get_reward", openrlhf("fig"))] * 3)
    assert [r.status_code for r in replies] == [200] * 3
    assert [r.json()["rewards"] for r in replies] == [[0.5]] * 3  # a tie, the same for every sample
    assert backend.pairs == [("fig", "fig")] * 2  # one pair, k judgements
    group = {"samples": [{"prompt": MESSAGES, "response": "kiwi"}] * 2, "k": 2}
    assert httpx.post(f"{url}/reward", json=group).json()["rewards"] == [0.5, 0.5]
