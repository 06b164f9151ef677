"""`quantize(model, "int8" | "int4")` on official-layout Step1 checkpoints, against the bfloat16 model.

Agreement is measured per step: the bfloat16 model answers a TTS-style prompt greedily, then the quantized
model reads the same prompt and answer and must pick the same token at most steps. These checkpoints hold
random weights, whose top logits are nearly tied (even the float32 model picks bf16's token at only ~95% of
steps, bench/quantization.py), so the bounds are far below what a trained model gives; a wrong layout or
offset drops them to ~0 (1 in 74752). The layers' arithmetic is checked exactly on its own.
"""

import copy
import gc
import json
import weakref

import pytest
import torch
from lm_fixtures import STEP1_VOCAB, write_step1_checkpoint
from safetensors.torch import save_file

from golden_tts import golden, golden_state
from stepaudio.errors import OptionError
from stepaudio.lm import quantize as q
from stepaudio.lm.generate import Session
from stepaudio.lm.loaders import load_step1
from stepaudio.lm.model import Transformer
from stepaudio.lm.prompts import tts_prompt_ids
from stepaudio.lm.sampling import Sampling

NEW_TOKENS = 48


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    """The loaders' tiny official checkpoint: 48 wide, too narrow for int4's groups of 32."""
    directory = tmp_path_factory.mktemp("Step-Audio-TTS-3B")
    write_step1_checkpoint(directory)
    return directory


def write_wide_step1(directory, tokenizer_model: bytes):
    """An official-layout Step1 checkpoint 64 wide (every input size a multiple of int4's groups of 32),
    weights drawn with unit gain; bench/quantization.py measures on it too."""
    hidden, inter, heads, groups, layers = 64, 128, 4, 2, 2
    config = {"model_type": "step1", "hidden_size": hidden, "intermediate_size": inter, "num_attention_heads": heads}
    config |= {"num_attention_groups": groups, "num_hidden_layers": layers, "vocab_size": STEP1_VOCAB}
    (directory / "config.json").write_text(json.dumps(config | {"max_seq_len": 2048}))
    torch.manual_seed(1)

    def weight(rows, columns):
        return (torch.randn(rows, columns) / columns**0.5).to(torch.bfloat16)

    def norm():
        return (torch.rand(hidden) + 0.5).to(torch.bfloat16)

    kv = groups * hidden // heads
    state = {"model.embed_tokens.weight": weight(STEP1_VOCAB, hidden), "lm_head.weight": weight(STEP1_VOCAB, hidden)}
    state["model.norm.weight"] = norm()
    for i in range(layers):
        p = f"model.layers.{i}."
        state |= {p + "input_layernorm.weight": norm(), p + "post_attention_layernorm.weight": norm()}
        state |= {
            p + f"self_attn.{n}_proj.weight": weight(r, hidden)
            for n, r in zip("qkvo", (hidden, kv, kv, hidden), strict=True)
        }
        state |= {p + "mlp.gate_proj.weight": weight(inter, hidden), p + "mlp.up_proj.weight": weight(inter, hidden)}
        state[p + "mlp.down_proj.weight"] = weight(hidden, inter)
    save_file(state, str(directory / "model.safetensors"))
    (directory / "tokenizer.model").write_bytes(tokenizer_model)
    return directory


@pytest.fixture(scope="module")
def wide(tmp_path_factory, narrow):
    return write_wide_step1(tmp_path_factory.mktemp("wide"), (narrow / "tokenizer.model").read_bytes())


def tts_prompt(tokenizer) -> list[int]:
    """The official TTS prompt with the goldens' speaker and voice-prompt codes."""
    tensors, meta = golden("tts_e2e_fp32")
    codes = (tensors["prompt_code"] - tokenizer.audio_offset).tolist()
    speaker = meta["speaker"]
    return tts_prompt_ids(tokenizer, meta["text"], meta["speakers"][speaker], codes, speaker)


