import pytest
import torch
from lm_fixtures import direct_sqrt_alibi, direct_step1_forward, tiny_config, tiny_model

from stepaudio.errors import CheckpointError
from stepaudio.lm.generate import Session
from stepaudio.lm.loaders import convert_hf_state
from stepaudio.lm.model import LMConfig, Transformer, alibi_slopes, sqrt_alibi_bias

transformers = pytest.importorskip("transformers")


def hf_llama(seed=0, tie=False, heads=6, kv_heads=2):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        rope_theta=500.0,
        tie_word_embeddings=tie,
        attn_implementation="eager",
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.rand_like(param) + 0.5 if "norm" in name else torch.randn_like(param) * 0.3)
    ours_config = LMConfig(96, 48, 80, 3, heads, kv_heads, "rope", 500.0, 1e-5, tie, 128)
    state = convert_hf_state(model.state_dict(), 3)
    if tie:
        state.pop("lm_head.weight", None)
    return model, Transformer.from_state_dict(ours_config, state, torch.float32)


@pytest.mark.parametrize("tie,heads,kv_heads", [(False, 6, 2), (True, 4, 4), (False, 6, 1)])
def test_logits_equal_transformers_llama(tie, heads, kv_heads):
    hf, ours = hf_llama(tie=tie, heads=heads, kv_heads=kv_heads)
    tokens = torch.randint(0, 96, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens, ours.new_cache(2), all_logits=True)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_decoding_with_the_cache_equals_transformers_full_forward():
    hf, ours = hf_llama(seed=3)
    tokens = torch.randint(0, 96, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(tokens).logits[0]
        cache = ours.new_cache()
        got = [ours(tokens[:, :8], cache, all_logits=True)[0]]  # prefill, then appends of 1 and 3 tokens
        for start, end in [(8, 9), (9, 12), *((i, i + 1) for i in range(12, 20))]:
            got.append(ours(tokens[:, start:end], cache, all_logits=True)[0])
    torch.testing.assert_close(torch.cat(got), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_heads", [1, 4, 6, 8, 12, 48])
def test_sqrt_alibi_matches_its_definition(num_heads):
    positions = torch.arange(9)
    torch.testing.assert_close(
        sqrt_alibi_bias(alibi_slopes(num_heads), positions, positions), direct_sqrt_alibi(num_heads, 9)
    )
    assert alibi_slopes(8).tolist() == [2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8]


@pytest.mark.parametrize("num_heads,num_kv_heads", [(6, 2), (12, 4), (4, 1)])
def test_step1_forward_matches_direct_formula(num_heads, num_kv_heads):
    model = tiny_model(position="sqrt_alibi", num_heads=num_heads, num_kv_heads=num_kv_heads)
    tokens = torch.randint(0, 96, (1, 14), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = direct_step1_forward(model, tokens)
        cache = model.new_cache()
        got = torch.cat([model(tokens[:, :9], cache, all_logits=True), model(tokens[:, 9:], cache, all_logits=True)], 1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("position", ["rope", "sqrt_alibi"])
def test_left_padded_batch_equals_rows_alone(position):
    model = tiny_model(position=position)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]
    with torch.no_grad():
        batch = Session(model, batch_size=3)
        logits = batch.feed(prompts)
        logits_next = batch.append(torch.tensor([[1], [2], [3]]))
        for row, prompt in enumerate(prompts):
            alone = Session(model)
            torch.testing.assert_close(logits[row], alone.feed([prompt])[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(logits_next[row], alone.append(torch.tensor([[row + 1]]))[0], atol=1e-4, rtol=0)


def test_bfloat16_runs_close_to_float32():
    model = tiny_model()
    tokens = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(tokens, model.new_cache())
        half = model.to(torch.bfloat16)(tokens, model.new_cache())
    assert half.dtype == torch.float32 and (half - full).abs().max() < 0.1 * full.abs().max()


def test_truncated_model_shares_weights_and_runs():
    model = tiny_model(num_layers=4)
    draft = model.truncated(2)
    assert draft.config.num_layers == 2 and draft.layers[1] is model.layers[1] and draft.embed is model.embed
    with torch.no_grad():
        assert draft(torch.tensor([[1, 2, 3]]), draft.new_cache()).shape == (1, 96)
    with pytest.raises(ValueError):
        model.truncated(5)


def test_bad_configs_and_overflow_are_clear_errors():
    with pytest.raises(CheckpointError, match="kv heads must divide heads"):
        tiny_config(num_kv_heads=4)
    with pytest.raises(CheckpointError, match="position"):
        tiny_config(position="alibi")
    model = tiny_model()
    with pytest.raises(ValueError, match="exceed the cache length"):
        model(torch.zeros(1, 20, dtype=torch.long), model.new_cache(max_len=16))


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(position="sqrt_alibi", tie_embeddings=True)
    config.save(tmp_path / "config.json")
    assert LMConfig.load(tmp_path / "config.json") == config
