"""Tokens of real speech through a decoder saved and loaded as our own checkpoints, and the CLI's errors."""

import numpy as np
from tiny import TINY_FLOW, TINY_HIFT, tiny_flow, tiny_hift

from stepaudio.audio import load_audio
from stepaudio.cli import main
from stepaudio.decoder.checkpoint import save_model
from stepaudio.decoder.speech_decoder import SpeechDecoder
from stepaudio.tokenizer.dual import DualTokenizer


def test_saved_decoder_loads_and_decodes_real_speech_tokens(tmp_path, speech_path):
    save_model(tiny_flow(), TINY_FLOW, tmp_path, "flow")
    save_model(tiny_hift(), TINY_HIFT, tmp_path, "hift")
    decoder = SpeechDecoder.from_directory(tmp_path)
    samples, rate = load_audio(speech_path)
    tokens = DualTokenizer.load("mini").encode(samples, rate)
    pcm, out_rate = decoder.decode(tokens.interleaved)
    assert out_rate == 22050 and pcm.dtype == np.float32 and np.isfinite(pcm).all()
    assert abs(len(pcm) / out_rate - tokens.seconds) < 0.05
    again, _ = SpeechDecoder.from_directory(tmp_path).decode(tokens.interleaved)
    np.testing.assert_array_equal(pcm, again)  # same weights, same seed: same audio


def test_resynth_refuses_bad_audio_before_loading_models(tmp_path, capsys):
    (tmp_path / "in.wav").write_bytes(b"RIFF nonsense")
    assert main(["resynth", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav")]) == 1
    assert "not readable audio" in capsys.readouterr().err and not (tmp_path / "out.wav").exists()


def test_resynth_refuses_a_bad_output_path_before_loading_models(speech_path, tmp_path, capsys, monkeypatch):
    loads = []
    monkeypatch.setattr(SpeechDecoder, "load", classmethod(lambda cls, *args: loads.append(args)))
    assert main(["resynth", str(speech_path), "-o", str(tmp_path / "out.aac")]) == 1
    assert "cannot write audio as .aac" in capsys.readouterr().err and loads == []


def test_resynth_with_mini_says_its_output_is_experimental_and_why(speech_path, tmp_path, capsys, monkeypatch):
    from stepaudio.errors import OptionError
    from stepaudio.models.measured import MINI_RESYNTH_BENCH, MINI_RESYNTH_WER

    def stop(cls, *args):
        raise OptionError("stopped before decoding")

    monkeypatch.setattr(SpeechDecoder, "load", classmethod(stop))
    assert main(["resynth", str(speech_path), "-o", str(tmp_path / "out.wav")]) == 1
    err = capsys.readouterr().err
    assert "experimental" in err and f"WER {MINI_RESYNTH_WER:.2f}" in err and MINI_RESYNTH_BENCH in err