def agreement(model: Transformer, prompt: list[int], answer: list[int], allowed: torch.Tensor | None = None) -> float:
    """Share of the answer's steps at which `model`, given the prompt and the answer so far, picks the
    answer's token (among the `allowed` ones, a boolean mask [V])."""
    cache = model.new_cache(1, len(prompt) + len(answer))
    with torch.inference_mode():
        first = model(torch.tensor([prompt]), cache)  # [1, V]
        rest = model(torch.tensor([answer[:-1]]), cache, all_logits=True)[0]  # [len - 1, V]
    logits = torch.cat([first, rest])
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    picks = logits.argmax(-1)
    return (picks == torch.tensor(answer)).float().mean().item()


def bf16_and_quantized(directory, method: str) -> tuple[float, list[int]]:
    """(agreement of `method` with the bfloat16 model's greedy answer, that answer)."""
    lm = load_step1(directory, torch.bfloat16)
    prompt = tts_prompt(lm.tokenizer)
    answer = Session(lm.model).generate([prompt], Sampling(max_new_tokens=NEW_TOKENS))[0]
    return agreement(q.quantize(lm.model, method), prompt, answer), answer


def test_int8_follows_bf16_on_the_official_layout(narrow):
    share, answer = bf16_and_quantized(narrow, "int8")
    assert len(answer) == NEW_TOKENS
    assert share >= 0.6, f"int8 picks the bfloat16 model's token at {share:.0%} of steps"  # measured 0.77


@pytest.mark.parametrize("method, bound", [("int8", 0.8), ("int4", 0.25)])  # measured 0.94, 0.42
def test_int8_and_int4_follow_bf16_when_wide_enough(wide, method, bound):
    share, _ = bf16_and_quantized(wide, method)
    assert share >= bound, f"{method} picks the bfloat16 model's token at {share:.0%} of steps"


def test_int8_says_the_official_tokens_on_the_golden_tts(tmp_path):
    """The goldens' tiny Step-Audio-TTS-3B (its answer has top-2 margins of 25+): with int8 weights it still
    says exactly what the official code said."""
    tensors, meta = golden("tts_e2e_fp32")
    (tmp_path / "config.json").write_text(json.dumps(meta["step1_config"]))
    state = golden_state(meta["step1_spec"], meta["step1_seed"], meta["step1_sha256"])
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "tokenizer.model").write_bytes(golden("tts_prompt")[0]["tokenizer_model"].numpy().tobytes())
    lm = load_step1(tmp_path, torch.float32)
    q.quantize(lm.model, "int8")
    prompt = tts_prompt(lm.tokenizer)
    assert prompt == tensors["prompt_ids"].tolist()
    tokens = Session(lm.model).generate([prompt], Sampling(max_new_tokens=64, stop_ids=(3,)))[0]
    assert tokens + [3] == tensors["output_ids"].tolist()


def test_layers_compute_what_their_codes_say():
    """Each layer against the weights its definition gives (w = q * s; w = (q - 8) * s + z with min/max
    groups of 32, codes and scales recomputed here), and against the float weights."""
    torch.manual_seed(0)
    weight, x = torch.randn(96, 128), torch.randn(5, 128)
    exact = x @ weight.T

    scale = (weight.abs().amax(1) / 127).to(torch.bfloat16).float()
    int8_weight = (weight / scale[:, None]).round() * scale[:, None]
    groups = weight.reshape(96, 4, 32)
    low, high = groups.amin(-1), groups.amax(-1)
    step = (high - low) / 15
    zero = (low + 8 * step).to(torch.bfloat16).float()
    step = step.to(torch.bfloat16).float()
    codes = ((groups - zero[..., None]) / step[..., None] + 8).round().clamp(0, 15)
    int4_weight = ((codes - 8) * step[..., None] + zero[..., None]).reshape(96, 128)

    cases = ((q.Int8Linear(weight), int8_weight, 0.015), (q.Int4Linear(weight), int4_weight, 0.12))
    for layer, dequantised, error in cases:
        y = layer(x)
        reference = x.bfloat16().float() @ dequantised.T
        assert (y - reference).abs().max() / reference.abs().max() < 0.01  # bfloat16 activations
        assert (y - exact).norm() / exact.norm() < error  # measured 0.008 and 0.082


