"""grm.flags: one declaration of the shared flags, one set of defaults in every command, ASCII numbers only."""

import argparse

import pytest

from grm.cli import build_parser
from grm.flags import budget, integer, number, real, scoring_options
from grm.scoring import ScoringOptions

COMMANDS = {
    "score": ["score", "--input", "x", "--output", "y"],
    "eval": ["eval", "--benchmark", "rewardbench", "--output", "y"],
    "meta-rm-data": ["train", "meta-rm-data", "--input", "x", "--output", "y"],
    "serve": ["serve"],
}


def test_every_command_has_the_same_scoring_defaults():
    expected = ScoringOptions(k=1, seed=None, max_retries=0)
    for name, argv in COMMANDS.items():
        args = build_parser().parse_args(argv)
        assert scoring_options(args) == expected, name
        assert (args.model, args.backend, args.template, args.max_new_tokens) == (None, "transformers", None, None)
    args = build_parser().parse_args([*COMMANDS["eval"], "-k", "4", "--seed", "7", "--max-retries", "2", "--adaptive"])
    assert scoring_options(args) == ScoringOptions(k=4, seed=7, max_retries=2, adaptive=True)


def test_numbers_are_ascii_only():
    for text in ("\u0663", "\uff17", "\U0001d7d5", "1_000", " 3", "3 ", "0x10", "", "1e3"):
        with pytest.raises(argparse.ArgumentTypeError, match="ASCII"):
            integer()(text)
    assert integer()("-12") == -12 and integer(1)("+3") == 3
    for text in ("nan", "inf", "-inf", "1e400", "\u0663.5", "0.\uff15", "1,5"):
        with pytest.raises(argparse.ArgumentTypeError, match="finite|ASCII"):
            number()(text)
    assert number()("1e-3") == 0.001 and number(0, 1)(".5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match="above 0"):
        number(0, above=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"in 0..1, got 1.5"):
        number(0, 1)("1.5")


def test_budget_is_a_fraction_or_a_count_and_its_range_is_the_options():
    assert [budget(t) for t in ("50%", "0.5", "1.0", "200", "1", "0", "150%")] == [0.5, 0.5, 1.0, 200, 1, 0, 1.5]
    assert isinstance(budget("200"), int) and isinstance(budget("1.0"), float)
    for text in ("\u0663", "half", "5 0", "0x10"):
        with pytest.raises(argparse.ArgumentTypeError, match="ASCII"):
            budget(text)
    for value in ("0", "150%", "nan", "-0.5"):  # parsed, then refused by ScoringOptions, naming the option
        args = build_parser().parse_args([*COMMANDS["score"], "-k", "2", "--budget", value])
        with pytest.raises(ValueError, match="budget must"):
            scoring_options(args)
    for flags, message in ((["--temperature", "inf"], "temperature must be a finite"), (["--risk", "nan"], "risk")):
        with pytest.raises(ValueError, match=message):
            scoring_options(build_parser().parse_args([*COMMANDS["score"], "--adaptive", *flags]))


def test_real_reads_ascii_numbers_and_leaves_the_range():
    assert real("1e-3") == 0.001 and real("-2") == -2.0 and real("nan") != real("nan") and real("inf") > 1e308
    for text in ("\u0663.5", "0.\uff15", "1,5", "", "one"):
        with pytest.raises(argparse.ArgumentTypeError, match="ASCII"):
            real(text)


def test_judge_flags_reach_the_options_and_the_model_and_a_bad_name_fails_before_anything_loads(tmp_path, capsys):
    from grm.cli import main
    from grm.flags import grm_kwargs, model_settings

    for name, argv in COMMANDS.items():
        args = build_parser().parse_args(
            [*argv, "--judge", "pairwise-verdict", "--tournament", "knockout", "--thinking-tokens", "512"]
            + ["--strip-thinking"]
        )
        options = scoring_options(args)
        assert (options.tournament, options.thinking_tokens, options.strip_thinking) == ("knockout", 512, True), name
        assert grm_kwargs(args)["judge"] == "pairwise-verdict" and model_settings(args)["judge"] == "pairwise-verdict"
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"query": "q", "responses": ["a", "b"]}\n')
    out = tmp_path / "out.jsonl"
    assert main(["score", "--input", str(inp), "--output", str(out), "--judge", "no-such"]) == 2
    assert "unknown judge format 'no-such'; the known ones are spct" in capsys.readouterr().err
    assert not out.exists()
