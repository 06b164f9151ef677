"""Official tokenizer checkpoints with random weights in the published file layout, and the official
code paths restated on the reference packages (FunASR, openai-whisper, onnxruntime).

`write_official_dir` makes a model directory holding `Step-Audio-Tokenizer/` as the official release
does: the FunASR Paraformer folder (model.pt, config.yaml, am.mvn), linguistic_tokenizer.npy and
speech_tokenizer_v1.onnx, tiny by default or at the official size (for benchmarks). `official_vq02`
and `official_vq06` tokenize as Step-Audio's tokenizer.py does, on the models the files were
written from.
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

# The official config.yaml (FunASR paraformer-large online template) with a tiny encoder;
# FULL_ENCODER is the official size.
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


FULL_ENCODER = {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50}


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Perturb every weight (LayerNorms and biases too, so none is trivial) at its own scale."""
    with torch.no_grad():
        for parameter in module.parameters():
            scale = 0.2 if parameter.ndim == 1 else parameter.std().item()
            parameter.add_(scale * torch.randn_like(parameter))
    return module


def funasr_sanm_encoder(encoder_conf: dict, seed: int) -> torch.nn.Module:
    """FunASR's SANMEncoderChunkOpt as FunASR builds it from a config, with random weights."""
    from funasr.models.scama.encoder import SANMEncoderChunkOpt

    torch.manual_seed(seed)
    return randomize(SANMEncoderChunkOpt(input_size=560, **encoder_conf)).eval()


