"""The official acoustic tokenizer (Step-Audio's "vq06"): CosyVoice's S3 tokenizer v1, 25 Hz x 4096.

A Whisper-style encoder reads the 128-bin Whisper log-mel (100 frames/s): conv k3 stride 2 + GELU,
conv k3 stride 2 + GELU (25 frames/s), plus the stored positional table, then pre-norm blocks
(self-attention with q and k each scaled by head_dim^-1/4, key without bias; GELU MLP 4x) and no
final norm. Each frame is L2-normalised and takes the index of the nearest of 4096 codebook
vectors (Euclidean). Official size: d=1280, 20 heads, 6 blocks.

The weights come from the published `speech_tokenizer_v1.onnx`, read with `onnx` (no runtime):
most initializers there carry generated names (`onnx::MatMul_1234`), so each is identified by the
node that consumes it, whose name is the module path it was traced in: `/blocks.0/attn/query/MatMul`
holds blocks.0.attn.query's weight (transposed), `.../Add` a bias, a LayerNorm's `Mul`/`Add_1` (or
one `LayerNormalization`) its weight and bias, `/quantizer/rq/model/layers.0/_codebook/...` the
codebook (stored [dim, codes]). The two convolutions (`encoders.conv1.*`, `encoders.conv2.*`) are
taken in graph order and `encoders.positional_embedding` by name.

Long audio is cut into consecutive 30 s pieces, without overlap, and pieces shorter than 480 samples
are dropped, as the official tokenizer does; the tokens are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stepaudio.audio import log_mel_spectrogram
from stepaudio.audio.whisper_mel import N_SAMPLES
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.models.checkpoint import load_exact
from stepaudio.models.store import resolve_model
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono
from stepaudio.tokenizer.interleave import ACOUSTIC_CODES

ONNX_FILE = "speech_tokenizer_v1.onnx"
MIN_PIECE_SAMPLES = 480  # the official tokenizer skips shorter 30 s pieces (the tail of long audio)


@dataclass(frozen=True)
class S3Config:
    n_mels: int = 128
    d_model: int = 1280
    n_heads: int = 20  # not recorded in the ONNX weights
    n_layers: int = 6
    codebook_size: int = ACOUSTIC_CODES
    conv1_stride: int = 2  # 2: the 25 Hz tokenizer; 1 would be the 50 Hz one
    n_ctx: int = 1500  # rows of the positional table


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, d_model = x.shape
        q, k, v = (
            proj(x).reshape(batch, frames, self.heads, -1).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        attended = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.out(attended.transpose(1, 2).reshape(batch, frames, d_model))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads)
        self.mlp_ln = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class S3Encoder(nn.Module):
    """log-mel [B, n_mels, T] -> codes [B, T'] with T' = ceil(T / (2 * conv1_stride))."""

    def __init__(self, config: S3Config):
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.n_mels, config.d_model, 3, stride=config.conv1_stride, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", torch.zeros(config.n_ctx, config.d_model))
        self.blocks = nn.ModuleList([Block(config.d_model, config.n_heads) for _ in range(config.n_layers)])
        self.register_buffer("codebook", torch.zeros(config.codebook_size, config.d_model))

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.conv1(mel))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # [B, T', d]
        if x.shape[1] > self.config.n_ctx:
            raise ValueError(f"{x.shape[1]} frames exceed the positional table ({self.config.n_ctx}); cut the audio")
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        x = nn.functional.normalize(x, dim=-1)
        distances = x.pow(2).sum(-1, keepdim=True) - 2 * x @ self.codebook.T + self.codebook.pow(2).sum(-1)
        return distances.argmin(dim=-1)


def _module_path(node_name: str) -> str:
    """`/blocks.0/mlp/mlp.0/MatMul` -> `blocks.0.mlp.0`: the exporter names a node after the modules it
    ran in, repeating a parent's name in its child's (`mlp/mlp.0`). Anything above `blocks.N` is dropped."""
    path: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    blocks = [i for i, part in enumerate(path) if part.startswith("blocks.")]
    return ".".join(path[blocks[0] :] if blocks else path)


def read_onnx_weights(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The encoder's tensors from an S3 tokenizer ONNX graph, and the stride of its first convolution."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:  # protobuf decode errors have no common base class
        raise CheckpointError(f"cannot read {path} as an ONNX model: {error}") from error
    initializers = {tensor.name: tensor for tensor in graph.initializer}

    def tensor(name: str, transpose: bool = False) -> torch.Tensor:
        value = numpy_helper.to_array(initializers[name]).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))

    weights = {}
    positional = [name for name in initializers if name.endswith("positional_embedding")]
    if positional:
        weights["positional_embedding"] = tensor(positional[0])
    conv1_stride, convs = 1, 0
    for node in graph.node:
        consumed = [name for name in node.input if name in initializers and initializers[name].dims]
        if not consumed:
            continue
        op, first, rank = node.op_type, consumed[0], len(initializers[consumed[0]].dims)
        scope = _module_path(node.name)
        if op == "Conv":
            convs += 1
            weights[f"conv{convs}.weight"] = tensor(node.input[1])
            if len(node.input) > 2:
                weights[f"conv{convs}.bias"] = tensor(node.input[2])
            if convs == 1:
                conv1_stride = next((attr.ints[0] for attr in node.attribute if attr.name == "strides"), 1)
        elif "_codebook" in scope and rank == 2:
            weights["codebook"] = tensor(first, transpose=True)  # stored [dim, codes]
        elif not scope.startswith("blocks."):
            continue
        elif op == "MatMul" and rank == 2:
            weights[f"{scope}.weight"] = tensor(first, transpose=True)  # MatMul holds [in, out]
        elif op == "LayerNormalization":
            weights[f"{scope}.weight"], weights[f"{scope}.bias"] = tensor(node.input[1]), tensor(node.input[2])
        elif op in ("Add", "Mul") and rank == 1:  # a Linear's bias; a decomposed LayerNorm's scale and shift
            weights[f"{scope}.{'bias' if op == 'Add' else 'weight'}"] = tensor(first)
    return weights, conv1_stride


def load_s3_encoder(path: Path, n_heads: int = S3Config.n_heads) -> S3Encoder:
    """The S3 encoder from `speech_tokenizer_v1.onnx`; its shape comes from the weights, heads from the caller."""
    if not path.is_file():
        raise ModelNotFound(f"S3 tokenizer not found: {path}")
    weights, conv1_stride = read_onnx_weights(path)
    if not {"conv1.weight", "codebook", "positional_embedding"} <= weights.keys():
        found = ", ".join(sorted(weights)[:6]) or "nothing"
        raise CheckpointError(f"{path} is not an S3 speech tokenizer graph (found {found})")
    d_model, n_mels, _ = weights["conv1.weight"].shape
    if d_model % n_heads:
        raise CheckpointError(f"{path}: width {d_model} does not split into {n_heads} heads")
    encoder = S3Encoder(
        S3Config(
            n_mels=n_mels,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=len({name.split(".")[1] for name in weights if name.startswith("blocks.")}),
            codebook_size=weights["codebook"].shape[0],
            conv1_stride=conv1_stride,
            n_ctx=weights["positional_embedding"].shape[0],
        )
    )
    # Scalars an exporter stored as initializers (eps, scales) land under names the encoder lacks.
    expected = encoder.state_dict()
    weights = {name: value for name, value in weights.items() if name in expected or value.numel() > 1}
    load_exact(encoder, weights, str(path))
    return encoder.eval()


class AcousticTokenizer:
    """Official acoustic tokens: `encode(samples, sample_rate)` -> codes in 0..4095 at 25 Hz."""

    def __init__(self, encoder: S3Encoder):
        self.encoder = encoder

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None) -> AcousticTokenizer:
        """From an official checkpoint directory (the Step-Audio-Tokenizer folder or its parent)."""
        return cls(load_s3_encoder(resolve_model(model).require("tokenizer") / ONNX_FILE))

    @property
    def token_rate(self) -> float:
        return 100 / (2 * self.encoder.config.conv1_stride)

    def encode_mel(self, mel: torch.Tensor) -> np.ndarray:
        """One piece's 128-bin Whisper log-mel [n_mels, T] -> codes [ceil(T / 4)]."""
        return self.encoder(mel[None])[0].numpy().astype(np.int64)

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        samples = as_16k_mono(samples, sample_rate)
        pieces = [samples[start : start + N_SAMPLES] for start in range(0, len(samples), N_SAMPLES)]
        codes = [self.encode_piece(piece) for piece in pieces]
        return np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)

    def encode_piece(self, piece: np.ndarray) -> np.ndarray:
        """Codes of one piece of at most 30 s; pieces shorter than 480 samples give none, as the official."""
        if len(piece) < MIN_PIECE_SAMPLES:
            return np.zeros(0, dtype=np.int64)
        return self.encode_mel(log_mel_spectrogram(piece, self.encoder.config.n_mels))

    def stream(self) -> AcousticStream:
        return AcousticStream(self)


class AcousticStream:
    """The official acoustic tokenizer is not streaming: it encodes 30-s pieces with no overlap. This
    stream gives exactly those codes, each piece's as soon as its 30 s are in, the last at `flush()`."""

    def __init__(self, tokenizer: AcousticTokenizer):
        self.tokenizer = tokenizer
        self._buffer = np.zeros(0, dtype=np.float32)

    def step(self, samples: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float32)])
        codes = []
        while len(self._buffer) >= N_SAMPLES:
            codes.append(self.tokenizer.encode_piece(self._buffer[:N_SAMPLES]))
            self._buffer = self._buffer[N_SAMPLES:]
        return np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)

    def flush(self) -> np.ndarray:
        codes, self._buffer = self.tokenizer.encode_piece(self._buffer), np.zeros(0, dtype=np.float32)
        return codes
