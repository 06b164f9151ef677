"""Shared test inputs: real read speech when the system has it, and reproducible synthetic sound."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; must precede torch's first import

# The vLLM suite needs vLLM, which lives in its own environment: `make test-vllm` runs it there.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["vllm_engine"]

# Public-domain LibriVox recordings with transcripts, from Debian's pocketsphinx-testdata
# (installed by .ci/run and `make setup`).
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture
def speech_path() -> Path:
    clip = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"
    if not clip.is_file():
        pytest.skip("LibriVox test clips not installed: apt-get install pocketsphinx-testdata")
    return clip


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def mini_chat():
    """The real mini chat LM (SmolLM2-135M-Instruct), loaded once per test module."""
    from stepaudio.errors import ModelNotFound
    from stepaudio.lm.loaders import MINI_CHAT, load_lm

    try:
        return load_lm(MINI_CHAT)
    except ModelNotFound as error:
        pytest.skip(str(error))


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A chirp plus noise with a syllable-rate envelope: broadband and non-stationary, like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chirp = np.sin(2 * np.pi * (150 * t + 900 * t**2 / max(seconds, 1e-3)))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.4 * envelope * chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def stream_in_chunks(stream, samples: np.ndarray, chunk_sizes: list[int]) -> list:
    """Feed samples to a step()/flush() stream in the given chunk sizes (cycled); return every output."""
    pieces, start, i = [], 0, 0
    while start < len(samples):
        size = chunk_sizes[i % len(chunk_sizes)]
        pieces.append(stream.step(samples[start : start + size]))
        start, i = start + size, i + 1
    return pieces + [stream.flush()]


def write_am_mvn(path, shift, scale):
    """The Kaldi nnet1 text layout of a Paraformer am.mvn."""
    dim = len(shift)
    path.write_text(
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {' '.join(map(str, shift))} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {' '.join(map(str, scale))} ]\n</Nnet>\n"
    )


def write_ctranslate2_model(path: Path, spec: str, variables: dict[str, np.ndarray], aliases=(), version: int = 6):
    """A CTranslate2 model.bin in the published binary format (see stepaudio.models.ctranslate2)."""
    import struct

    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}

    def string(text: str) -> bytes:
        data = text.encode() + b"\0"
        return struct.pack("<H", len(data)) + data

    out = [struct.pack("<I", version), string(spec), struct.pack("<II", 3, len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)
        out += [string(name), struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape)]
        out += [struct.pack("<BI", codes[value.dtype], value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(alias) + string(target) for alias, target in aliases]
    path.write_bytes(b"".join(out))
    return path
