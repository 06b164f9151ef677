import math
from dataclasses import replace

import pytest
import torch
from tiny import TINY_FLOW, tiny_flow

from stepaudio.decoder.conformer import EncoderConfig, RelPositionAttention, relative_positions
from stepaudio.decoder.flow import FlowConfig, FlowModel, place, time_aligned, time_grid
from stepaudio.errors import TokenError
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND


@pytest.fixture
def flow():
    return tiny_flow()


def no_prompt(flow):
    return torch.zeros(0, dtype=torch.long), torch.zeros(80, 0), torch.zeros(flow.config.spk_embed_dim)


def test_mel_frames_follow_the_official_length_regulator(flow):
    for n in (1, 5, 41, 42, 125, 997):
        assert flow.config.mel_frames(n) == math.floor(n / AUDIO_TOKENS_PER_SECOND * 22050 / 256)
    assert flow.config.mel_frames(125) == 258  # 3 s of tokens -> 3 s of mel (258.4 frames)


def test_generate_shapes_and_prompt_cut(flow):
    tokens = torch.randint(0, 5120, (30,))
    frames = flow.config.mel_frames(30)
    mel = flow.generate(tokens, *no_prompt(flow), torch.randn(80, frames))
    assert mel.shape == (80, frames) and torch.isfinite(mel).all()
    prompt_tokens, prompt_mel = torch.randint(0, 5120, (10,)), torch.randn(80, 23)
    noise = torch.randn(80, 23 + frames)
    prompted = flow.generate(tokens, prompt_tokens, prompt_mel, torch.randn(16), noise)
    assert prompted.shape == (80, frames)  # the 23 prompt frames are cut
    other = flow.generate(tokens, prompt_tokens, prompt_mel + 1, torch.randn(16), noise)
    assert not torch.allclose(prompted, other)  # the prompt mel conditions the output


def test_sampling_is_deterministic_given_the_noise(flow):
    tokens, noise = torch.randint(0, 5120, (20,)), torch.randn(80, flow.config.mel_frames(20))
    a = flow.generate(tokens, *no_prompt(flow), noise)
    b = flow.generate(tokens, *no_prompt(flow), noise.clone())
    c = flow.generate(tokens, *no_prompt(flow), torch.randn_like(noise))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_temperature_scales_the_starting_noise(flow):
    tokens, noise = torch.randint(0, 5120, (20,)), torch.randn(80, flow.config.mel_frames(20))
    cooled = FlowModel(replace(flow.config, cfm=replace(flow.config.cfm, temperature=0.5))).eval()
    cooled.load_state_dict(flow.state_dict())
    assert torch.allclose(
        cooled.generate(tokens, *no_prompt(flow), noise), flow.generate(tokens, *no_prompt(flow), noise / 2)
    )
    frozen = FlowModel(replace(flow.config, cfm=replace(flow.config.cfm, temperature=0.0))).eval()
    frozen.load_state_dict(flow.state_dict())
    a = frozen.generate(tokens, *no_prompt(flow), noise)
    assert torch.equal(a, frozen.generate(tokens, *no_prompt(flow), torch.randn_like(noise)))  # the noise is unused


def test_cosine_time_grid():
    grid = time_grid(10, "cosine")
    assert grid[0] == 0 and grid[-1] == pytest.approx(1) and grid[5] == pytest.approx(1 - math.cos(math.pi / 4))
    assert torch.all(grid[1:] > grid[:-1])


