import pytest
import torch

from stepaudio.lm.sampling import Sampling, ban_repeats, next_token_probs, penalize_repeats, sample


def official_rule(scores: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The release's repetition-aware processor restated: window of 10, ratio of the last token > 0.1."""
    scores = scores.clone()
    window = input_ids[:, -10:]
    if window.shape[1] < 10:
        return scores
    last = window[:, -1]
    for row in range(len(scores)):
        if (window[row] == last[row]).sum() / 10 > 0.1:
            scores[row, last[row]] = float("-inf")
    return scores


def test_repetition_rule_equals_the_official_processor():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        history = torch.randint(0, 6, (3, int(torch.randint(1, 16, (), generator=generator))), generator=generator)
        logits = torch.randn(3, 6, generator=generator)
        torch.testing.assert_close(ban_repeats(logits, history, window=10, limit=2), official_rule(logits, history))


def test_repetition_rule_bans_only_the_last_token_when_repeated():
    logits = torch.zeros(1, 5)
    banned = ban_repeats(logits, torch.tensor([[0, 1, 2, 3, 3, 0, 1, 2, 4, 3]]), window=10, limit=2)
    assert banned[0].tolist() == [0, 0, 0, float("-inf"), 0]
    assert ban_repeats(logits, torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 4, 3]]), 10, 2)[0, 3] == float("-inf")
    assert ban_repeats(logits, torch.tensor([[0, 1, 2, 5, 4, 0, 1, 2, 4, 3]]), 10, 2).isfinite().all()
    assert ban_repeats(logits, torch.tensor([[3, 3]]), 10, 2).isfinite().all()  # window not full yet


def test_repetition_penalty_equals_transformers():
    processing = pytest.importorskip("transformers.generation.logits_process")
    torch.manual_seed(0)
    logits, history = torch.randn(2, 50), torch.randint(0, 50, (2, 12))
    expected = processing.RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    torch.testing.assert_close(penalize_repeats(logits, history, 1.3), expected)


def test_repetition_penalty_ignores_padding_and_changes_the_greedy_choice():
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    history = torch.tensor([[-1, -1, 0]])  # padding, then token 0
    torch.testing.assert_close(penalize_repeats(logits, history, 1.1), torch.tensor([[2.0 / 1.1, 1.9, -1.0]]))
    assert sample(logits, Sampling(repetition_penalty=1.1), history).item() == 1
    assert sample(logits, Sampling(), history).item() == 0


def test_greedy_is_argmax_and_respects_the_ban():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample(logits, Sampling()).item() == 1
    history = torch.tensor([[1] * 10])
    assert sample(logits, Sampling(repetition_window=10), history).item() == 3


def test_top_k_and_top_p_limit_the_support():
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    probs = next_token_probs(logits, Sampling(temperature=1.0, top_k=2))
    torch.testing.assert_close(probs, torch.tensor([[4 / 7, 3 / 7, 0, 0]]))
    probs = next_token_probs(logits, Sampling(temperature=1.0, top_p=0.75))  # 0.4 + 0.3 < 0.75: keep three
    torch.testing.assert_close(probs, torch.tensor([[4 / 9, 3 / 9, 2 / 9, 0]]))
    probs = next_token_probs(logits, Sampling(temperature=1.0, top_p=0.01))  # the best token always stays
    assert probs[0].tolist() == [1, 0, 0, 0]


def test_temperature_sharpens_and_seed_reproduces():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    cold = next_token_probs(logits, Sampling(temperature=0.5))
    warm = next_token_probs(logits, Sampling(temperature=2.0))
    assert cold[0, 1] > logits.softmax(-1)[0, 1] > warm[0, 1]
    draws = [
        [
            sample(logits, Sampling(temperature=1.0), generator=torch.Generator().manual_seed(seed)).item()
            for _ in range(1)
        ]
        for seed in (7, 7)
    ]
    assert draws[0] == draws[1]
    counts = torch.bincount(
        sample(logits.expand(4000, 3), Sampling(temperature=1.0), generator=torch.Generator().manual_seed(1)),
        minlength=3,
    )
    torch.testing.assert_close(counts / 4000, logits.softmax(-1)[0], atol=0.03, rtol=0)


def test_bad_settings_are_refused():
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}, {"max_new_tokens": -1}):
        with pytest.raises(ValueError, match="bad sampling settings"):
            Sampling(**bad)


def test_official_presets():
    tts = Sampling.official_tts()
    assert (tts.temperature, tts.top_k, tts.repetition_window, tts.repetition_limit) == (0.7, 50, 10, 2)
    chat = Sampling.official_chat(max_new_tokens=5)
    assert (chat.temperature, chat.top_p, chat.max_new_tokens) == (0.7, 0.9, 5)