def write_paraformer(folder: Path, encoder: torch.nn.Module, config: dict) -> None:
    """model.pt (the whole ASR model's state dict: encoder plus other parts), config.yaml and am.mvn."""
    folder.mkdir(parents=True)
    state = {f"encoder.{name}": tensor for name, tensor in encoder.state_dict().items()}
    state["decoder.embed.0.weight"] = torch.randn(10, 4)  # parts the tokenizer must ignore
    state["predictor.cif_output.weight"] = torch.randn(4, 4)
    torch.save(state, folder / "model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # CMVN statistics of real-looking speech, so the encoder sees inputs of the usual scale.
    feats = ParaformerFrontend()(speechlike(3.0, 16000, seed=7))
    write_am_mvn(folder / "am.mvn", -feats.mean(axis=0), 1.0 / (feats.std(axis=0) + 1e-3))


class Scope(torch.nn.Module):
    """Calls its one child: exists so the exported node names carry the official module path."""

    def __init__(self, name: str, child: torch.nn.Module):
        super().__init__()
        self.child_name = name
        self.add_module(name, child)

    def forward(self, x):
        return getattr(self, self.child_name)(x)


class Codebook(torch.nn.Module):
    def __init__(self, codes: int, dim: int):
        super().__init__()
        self.register_buffer("embed", torch.randn(codes, dim))

    def forward(self, x):  # x [B, T, d] -> nearest code [B, T], written as the v1 graph computes it
        embed = self.embed.t()
        distances = -(x.pow(2).sum(-1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return distances.max(dim=-1).indices


class QuantizerLayers(torch.nn.Module):
    def __init__(self, codes: int, dim: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([Scope("_codebook", Codebook(codes, dim))])

    def forward(self, x):
        return self.layers[0](x)


class Quantizer(torch.nn.Module):
    def __init__(self, codes: int, dim: int):
        super().__init__()
        self.rq = Scope("model", QuantizerLayers(codes, dim))

    def forward(self, x):
        return self.rq(torch.nn.functional.normalize(x, dim=-1))


class WhisperAttention(torch.nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = torch.nn.Linear(dim, dim)
        self.key = torch.nn.Linear(dim, dim, bias=False)
        self.value = torch.nn.Linear(dim, dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x):
        batch, frames, dim = x.shape
        scale = (dim // self.heads) ** -0.25
        q = self.query(x).view(batch, frames, self.heads, -1).permute(0, 2, 1, 3) * scale
        k = self.key(x).view(batch, frames, self.heads, -1).permute(0, 2, 3, 1) * scale
        v = self.value(x).view(batch, frames, self.heads, -1).permute(0, 2, 1, 3)
        weights = torch.softmax(q @ k, dim=-1)
        return self.out((weights @ v).permute(0, 2, 1, 3).flatten(start_dim=2))


class WhisperBlock(torch.nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = WhisperAttention(dim, heads)
        self.attn_ln = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))
        self.mlp_ln = torch.nn.LayerNorm(dim)

    def forward(self, x):
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class OfficialS3Graph(torch.nn.Module):
    """The S3 tokenizer v1 (25 Hz) as its published ONNX graph computes it: inputs mel [1, 128, T] and
    its length (int32), output the token indices. Module names give the published initializer names
    (`encoders.conv1.weight`, `encoders.positional_embedding`) and node names (`/blocks.0/attn/query/MatMul`,
    `/quantizer/rq/model/layers.0/_codebook/Pow_1`)."""

    def __init__(self, dim: int = 40, heads: int = 20, layers: int = 2, codes: int = 4096, n_mels: int = 128):
        super().__init__()
        self.encoders = torch.nn.Module()
        self.encoders.conv1 = torch.nn.Conv1d(n_mels, dim, 3, stride=2, padding=1)
        self.encoders.conv2 = torch.nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.encoders.register_buffer("positional_embedding", torch.randn(1500, dim))
        self.blocks = torch.nn.ModuleList([WhisperBlock(dim, heads) for _ in range(layers)])
        self.quantizer = Quantizer(codes, dim)

    def forward(self, mel, mel_len):
        mask = (torch.arange(mel.shape[2])[None, :] < mel_len[:, None]).to(mel.dtype)[:, None]  # [B, 1, T]
        x = torch.nn.functional.gelu(self.encoders.conv1(mel * mask))
        x = torch.nn.functional.gelu(self.encoders.conv2(x)).permute(0, 2, 1)
        x = x + self.encoders.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.quantizer(x)


def export_s3_onnx(path: Path, model: torch.nn.Module, opset: int) -> None:
    """Export as CosyVoice did, then give every initializer but the `encoders.*` ones a generated name."""
    import onnx

    randomize(model)
    mel, length = torch.randn(1, 128, 200), torch.tensor([200], dtype=torch.int32)
    torch.onnx.export(
        model,
        (mel, length),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["feats", "feats_length"],
        output_names=["indices"],
        dynamic_axes={"feats": {2: "T"}, "indices": {1: "T_token"}},
    )
    graph = onnx.load(str(path))
    renamed = {}
    for index, tensor in enumerate(graph.graph.initializer):
        if not tensor.name.startswith("encoders."):
            renamed[tensor.name] = tensor.name = f"onnx::Weight_{index}"
    for node in graph.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    onnx.save(graph, str(path))


@dataclass
class OfficialTokenizerFiles:
    root: Path  # the model directory a user points stepaudio at
    folder: Path  # root / "Step-Audio-Tokenizer"
    funasr_encoder: torch.nn.Module
    centroids: np.ndarray  # [1024, d]
    s3_graph: torch.nn.Module  # the module speech_tokenizer_v1.onnx was exported from

    @property
    def paraformer(self) -> Path:
        return self.folder / PARAFORMER_DIR


def write_official_dir(root: Path, s3_opset: int = 13, full_size: bool = False) -> OfficialTokenizerFiles:
    folder = root / "Step-Audio-Tokenizer"
    config = PARAFORMER_CONFIG
    if full_size:
        config = {**config, "encoder_conf": {**config["encoder_conf"], **FULL_ENCODER}}
    encoder = funasr_sanm_encoder(config["encoder_conf"], seed=0)
    write_paraformer(folder / PARAFORMER_DIR, encoder, config)
    dim = config["encoder_conf"]["output_size"]
    centroids = np.random.default_rng(0).standard_normal((1024, dim)).astype(np.float32)
    np.save(folder / "linguistic_tokenizer.npy", centroids)
    torch.manual_seed(1)
    # Tiny: the official 20 heads, of width 2.
    s3_graph = (OfficialS3Graph(dim=1280, layers=6) if full_size else OfficialS3Graph()).eval()
    export_s3_onnx(folder / "speech_tokenizer_v1.onnx", s3_graph, s3_opset)
    return OfficialTokenizerFiles(root, folder, encoder, centroids, s3_graph)


STRIDE = 3840  # samples per official call: chunk_size[1] = 4 LFR frames of 960 samples
LFR_M = 7


def official_vq02(files: OfficialTokenizerFiles, calls) -> tuple[torch.Tensor, np.ndarray]:
    """Step-Audio's get_vq02_code over one session, on FunASR's own front end and SANMEncoderChunkOpt.

    `calls` are (samples, is_final) as the official tokenizer receives them. Restates the loop of
    its vendored `ParaformerStreaming.infer_encoder` (3840-sample strides, leftover samples carried
    to the next call, cache reset after the final call) and its cache (chunk_size [0, 4, 5], encoder
    look-back 4). One difference between FunASR versions is restated too: the vendored
    WavFrontendOnline returns no frames from a final call whose LFR splice cache plus new fbank
    frames are fewer than lfr_m (7), where FunASR 1.4 pads them into a frame.
    Returns the encoder frames [n, d] and their k-means codes [n].
    """
    from funasr.frontends.wav_frontend import WavFrontendOnline

    frontend = WavFrontendOnline(
        cmvn_file=str(files.paraformer / "am.mvn"), dither=0.0, **PARAFORMER_CONFIG["frontend_conf"]
    )
    outputs, cache, prev, seen = [], {}, torch.empty(0), 0
    for audio, is_final in calls:
        if not cache:
            cache = {"frontend": {}, "encoder": _encoder_cache()}
            seen = 0
        samples = torch.cat([prev, torch.as_tensor(audio, dtype=torch.float32)])
        calls_now = len(samples) // STRIDE + int(is_final)
        leftover = len(samples) % STRIDE * (1 - int(is_final))
        for i in range(calls_now):
            final = is_final and i == calls_now - 1
            piece = samples[i * STRIDE : (i + 1) * STRIDE]
            if final and len(piece) == 0:
                break
            splice = cache["frontend"].get("lfr_splice_cache") or [torch.zeros((LFR_M - 1) // 2, 80)]
            new_fbank = _fbank_frames(seen + len(piece)) - _fbank_frames(seen)
            seen += len(piece)
            if final and len(splice[0]) + new_fbank < LFR_M:
                break  # the vendored front end returns nothing (or fails on < 480 samples, which is skipped)
            speech, lengths = frontend(piece[None], [len(piece)], cache=cache["frontend"], is_final=final)
            if speech.shape[-2] == 0:
                assert final, "the official loop would crash on an empty non-final call"
                break
            with torch.no_grad():
                encoded = files.funasr_encoder.forward_chunk(speech, lengths, cache=cache["encoder"])[0]
            outputs.append(encoded[0, -int(lengths[0]) :])
        prev = samples[-leftover:] if leftover else torch.empty(0)
        if is_final:
            cache = {}
    features = torch.cat(outputs) if outputs else torch.zeros(0, files.centroids.shape[1])
    tokens = torch.cdist(features, torch.from_numpy(files.centroids)).argmin(dim=1).numpy()
    return features, tokens


def _encoder_cache() -> dict:
    return {
        "start_idx": 0,
        "chunk_size": [0, 4, 5],
        "encoder_chunk_look_back": 4,
        "last_chunk": False,
        "opt": None,
        "feats": torch.zeros(1, 5, 560),
        "tail_chunk": False,
    }


def _fbank_frames(samples: int) -> int:
    return (samples - 400) // 160 + 1 if samples >= 400 else 0


def onnx_session(onnx_path: Path, threads: int = 0):
    """An onnxruntime CPU session with the official options (all graph optimisations)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def official_vq06(session, samples: np.ndarray) -> np.ndarray:
    """Step-Audio's get_vq06_code: 30 s pieces without overlap (< 480 samples skipped), openai-whisper's
    128-bin log-mel, and the ONNX graph (an `onnx_session`) fed (mel, its length as int32)."""
    import whisper

    tokens = []
    inputs = session.get_inputs()
    for start in range(0, len(samples), 480_000):
        piece = torch.from_numpy(samples[start : start + 480_000])
        if len(piece) < 480:
            continue
        mel = whisper.log_mel_spectrogram(piece, n_mels=128)[None].numpy()
        out = session.run(None, {inputs[0].name: mel, inputs[1].name: np.array([mel.shape[2]], np.int32)})[0]
        tokens += out.flatten().tolist()
    return np.array(tokens, dtype=np.int64)
