"""The release's resampler (torchaudio's Resample, written out): sample for sample the official prompt
resamplings recorded in the goldens of tests/reference."""

import numpy as np
import pytest

from golden_tts import golden
from stepaudio.audio import mel_spectrogram, resample
from stepaudio.audio.sinc import resample_sinc
from stepaudio.errors import AudioError


def test_equals_the_release_resampling_of_a_24khz_prompt():
    """preprocess_prompt_wav's torchaudio.transforms.Resample(24000, 22050) and (24000, 16000)."""
    mel, _ = golden("prompt_mel")
    camp, _ = golden("campplus")
    assert np.array_equal(resample_sinc(mel["raw"].numpy(), 24_000, 22_050), mel["wav_22k"].numpy())
    assert np.array_equal(resample_sinc(camp["raw"].numpy(), 24_000, 16_000), camp["wav_16k"].numpy())
    # soxr (the rest of the project's resampler) is not it: the golden tests' xfails in tests/reference
    assert not np.allclose(resample(camp["raw"].numpy(), 24_000, 16_000), camp["wav_16k"].numpy(), atol=1e-4)


def test_a_16khz_speaker_wav_upsampled_gives_the_release_prompt_mel():
    """The release's call makes its registered speaker's 22.05 kHz mel from the 16 kHz wav (upsampling)."""
    tensors, _ = golden("tts_e2e_fp32")
    ours = mel_spectrogram(resample_sinc(tensors["speaker_wav"].numpy(), 16_000, 22_050))
    assert float((ours - tensors["speech_feat"].T).abs().max()) < 1e-4


@pytest.mark.parametrize(("source", "target"), [(44_100, 22_050), (44_100, 16_000), (8_000, 22_050), (48_000, 16_000)])
def test_lengths_and_identity(source, target):
    samples = np.random.default_rng(0).standard_normal(12_345).astype(np.float32)
    out = resample_sinc(samples, source, target)
    assert out.dtype == np.float32 and len(out) == -(-12_345 * target // source)  # ceil, as torchaudio
    assert np.array_equal(resample_sinc(samples, source, source), samples)
    with pytest.raises(AudioError):
        resample_sinc(samples, source, 0)
