"""Writing a language model in the Hugging Face layout, for engines that load only that (vLLM): the
inverse of the loaders' `convert_hf_state`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from stepaudio.errors import CheckpointError
from stepaudio.lm.loaders import Checkpoint
from stepaudio.lm.model import LMConfig


def to_hf_state(state: dict[str, torch.Tensor], config: LMConfig) -> dict[str, torch.Tensor]:
    """Ours -> Hugging Face tensor names: the inverse of `convert_hf_state`."""
    q_rows, kv_rows = config.hidden_size, config.num_kv_heads * config.head_dim
    hf = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    if "lm_head.weight" in state:
        hf["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.num_layers):
        ours, prefix = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = state[f"{ours}attn.qkv.weight"].split([q_rows, kv_rows, kv_rows])
        gate, up = state[f"{ours}mlp.gate_up.weight"].chunk(2)
        hf |= {
            f"{prefix}input_layernorm.weight": state[f"{ours}attn_norm.weight"],
            f"{prefix}self_attn.q_proj.weight": q,
            f"{prefix}self_attn.k_proj.weight": k,
            f"{prefix}self_attn.v_proj.weight": v,
            f"{prefix}self_attn.o_proj.weight": state[f"{ours}attn.out.weight"],
            f"{prefix}post_attention_layernorm.weight": state[f"{ours}mlp_norm.weight"],
            f"{prefix}mlp.gate_proj.weight": gate,
            f"{prefix}mlp.up_proj.weight": up,
            f"{prefix}mlp.down_proj.weight": state[f"{ours}mlp.down.weight"],
        }
    return {name: tensor.contiguous() for name, tensor in hf.items()}


def write_hf_llama(checkpoint: Checkpoint, directory: Path) -> None:
    """A Llama-family checkpoint (RoPE) in the Hugging Face layout: config.json and model.safetensors
    in float32 (the values as read, e.g. GGUF blocks dequantised). No tokenizer: vLLM is given token ids."""
    from safetensors.torch import save_file

    config, state = checkpoint.read_weights()
    if config.position != "rope":
        raise CheckpointError(f"{checkpoint.path}: only RoPE (Llama) models are written in the Llama layout")
    directory.mkdir(parents=True, exist_ok=True)
    save_file(to_hf_state(state, config), str(directory / "model.safetensors"))
    fields = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_seq_len,
        "tie_word_embeddings": config.tie_embeddings,
        "torch_dtype": "float32",
    }
    (directory / "config.json").write_text(json.dumps(fields, indent=2))


def vllm_directory(checkpoint: Checkpoint) -> Path:
    """The Hugging Face-layout directory vLLM loads: the checkpoint's own, or for a GGUF file (vLLM's GGUF
    kernels are GPU-only) its Llama export, written once into the cache (`STEPAUDIO_CACHE`, else
    ~/.cache/stepaudio) and reused while the file is unchanged."""
    if checkpoint.path.is_dir():
        return checkpoint.path
    stat = checkpoint.path.stat()
    key = hashlib.sha256(f"{checkpoint.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("STEPAUDIO_CACHE") or Path.home() / ".cache" / "stepaudio")
    directory = cache / "hf" / f"{checkpoint.path.stem}-{key}"
    if not (directory / "config.json").is_file():
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_hf_llama(checkpoint, partial)
        partial.replace(directory)
    return directory
