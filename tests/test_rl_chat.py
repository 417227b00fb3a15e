"""De-templating a policy's chat-templated text into the conversation and the response (grm.integrations.chat), for
the common templates, and with a policy tokenizer's own special tokens."""

import pytest

from grm.integrations.chat import ChatMarkers, detemplate

MARKERS = ChatMarkers(["<s>", "</s>", "[INST]", "[/INST]", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"])
SYSTEM_USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
USER = [SYSTEM_USER[1]]
CASES = {
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "4<|im_end|><|endoftext|>",
        SYSTEM_USER,
        "4",
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
        "<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "4<|eot_id|>",
        SYSTEM_USER,
        "4",
    ),
    "gemma": (
        "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        "4<end_of_turn>\n",
        USER,
        "4",
    ),
    "mistral": ("<s>[INST] What is 2+2? [/INST]", " 4</s>", USER, " 4"),
    "deepseek": (
        "<｜begin▁of▁sentence｜>Be brief.<｜User｜>What is 2+2?<｜Assistant｜><think>\n",
        "2 and 2.</think>4<｜end▁of▁sentence｜>",
        SYSTEM_USER,
        "<think>2 and 2.</think>4",
    ),
    "phi3": (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
        "4<|end|>",
        SYSTEM_USER,
        "4",
    ),
    "plain": (
        "Question: What is 2+2?\nAnswer:",
        " 4",
        [{"role": "user", "content": "Question: What is 2+2?\nAnswer:"}],
        " 4",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_common_templates_give_back_the_conversation_and_the_response(name):
    prompt, response, messages, expected = CASES[name]
    assert detemplate(prompt, prompt + response, MARKERS) == (messages, expected)


def test_earlier_turns_are_kept_and_a_cut_prompt_is_found_by_its_end():
    prompt = (
        "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    turns = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    assert detemplate(prompt, prompt + "a2<|im_end|>", ChatMarkers()) == (turns, "a2")
    assert detemplate(prompt, prompt[20:] + "a2", ChatMarkers())[1] == "a2"  # a framework cut the prompt's start off
    with pytest.raises(ValueError, match="prompt's end"):
        detemplate(prompt, "something else", ChatMarkers())


@pytest.mark.slow
def test_a_policy_tokenizers_special_tokens_are_markers(tmp_path):
    from grm.tiny import build_tokenizer

    tokenizer = build_tokenizer(["hello world"], vocab_size=300)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokenizer.save_pretrained(tmp_path)
    markers = ChatMarkers.load(tmp_path)
    assert {"<start_of_turn>", "<end_of_turn>", "<|im_end|>"} <= set(markers.tokens)
    prompt, response, messages, expected = CASES["gemma"]
    assert detemplate(prompt.replace("<bos>", ""), prompt.replace("<bos>", "") + response, markers) == (
        messages,
        expected,
    )
    assert detemplate(prompt, prompt + response, ChatMarkers())[0] != messages  # without them: not read as turns
