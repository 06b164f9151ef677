"""Tiny checkpoints written in each published format, loaded back and checked against references."""

import json

import numpy as np
import pytest
import torch
from lm_fixtures import direct_step1_forward, write_step1_checkpoint

from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.lm.loaders import load_lm
from stepaudio.lm.prompts import CHATML, STEP1_CHAT, tts_prompt_ids, tts_system_prompt
from stepaudio.tokenizer.interleave import LLM_AUDIO_OFFSET


@pytest.fixture(scope="module")
def step1_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("Step-Audio-TTS-3B")
    write_step1_checkpoint(directory)
    return directory


def test_step1_directory_loads_and_matches_the_direct_formula(step1_dir):
    lm = load_lm(step1_dir)
    config = lm.model.config
    assert (config.position, config.num_kv_heads, config.vocab_size, config.tie_embeddings) == (
        "sqrt_alibi",
        2,
        74752,
        False,
    )
    assert lm.chat is STEP1_CHAT and lm.model.dtype == torch.float32
    assert lm.answer_tokens == 2048  # Step-Audio-Chat's max_new_tokens in the release (stepaudio.py:37)
    tokens = torch.tensor([lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "hello world"}])])
    with torch.no_grad():
        got = lm.model(tokens, lm.model.new_cache(), all_logits=True)
        expected = direct_step1_forward(lm.model, tokens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert load_lm(step1_dir, dtype=torch.bfloat16).model.dtype == torch.bfloat16


def test_generate_and_text_chat_answer_at_the_models_length_unless_told(step1_dir):
    from argparse import Namespace

    from stepaudio.commands.generate import sampling_from_args

    lm = load_lm(step1_dir)
    args = Namespace(temperature=0.7, top_k=0, top_p=0.9, max_tokens=None, seed=None)
    assert sampling_from_args(args, lm).max_new_tokens == 2048
    assert sampling_from_args(Namespace(**vars(args) | {"max_tokens": 7}), lm).max_new_tokens == 7


def test_step1_tokenizer_keeps_markers_and_audio_tokens_whole(step1_dir):
    tokenizer = load_lm(step1_dir).tokenizer
    assert (tokenizer.bos_id, tokenizer.token_id("<|EOT|>"), tokenizer.token_id("<|BOT|>"), tokenizer.eos_id) == (
        1,
        3,
        4,
        3,
    )
    text = STEP1_CHAT.render([{"role": "user", "content": "hello<audio_7><audio_5119>world"}])
    ids = tokenizer.encode(text)
    assert ids[:2] == [1, 4] and ids.count(3) == 1 and ids[-1] != 3
    assert LLM_AUDIO_OFFSET + 7 in ids and LLM_AUDIO_OFFSET + 5119 in ids
    assert tokenizer.decode(ids) == text
    with pytest.raises(ValueError, match="audio tokens go up to"):
        tokenizer.encode("<audio_5120>")
    padding = [tokenizer.vocab_size + 1, LLM_AUDIO_OFFSET + 5120]  # ids a model may have and the tokenizer has not
    assert tokenizer.decode([*ids[:-1], *padding, ids[-1]]) == text


def test_tts_prompt_ids_follow_the_official_construction(step1_dir):
    lm = load_lm(step1_dir)
    tokenizer = lm.tokenizer
    ids = tts_prompt_ids(tokenizer, "(高兴1)你好", "我叫小明", [0, 1024, 5119], speaker="Tingting")

    def enc(text):
        return tokenizer.encode(text, bos=True)

    newline = len(enc("\n"))
    system = enc("system\n" + tts_system_prompt("(高兴1)你好", "Tingting"))
    expected = [1, 4, *system, 3]
    expected += [4, *enc("human\n"), *enc("\n我叫小明")[newline:], 3]
    expected += [4, *enc("assistant\n"), 65536, 66560, 70655, 3]
    expected += [4, *enc("human\n"), *enc("\n(高兴1)你好")[newline:], 3, 4, *enc("assistant\n")]
    assert ids == expected
    assert ids[:3] == [1, 4, 1]  # the release's encode() puts BOS after every turn marker
    with torch.no_grad():  # the ids fit the Step1 vocabulary
        assert lm.model(torch.tensor([ids]), lm.model.new_cache()).isfinite().all()


def _step1_variant(source, directory, tie, head):
    """A copy of a tiny Step1 checkpoint with `tie_word_embeddings` = tie (None: absent) and with or
    without lm_head.weight (in one file, as a single-shard checkpoint)."""
    from safetensors.torch import save_file

    from stepaudio.lm.loaders import read_safetensors

    directory.mkdir()
    (directory / "tokenizer.model").write_bytes((source / "tokenizer.model").read_bytes())
    config = json.loads((source / "config.json").read_text())
    if tie is not None:
        config["tie_word_embeddings"] = tie
    (directory / "config.json").write_text(json.dumps(config))
    state = read_safetensors(source)
    if not head:
        del state["lm_head.weight"]
    save_file(state, str(directory / "model.safetensors"))
    return state


@pytest.mark.parametrize(
    ("tie", "head", "tied"),
    [(True, False, True), (False, True, False), (None, False, True), (None, True, False), (True, True, True)],
)
def test_step1_ties_lm_head_as_its_config_says(step1_dir, tmp_path, recwarn, tie, head, tied):
    """tie_word_embeddings as vLLM's Step1 reads it; tied with an lm_head.weight of its own as well, the
    embeddings are the head (transformers ties after loading; vLLM keeps the one read last, which in one
    file is model.embed_tokens.weight) and a warning says the stored head is not used."""
    state = _step1_variant(step1_dir, tmp_path / "variant", tie, head)
    lm = load_lm(tmp_path / "variant")
    model = lm.model
    assert model.config.tie_embeddings is tied
    assert (model.lm_head.weight.data_ptr() == model.embed.weight.data_ptr()) is tied
    expected_head = state["model.embed_tokens.weight"] if tied else state["lm_head.weight"]
    torch.testing.assert_close(model.lm_head.weight, expected_head.float())
    tokens = torch.tensor([lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "hello world"}])])
    with torch.no_grad():
        got = model(tokens, model.new_cache(), all_logits=True)
    torch.testing.assert_close(got, direct_step1_forward(model, tokens), atol=1e-4, rtol=0)
    warned = [str(w.message) for w in recwarn if "lm_head.weight is not used" in str(w.message)]
    assert bool(warned) is (tie is True and head)