def test_one_euler_step_applies_classifier_free_guidance(flow):
    cfm, estimator = flow.decoder, flow.decoder.estimator
    x, mu, cond, spks = torch.randn(1, 80, 12), torch.randn(1, 80, 12), torch.randn(1, 80, 12), torch.randn(1, 80)
    mask, t0 = torch.ones(1, 1, 12), torch.zeros(1)
    with torch.inference_mode():
        v_cond = estimator(x, mask, mu, t0, spks, cond)
        v_free = estimator(x, mask, torch.zeros_like(mu), t0, torch.zeros_like(spks), torch.zeros_like(cond))
        out = cfm.sample(x, mu, spks, cond, n_steps=1, cfg_rate=0.7)
    torch.testing.assert_close(out, x + 1.7 * v_cond - 0.7 * v_free, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_the_encoding(flow):
    tokens = torch.randint(0, 5120, (1, 17))
    padded = torch.cat([tokens, torch.randint(0, 5120, (1, 6))], dim=1)
    with torch.inference_mode():
        speaker = torch.zeros(1, flow.config.spk_embed_dim)
        alone = flow.encode(tokens, speaker)
        batched = flow.encode(torch.cat([padded, padded]), torch.cat([speaker, speaker]), torch.tensor([17, 23]))
    torch.testing.assert_close(batched[0, :17], alone[0], atol=1e-5, rtol=1e-4)


def test_relative_attention_matches_a_direct_computation():
    torch.manual_seed(0)
    attention = RelPositionAttention(EncoderConfig(16, 16, 2, 32, 1, attention_dropout_rate=0.0)).eval()
    x, t = torch.randn(1, 5, 16), 5
    pos = relative_positions(t, 16)[None]
    q, k, v = (lin(x).view(t, 2, 8) for lin in (attention.linear_q, attention.linear_k, attention.linear_v))
    p = attention.linear_pos(pos).view(2 * t - 1, 2, 8)
    out = torch.zeros(t, 2, 8)
    for h in range(2):
        scores = torch.zeros(t, t)
        for i in range(t):
            for j in range(t):
                rel = p[(t - 1) - (i - j), h]  # the table runs from offset T-1 down to -(T-1)
                scores[i, j] = (q[i, h] + attention.pos_bias_u[h]) @ k[j, h] + (q[i, h] + attention.pos_bias_v[h]) @ rel
        out[:, h] = torch.softmax(scores / math.sqrt(8), dim=-1) @ v[:, h]
    expected = attention.linear_out(out.reshape(1, t, 16))
    torch.testing.assert_close(attention(x, pos, None), expected, atol=1e-5, rtol=1e-4)


def test_bad_tokens_are_refused(flow):
    noise = torch.randn(80, flow.config.mel_frames(3))
    with pytest.raises(TokenError, match="0..5119"):
        flow.generate(torch.tensor([1, 5120, 3]), *no_prompt(flow), noise)
    with pytest.raises(TokenError, match="integers"):
        flow.generate(torch.tensor([1.0, 2.0, 3.0]), *no_prompt(flow), noise)
    with pytest.raises(TokenError, match="no speech tokens"):
        flow.generate(torch.zeros(0, dtype=torch.long), *no_prompt(flow), torch.randn(80, 0))


def test_training_loss_has_gradients(flow):
    flow.train()
    generator = torch.Generator().manual_seed(0)
    loss, parts = flow.loss(
        torch.randint(0, 5120, (2, 30)),
        torch.tensor([30, 21]),
        torch.randn(2, 80, 62),
        torch.tensor([62, 43]),
        torch.randn(2, 16),
        generator,
        prior_weight=1.0,
    )
    loss.backward()
    assert torch.isfinite(loss) and flow.input_embedding.weight.grad.abs().sum() > 0
    assert torch.allclose(loss, parts["flow"] + parts["prior"])


def test_time_aligned_slots_pair_each_acoustic_token_with_the_semantic_ones_of_its_time():
    groups = torch.tensor([0, 1, 1024, 1025, 1026, 2, 3, 1027, 1028, 1029])
    assert time_aligned(groups).tolist() == [
        [1024, 0, 0], [1025, 0, 1], [1026, 1, 1], [1027, 2, 2], [1028, 2, 3], [1029, 3, 3],
    ]  # fmt: skip
    assert time_aligned(groups[:8]).tolist()[-1] == [1027, 2, 2]  # a partial group keeps its arrived slots
    assert len(time_aligned(groups[:7])) == 3


def test_time_aligned_flow_trains_and_generates_with_a_prompt():
    flow = FlowModel(replace(TINY_FLOW, token_layout="time_aligned"))
    loss, _ = flow.loss(
        torch.randint(0, 5120, (2, 30)), torch.tensor([30, 22]), torch.randn(2, 80, 62), torch.tensor([62, 45]),
        torch.randn(2, 16), prior_weight=1.0,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss)
    prompt, tokens = torch.randint(0, 5120, (10,)), torch.randint(0, 5120, (23,))
    frames = flow.config.mel_frames(23)
    mel = flow.generate(tokens, prompt, torch.randn(80, 20), torch.randn(16), torch.randn(80, 20 + frames))
    assert mel.shape == (80, frames)
    with pytest.raises(TokenError, match="whole groups"):
        flow.generate(tokens, prompt[:7], torch.randn(80, 20), torch.randn(16), torch.randn(80, 20 + frames))


def test_encoded_length_counts_the_time_aligned_slots():
    flow = FlowModel(replace(TINY_FLOW, token_layout="time_aligned"))
    for n in range(0, 23):
        assert flow.encoded_length(n) == len(time_aligned(torch.zeros(n, dtype=torch.long)))


def test_placing_gives_each_mel_frame_the_vector_of_its_place_in_its_slot():
    slots, per_slot = 30, 4
    h = torch.arange(slots * per_slot, dtype=torch.float32).view(1, slots, per_slot, 1).repeat(1, 1, 1, 2)
    frames = 103  # 30 slots of 40 ms at 22.05 kHz / 256: 103.4 frames
    placed = place(h.view(1, slots, -1), frames, per_slot)[0, 0]  # [frames]: slot * per_slot + place
    seconds = torch.arange(frames) * 256 / 22050
    expected = (seconds / 0.04 * per_slot).floor()  # the quarter of a 40 ms slot each frame starts in
    assert (placed - expected).abs().max() <= 1  # the frames are stretched over the slots (103 for 103.4)
    assert placed[0] == 0 and placed[-1] // per_slot == slots - 1  # from the first slot to the last
    assert (placed.diff() > 0).all()  # 11.6 ms frames, 10 ms places: forward, never the same place twice


def test_slot_frames_flow_trains_and_generates_with_a_prompt():
    flow = FlowModel(replace(TINY_FLOW, token_layout="time_aligned", slot_frames=4, sampling_ratios=()))
    loss, parts = flow.loss(
        torch.randint(0, 5120, (2, 30)), torch.tensor([30, 22]), torch.randn(2, 80, 62), torch.tensor([62, 45]),
        torch.randn(2, 16), prior_weight=1.0,
    )  # fmt: skip
    loss.backward()
    assert torch.isfinite(parts["prior"]) and flow.encoder_proj.weight.grad.abs().sum() > 0
    prompt, tokens = torch.randint(0, 5120, (10,)), torch.randint(0, 5120, (23,))
    frames = flow.config.mel_frames(23)
    mel = flow.generate(tokens, prompt, torch.randn(80, 20), torch.randn(16), torch.randn(80, 20 + frames))
    assert mel.shape == (80, frames) and torch.isfinite(mel).all()
    with pytest.raises(ValueError, match="time_aligned"):
        FlowConfig(slot_frames=4)


def test_a_new_slot_frames_flow_starts_with_mu_at_the_mel_of_its_acoustic_codes():
    flow = FlowModel(replace(TINY_FLOW, token_layout="time_aligned", slot_frames=4, sampling_ratios=())).eval()
    torch.nn.init.normal_(flow.code_mel.weight)
    tokens = torch.tensor([0, 1, 1024, 1025, 1026])  # one group: acoustic codes 0, 1, 2
    h = flow.encode(tokens[None], torch.randn(1, flow.config.spk_embed_dim))  # [1, 3 slots, 4 x 80]
    assert torch.equal(h[0], flow.code_mel.weight[:3])
    mu = flow.length_regulator([(h, 10)])[0]  # 10 frames over 3 slots of 4 places
    assert torch.allclose(mu[:, 0], flow.code_mel.weight[0, :80])  # frame 0: first place of slot 0
    assert torch.allclose(mu[:, -1], flow.code_mel.weight[2, 160:240])  # frame 9 at 2.7: third place of slot 2


def test_an_encoder_told_the_speaker_starts_deaf_to_it_and_learns_to_hear_it():
    flow = FlowModel(replace(TINY_FLOW, encoder_speaker=True)).eval()
    tokens = torch.randint(0, 5120, (1, 20))
    one, other = torch.randn(2, 1, flow.config.spk_embed_dim)
    with torch.inference_mode():
        assert torch.equal(flow.encode(tokens, one), flow.encode(tokens, other))  # zero projection: as official
        torch.nn.init.normal_(flow.encoder_speaker.weight)
        assert not torch.allclose(flow.encode(tokens, one), flow.encode(tokens, other))
    assert "encoder_speaker.weight" not in FlowModel(TINY_FLOW).state_dict()  # official flows: no such weight
