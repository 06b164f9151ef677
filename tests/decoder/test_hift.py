import math

import numpy as np
import pytest
import torch
from tiny import tiny_hift

from stepaudio.decoder.hift import HarmonicSource, HiFTConfig, WNConv1d


@pytest.fixture
def hift():
    return tiny_hift()


def test_waveform_length_and_limit(hift):
    mel = torch.randn(2, 80, 37)
    with torch.inference_mode():
        audio, f0 = hift(mel)
        assert audio.shape == (2, 37 * 256) and f0.shape == (2, 37) and (f0 >= 0).all()
        hift.conv_post.bias.fill_(10.0)  # huge magnitudes: the output is clipped
        loud, _ = hift(mel)
    assert loud.abs().max() <= 0.99 + 1e-6 and loud.abs().max() > 0.9


def _fundamental_only(config: HiFTConfig) -> HarmonicSource:
    source = HarmonicSource(config)
    with torch.no_grad():
        source.l_linear.weight.zero_()
        source.l_linear.weight[0, 0] = 1.0
        source.l_linear.bias.zero_()
    return source


def test_voiced_source_is_a_sine_at_f0_and_unvoiced_is_noise():
    config = HiFTConfig()
    source = _fundamental_only(config)
    frames = 86
    n = frames * 256
    noise = torch.randn(1, 9, n)
    with torch.no_grad():
        voiced, _ = source(torch.full((1, frames), 220.0), noise, torch.zeros(1, 9))
        unvoiced, _ = source(torch.zeros(1, frames), noise, torch.zeros(1, 9))
    spectrum = np.abs(np.fft.rfft(voiced[0, 0].numpy()))
    assert abs(np.fft.rfftfreq(n, 1 / 22050)[spectrum.argmax()] - 220.0) < 22050 / n
    assert abs(float(unvoiced.std()) - math.tanh(0.1 / 3)) < 0.005  # noise of std alpha/3


def test_source_phase_continues_across_windows():
    config = HiFTConfig()
    source = _fundamental_only(config)
    f0 = torch.linspace(100, 300, 40)[None]
    noise, phases = torch.randn(1, 9, 40 * 256), torch.rand(1, 9)
    with torch.no_grad():
        whole, cycles = source(f0, noise, phases)
        cut = 17 * 256
        first, _ = source(f0[:, :17], noise[..., :cut], phases)
        second, _ = source(f0[:, 17:], noise[..., cut:], phases, cycles[:, :, cut - 1])
    torch.testing.assert_close(torch.cat([first, second], dim=2), whole, atol=1e-5, rtol=1e-5)


def test_weight_norm_keeps_the_initial_weight_and_the_official_names():
    torch.manual_seed(0)
    conv = WNConv1d(4, 6, 3, padding=1)
    assert {name for name, _ in conv.named_parameters()} == {"weight_g", "weight_v", "bias"}
    assert conv.weight_g.shape == (6, 1, 1)
    x = torch.randn(1, 4, 10)
    plain = torch.nn.functional.conv1d(x, conv.weight_v, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), plain)  # g starts at |v|
    with torch.no_grad():
        conv.weight_g.mul_(2)
    torch.testing.assert_close(conv(x) - conv.bias[None, :, None], 2 * (plain - conv.bias[None, :, None]))
