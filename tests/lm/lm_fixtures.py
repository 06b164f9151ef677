"""Tiny random models for the language-model tests, and the installed SmolLM2 for the slow ones."""

import functools
import io
import json
import math

import pytest
import torch
from safetensors.torch import save_file

from stepaudio.lm.model import LMConfig, Transformer


def tiny_config(**overrides) -> LMConfig:
    fields = dict(
        vocab_size=96,
        hidden_size=48,
        intermediate_size=80,
        num_layers=2,
        num_heads=6,
        num_kv_heads=2,
        position="rope",
        rope_theta=10000.0,
        norm_eps=1e-5,
        max_seq_len=128,
    )
    return LMConfig(**(fields | overrides))


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)  # not all ones, so a wrong norm weight shows
            else:
                param.normal_(0, 0.3)
    return model


@functools.cache
def smollm2():
    """Our SmolLM2-135M-Instruct, loaded once per test session (skips when not installed)."""
    from stepaudio.errors import ModelNotFound
    from stepaudio.lm.loaders import MINI_CHAT, load_lm

    try:
        return load_lm(MINI_CHAT)
    except ModelNotFound as error:
        pytest.skip(str(error))


def direct_sqrt_alibi(num_heads: int, length: int) -> torch.Tensor:
    """The definition, one entry at a time: bias[h, i, j] = -m_h * sqrt(i - j), m_h the ALiBi slopes
    (for n heads not a power of two: the 2^k-head slopes, then every other slope of the 2^(k+1) set)."""

    def power_of_two_slopes(n):
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]

    closest = 2 ** int(math.log2(num_heads))
    slopes = power_of_two_slopes(closest) + power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    bias = torch.full((num_heads, length, length), float("-inf"))
    for h in range(num_heads):
        for i in range(length):
            for j in range(i + 1):
                bias[h, i, j] = -slopes[h] * math.sqrt(i - j)
    return bias


def direct_step1_forward(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    """Step1 written out plainly: explicit bias matrix, kv heads repeated, softmax by hand."""
    c = model.config
    n = tokens.shape[1]
    bias = direct_sqrt_alibi(c.num_heads, n)
    x = model.embed(tokens)

    def norm(x, weight):
        return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.norm_eps)

    for block in model.layers:
        h = norm(x, block.attn_norm.weight)
        q, k, v = block.attn.qkv(h).split([c.hidden_size, c.num_kv_heads * c.head_dim, c.num_kv_heads * c.head_dim], -1)
        q = q.view(1, n, c.num_heads, c.head_dim).transpose(1, 2)
        k = k.view(1, n, c.num_kv_heads, c.head_dim).transpose(1, 2).repeat_interleave(c.num_heads // c.num_kv_heads, 1)
        v = v.view(1, n, c.num_kv_heads, c.head_dim).transpose(1, 2).repeat_interleave(c.num_heads // c.num_kv_heads, 1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(c.head_dim) + bias
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, n, -1)
        x = x + block.attn.out(y)
        gate, up = block.mlp.gate_up(norm(x, block.mlp_norm.weight)).chunk(2, -1)
        x = x + block.mlp.down(torch.nn.functional.silu(gate) * up)
    return model.lm_head(norm(x, model.norm.weight))


STEP1_VOCAB = 74752
CORPUS = [
    "You are a helpful assistant.",
    "hello world, this is a tiny tokenizer for tests",
    "the quick brown fox jumps over the lazy dog",
    "human assistant system",
    "请记录下你所听到的语音内容。",
    "你好，我是你的朋友，我叫小明，你叫什么名字？",
    "作为一名卓越的声优演员，你的任务是根据文本中括号内标注的情感来朗读文本。",
] * 20


def train_step1_tokenizer(path, audio_pieces: int = 0):
    """A SentencePiece model laid out like Step1's: <unk> 0, <s> 1, </s> 2, <|EOT|> 3, <|BOT|> 4, then
    `audio_pieces` pieces <audio_0>... from id 5 (the released model holds all 4096 at 65536 + K)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=400 + audio_pieces,
        model_type="bpe",
        user_defined_symbols=["<|EOT|>", "<|BOT|>"] + [f"<audio_{k}>" for k in range(audio_pieces)],
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",  # keep newlines, as Llama-style tokenizers do
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def write_step1_checkpoint(directory, seed=0):
    """Official layout: config.json field names, two safetensors shards + index, tokenizer.model."""
    torch.manual_seed(seed)
    config = {
        "architectures": ["Step1ForCausalLM"],
        "model_type": "step1",
        "hidden_size": 48,
        "intermediate_size": 80,
        "num_attention_heads": 6,
        "num_attention_groups": 2,
        "num_hidden_layers": 2,
        "vocab_size": STEP1_VOCAB,
        "max_seq_len": 2048,
        "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16",
    }
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    hidden, kv = 48, 2 * 8

    def weight(*shape):
        return (torch.randn(*shape) * 0.3).to(torch.bfloat16)

    shards = [{"model.embed_tokens.weight": weight(STEP1_VOCAB, hidden)}, {}]
    for i in range(2):
        shard = shards[i]
        p = f"model.layers.{i}."
        shard |= {
            p + "input_layernorm.weight": (torch.rand(hidden) + 0.5).to(torch.bfloat16),
            p + "self_attn.q_proj.weight": weight(hidden, hidden),
            p + "self_attn.k_proj.weight": weight(kv, hidden),
            p + "self_attn.v_proj.weight": weight(kv, hidden),
            p + "self_attn.o_proj.weight": weight(hidden, hidden),
            p + "post_attention_layernorm.weight": (torch.rand(hidden) + 0.5).to(torch.bfloat16),
            p + "mlp.gate_proj.weight": weight(80, hidden),
            p + "mlp.up_proj.weight": weight(80, hidden),
            p + "mlp.down_proj.weight": weight(hidden, 80),
        }
    shards[1] |= {
        "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
        "lm_head.weight": weight(STEP1_VOCAB, hidden),
    }
    weight_map = {}
    for index, shard in enumerate(shards, 1):
        name = f"model-{index:05d}-of-00002.safetensors"
        save_file(shard, str(directory / name))
        weight_map |= dict.fromkeys(shard, name)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    train_step1_tokenizer(directory / "tokenizer.model")
    return shards