def test_step1_tying_problems_are_clear(step1_dir, tmp_path):
    _step1_variant(step1_dir, tmp_path / "untied", False, False)
    with pytest.raises(CheckpointError, match="tie_word_embeddings false but the weights have no lm_head.weight"):
        load_lm(tmp_path / "untied")
    _step1_variant(step1_dir, tmp_path / "odd", "yes", True)
    with pytest.raises(CheckpointError, match="tie_word_embeddings must be true or false, not 'yes'"):
        load_lm(tmp_path / "odd")


def test_step1_directory_problems_are_clear(step1_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((step1_dir / "config.json").read_text())
    (broken / "tokenizer.model").write_bytes((step1_dir / "tokenizer.model").read_bytes())
    (broken / "model.safetensors.index.json").write_text((step1_dir / "model.safetensors.index.json").read_text())
    with pytest.raises(ModelNotFound, match="lacks the shards"):
        load_lm(broken)
    (broken / "model.safetensors.index.json").unlink()
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_lm(broken)
    config = json.loads((step1_dir / "config.json").read_text())
    del config["num_hidden_layers"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="num_hidden_layers"):
        load_lm(broken)
    with pytest.raises(ModelNotFound, match="not a language model"):
        load_lm(tmp_path / "nothing")


# --- Hugging Face Llama ------------------------------------------------------------------------------


def byte_level_vocab():
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"]
    tokens = alphabet + [m.replace(" ", "") for m in merges] + ["<|im_start|>", "<|im_end|>"]
    return tokens, merges


def test_hf_llama_directory_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    from stepaudio.lm.tokenizer import BPETokenizer

    tokens, merges = byte_level_vocab()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    BPETokenizer.from_vocab(tokens, merges, tokens[-2:], None, len(tokens) - 1).backend.save(
        str(tmp_path / "tokenizer.json")
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    lm = load_lm(tmp_path)
    assert lm.chat is CHATML and lm.model.config.tie_embeddings
    ids = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "hello world"}])
    assert lm.tokenizer.decode(ids) == CHATML.render([{"role": "user", "content": "hello world"}])
    with torch.no_grad():
        torch.testing.assert_close(
            lm.model(torch.tensor([ids]), lm.model.new_cache(), all_logits=True),
            hf(torch.tensor([ids])).logits,
            atol=1e-4,
            rtol=0,
        )


# --- GGUF --------------------------------------------------------------------------------------------


