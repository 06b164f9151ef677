"""Tiny official tokenizer checkpoints with random weights, written in the published file layout.

`write_official_dir` makes a model directory holding `Step-Audio-Tokenizer/` as the official release does:
the FunASR Paraformer folder (model.pt, config.yaml, am.mvn), linguistic_tokenizer.npy and
speech_tokenizer_v1.onnx. The reference models they were written from (FunASR's encoder, the torch
module exported to ONNX) come with it, for the parity tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from conftest import speechlike, write_am_mvn
from stepaudio.audio import ParaformerFrontend
from stepaudio.models.store import PARAFORMER_DIR

# The official config.yaml (FunASR paraformer-large online template) with a tiny encoder.
PARAFORMER_CONFIG = {
    "model": "ParaformerStreaming",
    "model_conf": {"ctc_weight": 0.0, "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75},
    "encoder": "SANMEncoderChunkOpt",
    "encoder_conf": {
        "output_size": 16,
        "attention_heads": 2,
        "linear_units": 32,
        "num_blocks": 3,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "pe_online",
        "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True,
        "kernel_size": 11,
        "sanm_shfit": 0,
        "selfattention_layer_type": "sanm",
        "chunk_size": [12, 15],
        "stride": [8, 10],
        "pad_left": [0, 0],
        "encoder_att_look_back_factor": [4, 4],
        "decoder_att_look_back_factor": [1, 1],
    },
    "decoder": "ParaformerSANMDecoder",
    "decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1, "kernel_size": 11, "sanm_shfit": 5},
    "predictor": "CifPredictorV2",
    "predictor_conf": {"idim": 16, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
    "frontend": "WavFrontendOnline",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": 80,
        "frame_length": 25,
        "frame_shift": 10,
        "lfr_m": 7,
        "lfr_n": 6,
    },
}


def funasr_sanm_encoder(encoder_conf: dict, seed: int) -> torch.nn.Module:
    """FunASR's SANMEncoderChunkOpt as FunASR builds it from a config, with every weight randomised."""
    from funasr.models.scama.encoder import SANMEncoderChunkOpt

    torch.manual_seed(seed)
    encoder = SANMEncoderChunkOpt(input_size=560, **encoder_conf).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return encoder


def write_paraformer(folder: Path, encoder: torch.nn.Module, config: dict) -> None:
    """model.pt (the whole ASR model's state dict: encoder plus other parts), config.yaml and am.mvn."""
    folder.mkdir(parents=True)
    state = {f"encoder.{name}": tensor for name, tensor in encoder.state_dict().items()}
    state["decoder.embed.0.weight"] = torch.randn(10, 16)  # parts the tokenizer must ignore
    state["predictor.cif_output.weight"] = torch.randn(16, 16)
    torch.save(state, folder / "model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # CMVN statistics of real-looking speech, so the encoder sees inputs of the usual scale.
    feats = ParaformerFrontend()(speechlike(3.0, 16000, seed=7))
    write_am_mvn(folder / "am.mvn", -feats.mean(axis=0), 1.0 / (feats.std(axis=0) + 1e-3))


@dataclass
class OfficialTokenizerFiles:
    root: Path  # the model directory a user points stepaudio at
    folder: Path  # root / "Step-Audio-Tokenizer"
    funasr_encoder: torch.nn.Module
    centroids: np.ndarray  # [1024, d]

    @property
    def paraformer(self) -> Path:
        return self.folder / PARAFORMER_DIR


def write_official_dir(root: Path) -> OfficialTokenizerFiles:
    folder = root / "Step-Audio-Tokenizer"
    encoder = funasr_sanm_encoder(PARAFORMER_CONFIG["encoder_conf"], seed=0)
    write_paraformer(folder / PARAFORMER_DIR, encoder, PARAFORMER_CONFIG)
    centroids = np.random.default_rng(0).standard_normal((1024, 16)).astype(np.float32)
    np.save(folder / "linguistic_tokenizer.npy", centroids)
    (folder / "speech_tokenizer_v1.onnx").write_bytes(b"placeholder")
    return OfficialTokenizerFiles(root, folder, encoder, centroids)
