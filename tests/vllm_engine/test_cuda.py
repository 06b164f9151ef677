"""Step1 through vLLM on a GPU (its TRITON_ATTN attention, the only one with square-root ALiBi), against
our engine on the same tiny official-layout checkpoint: skipped without CUDA. The script a session with
a lent GPU runs: `make test-vllm` there, or `.venv-vllm/bin/python -m pytest tests/vllm_engine/test_cuda.py -s`
(vLLM for CUDA in that environment: `pip install 'stepaudio[vllm]'`)."""

import json

import pytest
import torch
from lm_fixtures import train_step1_tokenizer
from safetensors.torch import save_file

from stepaudio.lm import EngineOptions, Sampling
from stepaudio.lm.loaders import load_lm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="Step1 runs through vLLM only on a GPU")

HIDDEN, HEADS, GROUPS, LAYERS, FFN, VOCAB = 256, 4, 2, 2, 512, 1024  # head_dim 64, as vLLM's kernels expect

# transformers has no Step1 configuration: the official folders name their own (auto_map), and vLLM
# reads config.json through it (trust_remote_code). A bare PretrainedConfig keeps every field.
CONFIGURATION = (
    "from transformers import PretrainedConfig\n\n\nclass Step1Config(PretrainedConfig):\n    model_type = 'step1'\n"
)


def write_checkpoint(directory):
    torch.manual_seed(0)
    config = {
        "architectures": ["Step1ForCausalLM"],
        "model_type": "step1",
        "auto_map": {"AutoConfig": "configuration_step1.Step1Config"},
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_attention_heads": HEADS,
        "num_attention_groups": GROUPS,
        "num_hidden_layers": LAYERS,
        "vocab_size": VOCAB,
        "max_seq_len": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "configuration_step1.py").write_text(CONFIGURATION)
    kv = GROUPS * HIDDEN // HEADS

    def weight(*shape):
        return torch.randn(*shape) * shape[-1] ** -0.5

    state = {"model.embed_tokens.weight": weight(VOCAB, HIDDEN), "model.norm.weight": torch.ones(HIDDEN)}
    state["lm_head.weight"] = weight(VOCAB, HIDDEN) * 4  # peaked logits: argmax ties would be noise
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        state |= {
            p + "input_layernorm.weight": torch.ones(HIDDEN),
            p + "self_attn.q_proj.weight": weight(HIDDEN, HIDDEN),
            p + "self_attn.k_proj.weight": weight(kv, HIDDEN),
            p + "self_attn.v_proj.weight": weight(kv, HIDDEN),
            p + "self_attn.o_proj.weight": weight(HIDDEN, HIDDEN),
            p + "post_attention_layernorm.weight": torch.ones(HIDDEN),
            p + "mlp.gate_proj.weight": weight(FFN, HIDDEN),
            p + "mlp.up_proj.weight": weight(FFN, HIDDEN),
            p + "mlp.down_proj.weight": weight(HIDDEN, FFN),
        }
    save_file(state, str(directory / "model.safetensors"))
    train_step1_tokenizer(directory / "tokenizer.model")


def test_step1_greedy_tokens_on_cuda_are_our_engines(tmp_path):
    write_checkpoint(tmp_path / "step1")
    ours = load_lm(tmp_path / "step1", torch.float32, "cuda")
    theirs = load_lm(tmp_path / "step1", engine=EngineOptions("vllm", dtype="float32", gpu_memory=0.3))
    sampling = Sampling(max_new_tokens=48, repetition_window=10)  # the TTS LM's rule, in vLLM's logits processor
    agreed = total = 0
    for seed in range(8):
        prompt = torch.randint(5, VOCAB, (40 + seed,), generator=torch.Generator().manual_seed(seed)).tolist()
        a = list(ours.backend.decoder().stream(prompt, sampling))
        b = list(theirs.backend.decoder().stream(prompt, sampling))
        first_difference = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        agreed, total = agreed + first_difference, total + len(a)
        print(f"prompt {seed}: identical for {first_difference} of {len(a)} tokens")
    theirs.backend.close()
    assert agreed == total, f"{agreed} of {total} greedy tokens identical before the first difference"
