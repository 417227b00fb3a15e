"""The built-in judge formats, each following its public source (docs/judges.md gives the details)."""

from __future__ import annotations

from grm.escaping import DELIMITERS
from grm.judges import readers
from grm.judges.format import JudgeFormat
from grm.parsing import parse_judgement

THINK = (r"</?think>",)
"""A thinking judge's tags: in user text they could end or fake the judge's thinking."""
DEEPSEEK_GRM_SECTIONS = (
    r"####(?:[^\n#]*####|evaluationcriteria|conversationcontext|responsestobescored|outputformatrequirements)",
    r"scores?[*_:$]*\\boxed",
)
"""The SPCT paper's prompt's structure and verdict, over the skeleton: a ``#### ... ####`` section header (its four,
also without the closing hashes), and a ``Scores: \\boxed{`` verdict line (spelled as :mod:`grm.parsing` reads
one). An ordinary markdown heading (``#### Step 1``) and a lone ``\\boxed{42}`` are left as they are."""

SPCT = JudgeFormat(
    "spct",
    "default",
    parse_judgement,
    score_range=(1, 10),
    source="DeepSeek SPCT, arXiv 2504.02495 (the output format); the prompt is grm's own wording",
    description="weighted principles, an analysis, then Scores: \\boxed{s1, ..., sn} (the last box), 1-10",
)
DEEPSEEK_GRM = JudgeFormat(
    "deepseek-grm",
    "deepseek_grm",
    parse_judgement,
    score_range=(1, 10),
    delimiters=(*DELIMITERS, *DEEPSEEK_GRM_SECTIONS),
    source="arXiv 2504.02495 v3, Appendix G (the default template); BBQGOD/DeepSeek-GRM-16B and -27B",
    description="the SPCT paper's own prompt, for the public DeepSeek-GRM checkpoints; read as spct",
)
PROMETHEUS_ABSOLUTE = JudgeFormat(
    "prometheus-absolute",
    "prometheus_absolute",
    readers.read_prometheus_absolute,
    shows="one",
    score_range=(1, 5),
    delimiters=(
        *DELIMITERS,
        r"###(?:taskdescription|theinstructiontoevaluate|responsetoevaluate|referenceanswer|scorerubrics?|feedback)",
        r"\[result\]",
    ),
    source="prometheus-eval/prometheus-eval: libs/prometheus-eval/prometheus_eval/prompts.py, parser.py",
    description="one response graded against a rubric: feedback, then [RESULT] n, 1-5",
)
PROMETHEUS_RELATIVE = JudgeFormat(
    "prometheus-relative",
    "prometheus_relative",
    readers.read_prometheus_relative,
    verdict="pairwise",
    shows="two",
    score_range=(0, 1),
    delimiters=(
        *DELIMITERS,
        r"###(?:taskdescription|instruction|response[ab]|referenceanswer|scorerubric|feedback):",
        r"\[result\]",
    ),
    source="prometheus-eval/prometheus-eval: libs/prometheus-eval/prometheus_eval/prompts.py, parser.py",
    description="two responses compared: feedback, then [RESULT] A or [RESULT] B",
)
PAIRWISE_VERDICT = JudgeFormat(
    "pairwise-verdict",
    "pairwise_verdict",
    readers.read_pairwise_verdict,
    verdict="pairwise",
    shows="two",
    score_range=(0, 1),
    delimiters=(*DELIMITERS, r"\[userquestion\]", r"\[\[[abc](?:[<>=]{1,2}[ab])?\]\]"),
    source="lm-sys/FastChat: fastchat/llm_judge/data/judge_prompts.jsonl (pair-v2), common.py; Skywork-Critic",
    description="two responses compared: an explanation, then [[A]], [[B]] or [[C]] (tie); [[A>>B]] strengths too",
)
RM_R1 = JudgeFormat(
    "rm-r1",
    "rm_r1",
    readers.read_answer_tag,
    verdict="pairwise",
    shows="two",
    score_range=(0, 1),
    thinks=True,
    delimiters=(*DELIMITERS, *THINK, r"\[clientquestion\]", r"</?(?:answer|type|rubric|justify|eval|solution)>"),
    source="RM-R1-UIUC/RM-R1: demo/demo.ipynb (prompts), rm_r1/verl/utils/reward_score/lm_as_judge.py (reader)",
    description="two responses compared with a rubric or a solution, then <answer>[[A]]</answer> or [[B]]",
)
REWARD_ANYTHING = JudgeFormat(
    "reward-anything",
    "reward_anything",
    readers.read_reward_anything,
    verdict="listwise",
    score_range=(1, 5),
    thinks=True,
    delimiters=(*DELIMITERS, *THINK),
    source="zhuohaoyu/RewardAnything: rewardanything/processing.py (prompt and reader)",
    description='a principle and masked responses as JSON; thinks, then {"scores": ..., "best-to-worst": [...]}',
)
NEMOTRON_GENRM = JudgeFormat(
    "nemotron-genrm",
    "nemotron_genrm",
    readers.read_nemotron,
    verdict="listwise",
    score_range=(1, 5),
    thinks=True,
    max_responses=2,
    delimiters=(*DELIMITERS, *THINK),
    source="NVIDIA-NeMo/RL (development branch): nemo_rl/data/datasets/preference_datasets/reward_benchmarks.py, "
    "nemo_rl/environments/genrm_environment.py; nvidia/Llama-3_3-Nemotron-Super-49B-GenRM",
    description="helpfulness 1-5 per response in \\boxed{x, y}, and for two a ranking score 1-6 in \\boxed{z}",
)
FLOW_JUDGE = JudgeFormat(
    "flow-judge",
    "flow_judge",
    readers.read_score_tag,
    shows="one",
    score_range=(1, 5),
    delimiters=(
        *DELIMITERS,
        r"</?(?:inputs|output|query|response|reference_answer|evaluation_criteria|scoring_rubric|feedback|score)>",
    ),
    source="flowaicom/flow-judge: flow_judge/utils/prompt_formatter.py, flow_judge/eval_data_types.py",
    description="one response against criteria and a rubric: <feedback>...</feedback><score>n</score>",
)
SELENE = JudgeFormat(
    "selene",
    "selene",
    readers.read_result_line,
    shows="one",
    score_range=(1, 5),
    delimiters=(*DELIMITERS, r"\*\*(?:reasoning|result):\*\*", r"```"),
    source="atla-ai/selene-mini: prompt-templates/ (absolute scoring), cookbooks/",
    description="one response against a rubric: **Reasoning:** ..., then **Result:** n, 1-5",
)

BUILTINS: tuple[JudgeFormat, ...] = (
    SPCT,
    DEEPSEEK_GRM,
    PROMETHEUS_ABSOLUTE,
    PROMETHEUS_RELATIVE,
    PAIRWISE_VERDICT,
    RM_R1,
    REWARD_ANYTHING,
    NEMOTRON_GENRM,
    FLOW_JUDGE,
    SELENE,
)
