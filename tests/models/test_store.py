import importlib.util
import sys
from pathlib import Path

import pytest

from stepaudio.errors import ModelNotFound
from stepaudio.models import MINI_ASSETS, OFFICIAL_MODELS, resolve_model
from stepaudio.models.store import MODEL_DIR_ENV


def fake_package(root: Path, name: str, resource: str) -> None:
    package = root / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('importing this package must not be needed')\n")
    target = package / resource
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"weights")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty site-packages in front of sys.path, with the real mini packages hidden."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    hidden = {asset.package for asset in MINI_ASSETS}
    for name in hidden:  # find_spec answers from sys.modules for a package another test imported
        monkeypatch.delitem(sys.modules, name, raising=False)
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        spec = real_find_spec(name, *args)
        if name in hidden and spec is not None and not str(spec.origin).startswith(str(root)):
            return None
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return root


def test_mini_finds_weights_inside_installed_packages_without_importing_them(site):
    for asset in MINI_ASSETS:
        fake_package(site, asset.package, asset.resource)
    model = resolve_model("mini")
    assert model.kind == "mini" and not model.missing
    for asset in MINI_ASSETS:
        assert model.require(asset.component) == site / asset.package / asset.resource


def test_mini_says_how_to_install_what_is_missing(site):
    vad = next(asset for asset in MINI_ASSETS if asset.component == "vad")
    fake_package(site, vad.package, vad.resource)
    model = resolve_model("mini")
    assert model.require("vad").is_file()
    with pytest.raises(ModelNotFound, match="run: stepaudio install mini"):
        model.require("chat_lm")
    with pytest.raises(ModelNotFound, match="run: stepaudio install mini"):
        model.require("whisper")
    with pytest.raises(ModelNotFound, match="no component 'flux'"):
        model.require("flux")


def write_official(root: Path, folder: str, skip: tuple[str, ...] = ()) -> Path:
    model = next(m for m in OFFICIAL_MODELS if m.folder == folder)
    base = root / folder
    for pattern in model.files:
        if pattern in skip:
            continue
        path = base / pattern.replace("*", "model-00001")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return base


def test_official_root_with_all_checkpoints(tmp_path):
    for model in OFFICIAL_MODELS:
        write_official(tmp_path, model.folder)
    resolved = resolve_model(tmp_path)
    assert resolved.kind == "official" and not resolved.missing
    assert resolved.require("tts") == tmp_path / "Step-Audio-TTS-3B"
    assert resolved.require("tokenizer") == tmp_path / "Step-Audio-Tokenizer"


def test_official_root_missing_a_model_says_what_to_download(tmp_path):
    write_official(tmp_path, "Step-Audio-Tokenizer")
    write_official(tmp_path, "Step-Audio-TTS-3B", skip=("CosyVoice-300M-25Hz-Music/hift.pt",))
    resolved = resolve_model(str(tmp_path))
    assert resolved.require("tokenizer").is_dir()
    with pytest.raises(
        ModelNotFound, match=r"CosyVoice-300M-25Hz-Music/hift\.pt.*download stepfun-ai/Step-Audio-TTS-3B"
    ):
        resolved.require("tts")
    with pytest.raises(ModelNotFound, match=r"download stepfun-ai/Step-Audio-Chat into .*Step-Audio-Chat"):
        resolved.require("chat")


def test_a_single_official_folder_can_be_given_directly(tmp_path):
    folder = write_official(tmp_path, "Step-Audio-TTS-3B")
    resolved = resolve_model(folder)
    assert resolved.require("tts") == folder
    incomplete = write_official(tmp_path / "other", "Step-Audio-Chat", skip=("tokenizer.model",))
    with pytest.raises(ModelNotFound, match="incomplete.*tokenizer.model"):
        resolve_model(incomplete).require("chat")


def test_unknown_names_and_empty_directories(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFound, match="give 'mini' or a directory"):
        resolve_model("gpt-9")
    with pytest.raises(ModelNotFound, match="holds none of the official checkpoints"):
        resolve_model(tmp_path)
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelNotFound, match="holds none"):
        resolve_model()
    monkeypatch.delenv(MODEL_DIR_ENV)
    assert resolve_model().kind == "mini"
