"""Speech decoder intelligibility and speed. Intelligibility is judged by an ASR nobody here trained
(Whisper tiny.en run by faster-whisper): word error rate of the original audio, of a Griffin-Lim
rendering of the decoder mel (the floor any vocoder must beat), of the mini vocoder on that same mel,
of the vocoder on the flow encoder's rough mel (mu, no flow steps: what the encoder gets from the tokens)
and of `stepaudio resynth` with the mini model (tokens -> flow -> vocoder, the input as voice prompt),
also with one stream's tokens shuffled in time (which stream the decoder reads the words from).
Speed: real-time factor of flow (10 Euler steps) + vocoder on 10 s of speech, and the latency of the
first audio chunk of a streaming decode once its first tokens are there.

    python bench/decoder.py [--corpus data/eval-en] [--json out.json] [--flow RUN/export ...]

Sets: the 5 LibriVox clips (real human speech) and, with --corpus, the held-out English test sentences
of a synthesised corpus (in voices seen in training if the corpus has a train split). The issue's
target set is `recipes/mini/run.sh`'s eval corpus: the 30 held-out English sentences read by the
training voices Whisper tiny.en understands (Piper, flite, festival HTS).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from timing import best_time  # noqa: E402

from asr import human_transcripts  # noqa: E402
from conftest import LIBRIVOX  # noqa: E402
from stepaudio.audio import decoder_mel as dm  # noqa: E402
from stepaudio.audio import load_audio, mel_spectrogram, resample  # noqa: E402
from stepaudio.decoder.speaker import SAMPLE_RATE as SPEAKER_RATE  # noqa: E402
from stepaudio.errors import ModelNotFound, StepAudioError  # noqa: E402
from stepaudio.tokenizer.interleave import interleave, split  # noqa: E402


def griffin_lim(samples16: np.ndarray) -> np.ndarray:
    """The decoder mel of the audio, inverted by NNLS + Griffin-Lim (librosa), back at 16 kHz."""
    import librosa

    mel = np.exp(mel_spectrogram(resample(samples16, 16000, dm.SAMPLE_RATE)).numpy())
    magnitude = librosa.feature.inverse.mel_to_stft(
        mel, sr=dm.SAMPLE_RATE, n_fft=dm.N_FFT, power=1.0, fmin=dm.FMIN, fmax=dm.FMAX
    )
    audio = librosa.griffinlim(
        magnitude, n_iter=32, hop_length=dm.HOP_LENGTH, win_length=dm.WIN_LENGTH, n_fft=dm.N_FFT, random_state=0
    )  # fixed starting phases: the same audio in every run
    return resample(audio.astype(np.float32), dm.SAMPLE_RATE, 16000)


def evaluation_sets(corpus: Path | None) -> dict[str, list[tuple[np.ndarray, str]]]:
    librivox = [(load_audio(LIBRIVOX / f"{name}.wav")[0], text) for name, text in human_transcripts().items()]
    sets = {"LibriVox (real)": librivox}
    if corpus:
        from stepaudio.train.data.manifest import manifest_dir, read_manifest

        utterances = read_manifest(corpus)
        train_voices = {u.voice for u in utterances if u.split == "train"}
        tests = [
            u
            for u in utterances
            if u.split == "test" and u.language == "en" and (not train_voices or u.voice in train_voices)
        ]
        root = manifest_dir(corpus)
        sets[f"{Path(corpus).name} test, en"] = [(load_audio(root / u.audio, 16000)[0], u.text) for u in tests]
    return sets


def mini_renderings(decoder, tokenizer) -> dict:
    @torch.inference_mode()
    def voiced(mel: torch.Tensor) -> np.ndarray:
        """The mini vocoder on a decoder mel [1, 80, T], back at 16 kHz."""
        audio, _ = decoder.hift(mel)
        return resample(audio[0].numpy(), dm.SAMPLE_RATE, 16000)

    def vocoder(x: np.ndarray) -> np.ndarray:
        return voiced(mel_spectrogram(resample(x, 16000, dm.SAMPLE_RATE))[None])

    @torch.inference_mode()
    def prior(x: np.ndarray) -> np.ndarray:
        tokens = torch.tensor(tokenizer.encode(x, 16000).interleaved).long()
        embedding = decoder.speaker(resample(x, 16000, SPEAKER_RATE))  # as `decoder.voice` computes it
        return voiced(decoder.flow.prior(tokens, tokens[:0], 0, decoder.flow.config.mel_frames(len(tokens)), embedding))

    return {
        "mini vocoder on that mel": vocoder,
        "mini vocoder on the flow's prior mu": prior,
        "stepaudio resynth (mini)": resynthesis(decoder, tokenizer),
        "resynth, semantic tokens shuffled": resynthesis(decoder, tokenizer, lambda t: shuffled(t, "semantic")),
        "resynth, acoustic tokens shuffled": resynthesis(decoder, tokenizer, lambda t: shuffled(t, "acoustic")),
    }


def shuffled(tokens, stream: str) -> np.ndarray:
    """Interleaved tokens with one stream's codes shuffled in time: resynth of these shows how much of
    what is said the decoder reads from that stream (a TTS LM must get that stream right)."""
    semantic, acoustic = split(tokens)
    rng = np.random.default_rng(0)
    if stream == "semantic":
        return interleave(rng.permutation(semantic), acoustic)
    return interleave(semantic, rng.permutation(acoustic))


def resynthesis(decoder, tokenizer, transform=None):
    """`stepaudio resynth` by this decoder: tokenize, (transform the tokens,) then decode with the input
    as the voice prompt."""

    def resynth(x: np.ndarray) -> np.ndarray:
        voice = decoder.voice(x, 16000, tokenizer.encode(x, 16000, prompt=True).interleaved)
        tokens = tokenizer.encode(x, 16000).interleaved
        pcm, rate = decoder.decode(transform(tokens) if transform else tokens, voice)
        return resample(pcm, rate, 16000)

    return resynth


class EncodedOnce:
    """One stream's tokenizer, encoding each utterance once: every resynth row (and mu) tokenizes the same
    audio, and a candidate with its own acoustic tokenizer shares the semantic codes (the Whisper pass)."""

    def __init__(self, stream):
        self.stream, self.encodings = stream, {}

    def encode(self, samples: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
        key = (hashlib.blake2b(samples.tobytes(), digest_size=16).digest(), sample_rate)
        if key not in self.encodings:
            self.encodings[key] = self.stream.encode(samples, sample_rate)
        return self.encodings[key]


def candidate_renderings(decoder, tokenizer, flows: dict) -> dict:
    """Resynth with each trained flow (e.g. a run's export) in place of the packaged one, the rest of
    mini unchanged: candidates judged in the same run as the packaged flow. A flow whose directory also
    holds an acoustic tokenizer (`acoustic_codebook.safetensors`, the one that made its training tokens)
    is given tokens made with it."""
    from stepaudio.decoder.speech_decoder import SpeechDecoder
    from stepaudio.tokenizer.acoustic_fsq import load_acoustic_mini
    from stepaudio.tokenizer.dual import DualTokenizer

    renderings = {}
    for directory, flow in flows.items():
        own = Path(directory) / "acoustic_codebook.safetensors"
        tokens = tokenizer
        if own.is_file():
            tokens = DualTokenizer(tokenizer.semantic, EncodedOnce(load_acoustic_mini(own)))
        candidate = SpeechDecoder(flow, decoder.hift, decoder.speaker)
        renderings[f"resynth, flow {directory}"] = resynthesis(candidate, tokens)
    return renderings


def seeded(render, samples: np.ndarray) -> np.ndarray:
    """Render from a fixed seed, so that the renderings that draw noise (HiFT's source noise outside
    `SpeechDecoder`) give the same audio, and the same WER, in every run."""
    torch.manual_seed(0)
    return render(samples)


def speed(decoder, tokenizer, repeat: int) -> dict:
    """RTF of decoding 10 s of tokens (voice prompt: 3 s of the same speaker), first streamed chunk latency."""
    clip = load_audio(LIBRIVOX / f"{next(iter(human_transcripts()))}.wav", 16000)[0]
    speech = np.tile(clip, int(np.ceil(13 * 16000 / len(clip))))[: 13 * 16000]
    prompt, target = speech[: 3 * 16000], speech[3 * 16000 :]
    voice = decoder.voice(prompt, 16000, tokenizer.encode(prompt, 16000, prompt=True).interleaved)
    tokens = tokenizer.encode(target, 16000).interleaved
    seconds = best_time(lambda: decoder.decode(tokens, voice), repeat)

    def first_chunk() -> None:
        stream = decoder.stream(voice)
        first = stream.schedule.first_chunk_tokens
        assert len(stream.step(tokens[:first])) > 0

    return {"rtf": seconds / 10.0, "first_chunk_s": best_time(first_chunk, repeat), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a synthesised corpus (its English test split is used)")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs (best is kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--flow", type=Path, action="append", default=[], metavar="DIR",
        help="also resynthesise with this trained flow (flow.safetensors + flow.json) in place of mini's, from tokens "
        "of the acoustic tokenizer beside it if there is one (acoustic_codebook.safetensors); repeatable",
    )  # fmt: skip
    args = parser.parse_args()
    # candidate flows load first: one that is missing or broken is refused before any work
    from stepaudio.decoder.checkpoint import load_model
    from stepaudio.decoder.flow import FlowConfig, FlowModel

    try:
        flows = {directory: load_model(FlowModel, FlowConfig, directory, "flow") for directory in args.flow}
    except StepAudioError as error:
        parser.error(f"--flow: {error}")

    import jiwer
    from judge import EnglishJudge

    renderings = {"original": lambda x: x, "Griffin-Lim of the decoder mel": griffin_lim}
    timing = None
    try:
        from stepaudio.decoder.speech_decoder import SpeechDecoder
        from stepaudio.tokenizer.dual import DualTokenizer

        decoder, tokenizer = SpeechDecoder.load("mini"), DualTokenizer.load("mini")
        encoded = DualTokenizer(EncodedOnce(tokenizer.semantic), EncodedOnce(tokenizer.acoustic))
        renderings |= mini_renderings(decoder, encoded) | candidate_renderings(decoder, encoded, flows)
        timing = speed(decoder, tokenizer, args.repeat)
    except ModelNotFound as error:
        print(f"mini decoder skipped: {error}")

    judge = EnglishJudge()  # after the timing (see bench/judge.py)

    results = []
    for set_name, items in evaluation_sets(args.corpus).items():
        references = [judge.normalize(text) for _, text in items]
        for name, render in renderings.items():
            hypotheses = [judge(seeded(render, samples)) for samples, _ in items]
            results.append({"set": set_name, "audio": name, "utterances": len(items),
                            "wer": jiwer.wer(references, hypotheses)})  # fmt: skip
    width = max(len(name) for name in renderings)
    print(f"{'set':<22} {'audio':<{width}} {'n':>3} {'WER':>7}")
    for row in results:
        print(f"{row['set']:<22} {row['audio']:<{width}} {row['utterances']:>3} {row['wer']:>7.3f}")
    if timing:
        print(
            f"flow (10 steps) + vocoder: RTF {timing['rtf']:.3f} on {timing['threads']} threads; "
            f"first streamed chunk {1000 * timing['first_chunk_s']:.0f} ms after its first tokens"
        )
    if args.json:
        args.json.write_text(json.dumps({"wer": results, "speed": timing}, indent=2))


if __name__ == "__main__":
    main()
