"""Prompt sets: exact token counts, round trips, determinism, shared prefixes, growing chats."""
import logging

import pytest

from localbench.workload.prompts import PromptError, build_prompts, encode


@pytest.fixture(scope="module")
def prompt_set(tiny_tokenizer):
    return build_prompts(tiny_tokenizer, ["unique", "prefix", "code", "chat"], [64, 200], per_length=2, seed=1,
                 prefix_fraction=0.75, chat_turns=3, max_context=8000)


def test_exact_lengths_and_round_trip(prompt_set, tiny_tokenizer):
    for p in prompt_set:
        assert encode(tiny_tokenizer, p.text) == p.ids if not p.chat else True
        if p.workload != "chat":
            assert p.n_tokens == p.target_tokens


def test_deterministic(prompt_set, tiny_tokenizer):
    again = build_prompts(tiny_tokenizer, ["unique", "prefix", "code", "chat"], [64, 200], per_length=2, seed=1,
                  prefix_fraction=0.75, chat_turns=3, max_context=8000)
    assert [p.ids for p in again] == [p.ids for p in prompt_set]


def test_prefix_prompts_share_their_prefix(prompt_set):
    a, b = [p for p in prompt_set if p.workload == "prefix" and p.target_tokens == 200]
    assert a.prefix_tokens >= 150 and a.ids[:a.prefix_tokens] == b.ids[:b.prefix_tokens] and a.ids != b.ids


def test_unique_prompts_have_low_repetition(prompt_set):
    p = next(p for p in prompt_set if p.workload == "unique" and p.target_tokens == 200)
    assert len(set(p.ids)) / len(p.ids) > 0.8


def test_code_prompts_are_python_source(prompt_set):
    p = next(p for p in prompt_set if p.workload == "code")
    assert any(word in p.text for word in ("def ", "import ", "class ", "return", "self"))


def test_chat_context_grows_turn_by_turn(prompt_set):
    turns = [p for p in prompt_set if p.workload == "chat" and p.session == 0 and p.target_tokens == 200]
    assert [p.turn for p in turns] == [0, 1, 2]
    assert turns[0].n_tokens < turns[1].n_tokens < turns[2].n_tokens
    assert turns[2].ids[:turns[1].n_tokens - 3] == turns[1].ids[:turns[1].n_tokens - 3]
    assert len(turns[2].messages) == 5


def test_lengths_clipped_to_context(tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING):
        ps = build_prompts(tiny_tokenizer, ["unique"], [64, 5000], 1, 0, 0.5, 1, max_context=1000)
    assert [(p.workload, p.target_tokens) for p in ps] == [("unique", 64), ("warmup", 64)]
    assert "exceeds the model's usable context" in caplog.text


def test_bad_type_is_one_clear_error(tiny_tokenizer):
    with pytest.raises(PromptError, match="workload.types"):
        build_prompts(tiny_tokenizer, ["poetry"], [64], 1, 0, 0.5, 1, max_context=1000)


def test_no_reuse_prompts_share_no_first_token(prompt_set):
    """A cold cell cannot hit a prefix cache: unique, code and warm-up prompts each start differently."""
    firsts = [p.ids[0] for p in prompt_set if p.workload in ("unique", "code", "warmup")]
    assert len(firsts) == 9 and len(set(firsts)) == len(firsts)


def test_warmup_prompt_is_outside_the_plan(prompt_set):
    warm = [p for p in prompt_set if p.workload == "warmup"]
    assert len(warm) == 1 and warm[0].target_tokens == 64
    assert all(p.ids[:8] != warm[0].ids[:8] for p in prompt_set if p is not warm[0])