def test_int8_leaves_no_float_copy_and_a_quarter_of_the_bytes(narrow):
    model = load_step1(narrow, torch.float32).model
    replaced = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    float_bytes = sum(m.weight.nbytes for m in replaced)
    alive = [weakref.ref(m.weight) for m in replaced]
    del replaced
    q.quantize(model, "int8")
    gc.collect()
    assert not any(ref() is not None for ref in alive), "a float weight is still referenced"
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.dim() < 2 or not t.is_floating_point() for t in tensors if t is not model.embed.weight)
    quantized = [m for m in model.modules() if isinstance(m, q.Int8Linear)]
    assert len(quantized) == 4 * 2 + 1
    quantized_bytes = sum(b.nbytes for m in quantized for b in m.buffers())
    assert quantized_bytes < 0.3 * float_bytes  # int8 codes, one bfloat16 scale per row


def test_int4_bytes(wide):
    model = load_step1(wide, torch.float32).model
    float_bytes = sum(m.weight.nbytes for m in model.layers.modules() if isinstance(m, torch.nn.Linear))
    q.quantize(model, "int4")
    layers = [m for m in model.modules() if isinstance(m, q.Int4Linear)]
    assert len(layers) == 4 * 2 and isinstance(model.lm_head, q.Int8Linear)
    assert sum(b.nbytes for m in layers for b in m.buffers()) < 0.2 * float_bytes  # 4 bits + 2 x 16 bits per 32


@pytest.mark.parametrize("method", q.QUANTIZATIONS)
def test_meta_sizes_what_cpu_makes(wide, method):
    model = q.quantize(load_step1(wide, torch.float32).model, method)
    with torch.device("meta"):
        sized = Transformer(model.config)
    q.quantize(sized, method)
    shapes = {name: (t.shape, t.dtype) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    assert shapes == {name: (t.shape, t.dtype) for name, t in [*sized.named_parameters(), *sized.named_buffers()]}


def tiny(hidden: int = 64) -> Transformer:
    from lm_fixtures import tiny_model

    return tiny_model(position="sqrt_alibi", hidden_size=hidden, intermediate_size=128, num_heads=4)


@pytest.mark.parametrize(
    "make, method, group_size, says",
    [
        (tiny, "fp8", 32, "unknown quantization 'fp8': use one of int8, int4"),
        (lambda: tiny(48), "int4", 32, r"layers.0.attn.qkv is 48 -> \d+: use int8"),
        (tiny, "int4", 16, "groups of 16 inputs are not supported"),
        (lambda: q.quantize(tiny(), "int8"), "int4", 32, "quantized already: load it again"),
    ],
)
def test_refusals_change_nothing(make, method, group_size, says):
    model = make()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(OptionError, match=says):
        q.quantize(model, method, group_size)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_torch_without_the_kernels_is_refused(monkeypatch):
    monkeypatch.setattr(q, "_has_kernel", lambda op, device: op != "_weight_int4pack_mm_for_cpu")
    assert not q.int4_supported()
    with pytest.raises(OptionError, match="no CPU kernel for int4 weights .*: use int8"):
        q.quantize(tiny(), "int4")
    with pytest.raises(OptionError, match="bfloat16"):
        q.quantize_int4(tiny())
    monkeypatch.setattr(q, "_has_kernel", lambda op, device: False)
    with pytest.raises(OptionError, match="no CPU kernel for int8 weights .*: run the model in bfloat16"):
        q.quantize(tiny(), "int8")


def test_quantize_int4_is_quantize_int4():
    assert q.int4_supported("cpu") and not q.int4_supported("cuda")  # its callers pick int4 on CPU only
    a, b = q.quantize_int4(tiny()), q.quantize(tiny(), "int4")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
