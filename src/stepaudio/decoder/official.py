"""Loaders for the official `CosyVoice-300M-25Hz` and `-Music` folders of Step-Audio-TTS-3B.

Each folder holds `cosyvoice.yaml` (HyperPyYAML: `!new:`/`!name:` build objects, `!ref <x>` refers
to a key), `flow.pt`, `hift.pt` (plain state dicts) and `campplus.onnx`. The YAML is read with a
safe loader that turns every tag into plain data, so reading a config never imports or runs code;
only the hyper-parameters of `flow` and `hift` are picked. Weights load with weights_only=True.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml

from stepaudio.decoder.checkpoint import config_from_dict
from stepaudio.decoder.conformer import EncoderConfig
from stepaudio.decoder.estimator import EstimatorConfig
from stepaudio.decoder.flow import CFMConfig, FlowConfig, FlowModel
from stepaudio.decoder.hift import HiFT, HiFTConfig
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.models.checkpoint import load_exact

FOLDERS = ("CosyVoice-300M-25Hz", "CosyVoice-300M-25Hz-Music")
FILES = ("cosyvoice.yaml", "flow.pt", "hift.pt", "campplus.onnx")


class _Ref(str):
    """A `!ref <name>` placeholder, resolved against the top-level keys after loading."""


class _TagsAsData(yaml.SafeLoader):
    """A SafeLoader of our own, so the tag constructors registered below do not leak into yaml's."""


def _construct_tagged(loader: _TagsAsData, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    value = loader.construct_scalar(node)
    return _Ref(value) if suffix == "ref" else value


_TagsAsData.add_multi_constructor("!", _construct_tagged)


def _resolve(value, top: dict):
    if isinstance(value, _Ref):
        match = re.fullmatch(r"\s*<([\w.]+)>\s*", value)
        if not match or match.group(1) not in top:
            raise CheckpointError(f"cannot resolve !ref {value!r} in cosyvoice.yaml")
        return _resolve(top[match.group(1)], top)
    if isinstance(value, dict):
        return {k: _resolve(v, top) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top) for v in value]
    return value


def read_hyperpyyaml(path: Path) -> dict:
    """The YAML as plain dicts/lists/scalars with `!ref`s resolved; no tag is ever executed."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TagsAsData)  # noqa: S506 (safe subclass)
    except yaml.YAMLError as error:
        raise CheckpointError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a mapping of hyper-parameters")
    return _resolve(data, data)


def _pick(section: dict, names) -> dict:
    """The entries of a YAML section that a config dataclass has fields for."""
    return {k: section[k] for k in names if k in section}


def _missing(where: str):
    raise CheckpointError(f"cosyvoice.yaml has no `{where}` section")


def flow_config(hparams: dict) -> FlowConfig:
    flow = hparams.get("flow") or _missing("flow")
    encoder = flow.get("encoder") or _missing("flow.encoder")
    for key, wanted in (("use_cnn_module", False), ("macaron_style", False), ("input_layer", "linear")):
        if encoder.get(key, wanted) != wanted:
            raise CheckpointError(f"flow encoder with {key}={encoder[key]!r} is not supported (expected {wanted!r})")
    if encoder.get("pos_enc_layer_type", "rel_pos_espnet") != "rel_pos_espnet":
        raise CheckpointError(f"flow encoder positions {encoder['pos_enc_layer_type']!r} are not supported")
    decoder = flow.get("decoder") or _missing("flow.decoder")
    cfm = decoder.get("cfm_params", {})
    cfm = cfm.get("content", cfm)  # !new:omegaconf.DictConfig wraps the values in `content`
    estimator = decoder.get("estimator") or _missing("flow.decoder.estimator")
    if estimator.get("act_fn", "gelu") != "gelu":
        raise CheckpointError(f"estimator activation {estimator['act_fn']!r} is not supported (expected gelu)")
    regulator = flow.get("length_regulator") or _missing("flow.length_regulator")
    data = _pick(flow, ("vocab_size", "input_size", "output_size", "spk_embed_dim", "input_frame_rate"))
    data["sampling_ratios"] = regulator.get("sampling_ratios", [])
    data["encoder"] = _pick(encoder, EncoderConfig.__dataclass_fields__)
    data["estimator"] = _pick(estimator, EstimatorConfig.__dataclass_fields__)
    data["cfm"] = _pick(cfm, CFMConfig.__dataclass_fields__)
    return config_from_dict(FlowConfig, data)


def hift_config(hparams: dict) -> HiFTConfig:
    hift = hparams.get("hift") or _missing("hift")
    data = _pick(hift, HiFTConfig.__dataclass_fields__)
    istft = hift.get("istft_params", {})
    data |= {"istft_n_fft": istft.get("n_fft", 16), "istft_hop": istft.get("hop_len", 4)}
    f0 = hift.get("f0_predictor", {})
    if "cond_channels" in f0:
        data["f0_cond_channels"] = f0["cond_channels"]
    return config_from_dict(HiFTConfig, data)


def official_folder(path: Path) -> Path:
    """Check a CosyVoice folder holds every file the decoder needs."""
    path = Path(path)
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise ModelNotFound(
            f"{path} is not a complete CosyVoice folder (missing {', '.join(missing)}); it comes with "
            f"stepfun-ai/Step-Audio-TTS-3B as {' or '.join(FOLDERS)}"
        )
    return path


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise CheckpointError(f"cannot read {path} as a weights-only state dict: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return {k: v.float() for k, v in state.items()}


def load_official(folder: Path) -> tuple[FlowModel, HiFT]:
    """The flow and the vocoder of one official folder, in float32 and eval mode."""
    folder = official_folder(folder)
    hparams = read_hyperpyyaml(folder / "cosyvoice.yaml")
    flow = FlowModel(flow_config(hparams))
    load_exact(flow, _state_dict(folder / "flow.pt"), str(folder / "flow.pt"))
    hift = HiFT(hift_config(hparams))
    load_exact(hift, _state_dict(folder / "hift.pt"), str(folder / "hift.pt"))
    return flow.eval(), hift.eval()
