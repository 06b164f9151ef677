"""The TTS attention guide: its loss rewards the diagonal, and it records the attention the model uses."""

import pytest
import torch

from lm.lm_fixtures import tiny_model
from stepaudio.train.attention_guide import AttentionGuide, Span, diagonal_band, guide_loss


def test_band_peaks_on_the_diagonal():
    band = diagonal_band(12, 4)
    assert band.shape == (12, 4)
    assert band.argmax(-1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_loss_is_lowest_for_attention_along_the_diagonal():
    speech, text = 12, 4
    spans = [[Span(2, 2 + text, 8, 8 + speech)]]

    def loss_of(rows: torch.Tensor) -> float:  # rows [speech, text]: attention of each speech token on the text
        probs = torch.zeros(1, 1, 20, 20)
        probs[0, 0, 8:20, 2:6] = rows
        return guide_loss(probs, spans).item()

    diagonal = torch.eye(text).repeat_interleave(speech // text, dim=0)
    reversed_order = diagonal.flip(-1)
    uniform = torch.full((speech, text), 1 / text)
    elsewhere = torch.zeros(speech, text)  # all attention outside the text
    assert loss_of(diagonal) < 0.1
    assert loss_of(diagonal) < loss_of(uniform) < loss_of(reversed_order) < loss_of(elsewhere) == pytest.approx(1.0)


def test_loss_averages_each_span_over_its_heads_and_speech_tokens_then_over_the_spans():
    probs = torch.rand(2, 3, 30, 30).softmax(-1)
    spans = [[Span(1, 5, 6, 14), Span(15, 18, 19, 30)], [Span(0, 9, 10, 25)]]
    per_span = [
        1 - (probs[row, :, s0:s1, t0:t1] * diagonal_band(s1 - s0, t1 - t0)).sum(-1).mean()
        for row, row_spans in enumerate(spans)
        for t0, t1, s0, s1, _ in row_spans
    ]
    assert guide_loss(probs, spans).item() == pytest.approx(torch.stack(per_span).mean().item(), rel=1e-5)


def test_a_span_that_knows_what_each_speech_token_reads_pulls_attention_there_not_to_an_even_pace():
    speech, text = 6, 10
    reading = torch.tensor([0.5, 0.5, 1.5, 2.5, 7.5, 8.5])  # slow at first, then a jump: not an even pace

    def loss_of(columns: list[int], span: Span) -> float:  # each speech token attends one text token
        probs = torch.zeros(1, 1, 20, 20)
        probs[0, 0, torch.arange(10, 16), torch.tensor(columns)] = 1
        return guide_loss(probs, [[span]]).item()

    read, even = [0, 0, 1, 2, 7, 8], [0, 2, 4, 5, 7, 9]
    aligned, even_pace = Span(0, text, 10, 10 + speech, reading), Span(0, text, 10, 10 + speech)
    assert loss_of(read, aligned) < 0.01 < 0.4 < loss_of(even, aligned)
    assert loss_of(even, even_pace) < loss_of(read, even_pace)


@pytest.mark.parametrize("position", ["rope", "sqrt_alibi"])
def test_recorded_probabilities_are_the_attention_the_layer_applies(position):
    model = tiny_model(position=position, num_layers=3)
    guide = AttentionGuide(model)
    attention = model.layers[1].attn
    head_dim = attention.head_dim
    seen = {}
    attention.register_forward_hook(lambda module, args, output: seen.update(x=args[0]))
    attention.out.register_forward_hook(lambda module, args, output: seen.update(mixed=args[0]))
    model.hidden_states(torch.randint(0, 96, (2, 10)))

    probs = guide.probs
    assert probs.shape == (2, 3, 10, 10) and guide.heads == [3, 4, 5] and guide.kv_heads == [1, 1, 1]
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3, 10))
    assert (probs.triu(1) == 0).all()  # nothing from the future
    # probs @ values must be what the layer passed to its output projection for those heads
    values = attention.qkv(seen["x"])[..., -attention.num_kv_heads * head_dim :]
    values = values.view(2, 10, attention.num_kv_heads, head_dim).transpose(1, 2)[:, guide.kv_heads]
    expected = seen["mixed"].view(2, 10, attention.num_heads, head_dim).transpose(1, 2)[:, guide.heads]
    assert torch.allclose(probs @ values, expected, atol=1e-5)