def write_gguf(path, state, tokens, merges, heads, kv_heads, layers):
    """A llama GGUF the way llama.cpp's converter writes one: q/k rows permuted, Q4_1 matrices."""
    import gguf
    from gguf.quants import quantize

    def permute(w, n):
        return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(256)
    writer.add_embedding_length(state["model.embed_tokens.weight"].shape[1])
    writer.add_feed_forward_length(state["model.layers.0.mlp.gate_proj.weight"].shape[0])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_chat_template("{{'<|im_start|>system\nBe brief.<|im_end|>\n'}}{% for m in messages %}...{% endfor %}")
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v"}
    names |= {"self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up"}
    names |= {"mlp.down_proj": "ffn_down"}
    q41 = gguf.GGMLQuantizationType.Q4_1
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"].numpy())
    writer.add_tensor("output_norm.weight", state["model.norm.weight"].numpy())
    for i in range(layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", state[p + "input_layernorm.weight"].numpy())
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", state[p + "post_attention_layernorm.weight"].numpy())
        for hf_name, gguf_name in names.items():
            w = state[f"{p}{hf_name}.weight"].numpy()
            w = permute(w, heads) if gguf_name == "attn_q" else permute(w, kv_heads) if gguf_name == "attn_k" else w
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", quantize(w, q41), raw_dtype=q41)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_q4_1_loads_dequantised_and_unpermuted(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    tokens, merges = byte_level_vocab()
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    state = {name: tensor.detach().clone() for name, tensor in hf.state_dict().items()}
    write_gguf(tmp_path / "tiny.gguf", state, tokens, merges, 4, 2, 2)
    # The reference sees the same 4-bit weights: quantise and dequantise them like the file does.
    q41 = GGMLQuantizationType.Q4_1
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if param.ndim == 2 and "embed" not in name:
                param.copy_(torch.from_numpy(dequantize(quantize(param.numpy(), q41), q41)))
    lm = load_lm(tmp_path / "tiny.gguf")
    assert lm.chat.default_system == "Be brief." and lm.stop_ids() == (len(tokens) - 1,)
    assert lm.answer_tokens == 256
    assert lm.tokenizer.encode("<|im_start|>hello world") == [
        len(tokens) - 2,
        tokens.index("hello"),
        tokens.index("Ġwor"),
        tokens.index("l"),
        tokens.index("d"),
    ]
    ids = torch.tensor([lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "hello"}])])
    with torch.no_grad():
        torch.testing.assert_close(
            lm.model(ids, lm.model.new_cache(), all_logits=True), hf(ids).logits, atol=1e-4, rtol=0
        )


def test_not_a_gguf_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF but not really" * 10)
    with pytest.raises(CheckpointError, match="not a GGUF file"):
        load_lm(tmp_path / "x.gguf")


def test_gguf_tensor_sanity_of_the_reference_writer():
    """The permutation used by the writer above is undone by ours (guards the test itself)."""
    from stepaudio.lm.loaders import _unpermute_rope

    w = np.arange(8 * 3 * 4).reshape(8 * 3, 4).astype(np.float32)
    permuted = w.reshape(3, 2, 4, 4).swapaxes(1, 2).reshape(w.shape)
    assert torch.equal(_unpermute_rope(torch.from_numpy(permuted), 3), torch.from_numpy(w))


def test_a_tokenizer_holding_the_audio_pieces_loads_where_they_are(tmp_path):
    """The released tokenizer.model carries <audio_K> as pieces 65536 + K, inside its 74,752 pieces."""
    from lm_fixtures import train_step1_tokenizer

    from stepaudio.lm.tokenizer import SentencePieceTokenizer

    path = tmp_path / "tokenizer.model"
    train_step1_tokenizer(path, audio_pieces=16)
    tokenizer = SentencePieceTokenizer(path, audio_offset=5)
    assert tokenizer.vocab_size > 5 + 16
    assert tokenizer.encode("hi<audio_3><audio_15>", bos=False)[-2:] == [8, 20]
    assert [tokenizer.sp.id_to_piece(i) for i in (8, 20)] == ["<audio_3>", "<audio_15>"]  # the model's own ids
    assert tokenizer.decode([8, 20]) == "<audio_3><audio_15>"
    with pytest.raises(CheckpointError, match="its <audio_0> is id 5, where audio ids start at 7"):
        SentencePieceTokenizer(path, audio_offset=7)
    with pytest.raises(CheckpointError, match="would overlap"):
        train_step1_tokenizer(path)
        SentencePieceTokenizer(path, audio_offset=5)
