"""Golden outputs of the OFFICIAL Step-Audio code on tiny random checkpoints (issue #33, point 1).

This script runs the official code; the tests (`test_goldens.py`) compare ours to what it wrote and
never need the official code. It is run by hand, not by the tests, and its output is committed:

    STEP_AUDIO_OFFICIAL_DIR=/path/to/Step-Audio \\
    STEP1_MODELING_DIR=/path/to/folder/with/modeling_step1.py \\
    /path/to/official-venv/bin/python tests/reference/make_goldens.py [--out tests/reference/goldens]

- STEP_AUDIO_OFFICIAL_DIR: a checkout of github.com/stepfun-ai/Step-Audio (tts.py, cosyvoice/, utils.py);
  its `git rev-parse HEAD` (or STEP_AUDIO_OFFICIAL_COMMIT when the folder is an export) is recorded in
  every golden. The goldens in the repository were made at commit OFFICIAL_COMMIT below.
- STEP1_MODELING_DIR: a folder holding `modeling_step1.py`, the Step1 modelling code that ships with
  the Hugging Face checkpoints (not in the GitHub repository). Its SHA-256 and origin (STEP1_MODELING_ORIGIN)
  are recorded. The committed goldens used the Step1 classes of the public file `coreeditx/model_loader.py`
  of github.com/vantagewithai/Vantage-Step-Audio-EditX (commit d5da178), which carries the checkpoints'
  Step1Config / StepAttention / Step1ForCausalLM, cut before its own loader code.
- The official venv (kept apart from the project's): torch==2.9.1 'torchaudio==2.9.*' transformers==4.48.3
  (the release pins 4.48.3) 'numpy<2' hyperpyyaml omegaconf einops diffusers onnxruntime onnx librosa
  scipy sentencepiece protobuf safetensors conformer sox soundfile.

Nothing of the official code is copied here: it is imported from those folders at run time. Stubbed,
because it does not change any number compared:
- `whisper` (imported by the CosyVoice front end for the S3 speech tokenizer, which TTS never calls);
- CUDA: the official code places tensors on "cuda" (`.cuda()` on HiFT's window, `device_map="cuda"`,
  `.to("cuda")` of the prompt ids); here "cuda" means the CPU, and `device_map` is dropped;
- the Step-Audio tokenizer that turns a speaker's prompt wav into audio codes (`encoder.wav2token`): a
  fixed code pattern per wav length (the tokenizer has goldens of its own in tests/tokenizer);
- `torchaudio.load` (torchaudio 2.9 needs TorchCodec for it): soundfile's float read of the same
  16-bit file, which is the int16 value / 32768 as torchaudio's own backends give;
- `speech_tokenizer_v1.onnx` (the S3 tokenizer the front end opens but TTS never runs): a one-node graph.
Two things are changed on purpose and said in each golden's metadata:
- fp32 runs ("dtype": "float32"): the official flow and TTS call are bf16-only (`torch.bfloat16` is
  written into tts.py, cosyvoice.py, flow.py and the estimator); for the fp32 goldens every
  `torch.bfloat16` those four modules name is read as torch.float32, nothing else changes. The
  "as released" goldens ("dtype": "bfloat16") run them untouched.
- randomness: every random draw the official code makes (flow noise, HiFT source phases and noise) is
  recorded as drawn and stored, so our code can be fed the same numbers. The LM samples
  (do_sample=True, temperature 0.7) as released; the tiny LM's logits are made so peaked (margins > 40)
  that sampling picks the argmax, so greedy decoding on our side must give the same tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import golden_weights as gw  # noqa: E402

OFFICIAL_COMMIT = "a52b94d85d418cd5bc736d696d310c990befbc79"  # stepfun-ai/Step-Audio HEAD the goldens were made at
SAMPLE_RATE = 22050

# --- the tiny checkpoints -------------------------------------------------------------------------

FLOW_HIFT_YAML = """\
# Tiny CosyVoice-300M-25Hz: the official module tree and hyper-parameter names, small sizes.
__set_seed1: !apply:random.seed [1986]
__set_seed3: !apply:torch.manual_seed [1986]

sample_rate: 22050
spk_embed_dim: 12

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 5120
    input_frame_rate: 41.666666666666664
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.ConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 24
        num_blocks: 2
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 16
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 2
            num_heads: 2
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7]
    resblock_dilation_sizes: [[1, 3], [1, 3]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3], [1, 3]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 8

feat_extractor: !name:cosyvoice.matcha.audio.mel_spectrogram
    n_fft: 1024
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 256
    win_size: 1024
    fmin: 0
    fmax: 8000
    center: False
"""

STEP1_LOGITS_CONFIGS = {
    # 6 heads: 4 power-of-two slopes + 2 interleaved ones; 3 query heads per kv group
    "gqa6": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6, "num_attention_groups": 2},
    # 3 heads over one kv group (multi-query); 2 + 1 slopes
    "mqa3": {"hidden_size": 24, "intermediate_size": 40, "num_attention_heads": 3, "num_attention_groups": 1},
}
STEP1_LOGITS_VOCAB = 512
STEP1_TTS = {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6, "num_attention_groups": 2}
STEP1_TTS_VOCAB = 74752  # as released: 65536 text ids + audio ids from 65536


def step1_config(sizes: dict, vocab: int) -> dict:
    """config.json in the published form (field names and auto_map of Step-Audio-TTS-3B)."""
    return {
        "architectures": ["Step1ForCausalLM"],
        "auto_map": {
            "AutoConfig": "modeling_step1.Step1Config",
            "AutoModelForCausalLM": "modeling_step1.Step1ForCausalLM",
        },
        "model_type": "step1",
        "bos_token_id": 1,
        "pad_token_id": 0,
        "eos_token_id": 3,
        **sizes,
        "num_hidden_layers": 2,
        "max_seq_len": 32768,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-05,
        "torch_dtype": "bfloat16",
    }


def step1_spec(config: dict) -> list:
    h, inter, heads, groups = (
        config[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_attention_groups")
    )
    kv = groups * h // heads
    spec = [["model.embed_tokens.weight", [config["vocab_size"], h], 1.0, 0.0]]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        spec += [
            [p + "input_layernorm.weight", [h], 0.3, 1.0],
            [p + "self_attn.q_proj.weight", [h, h], 2.0 / math.sqrt(h), 0.0],
            [p + "self_attn.k_proj.weight", [kv, h], 2.0 / math.sqrt(h), 0.0],
            [p + "self_attn.v_proj.weight", [kv, h], 1.0 / math.sqrt(h), 0.0],
            [p + "self_attn.o_proj.weight", [h, h], 1.0 / math.sqrt(h), 0.0],
            [p + "post_attention_layernorm.weight", [h], 0.3, 1.0],
            [p + "mlp.gate_proj.weight", [inter, h], 1.0 / math.sqrt(h), 0.0],
            [p + "mlp.up_proj.weight", [inter, h], 1.0 / math.sqrt(h), 0.0],
            [p + "mlp.down_proj.weight", [h, inter], 1.0 / math.sqrt(inter), 0.0],
        ]
    spec += [["model.norm.weight", [h], 0.3, 1.0], ["lm_head.weight", [config["vocab_size"], h], 1.0, 0.0]]
    return spec


def module_spec(state: dict[str, torch.Tensor], kind: str) -> list:
    """Scales for a CosyVoice state dict, by parameter name: unit-gain weights, small biases, norms
    and weight-norm magnitudes around 1, Snake alphas positive, an F0 read-out that gives a mix of
    voiced and unvoiced frames."""
    spec = []
    for name, tensor in state.items():
        shape = list(tensor.shape)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale, offset = 1.0 / math.sqrt(fan_in), 0.0
        if name.endswith("weight_g") or name.endswith(".alpha"):
            scale, offset = 0.2, 1.0
        elif len(shape) == 1 and ("norm" in name or name.startswith("encoder.embed.out.1")) and name.endswith("weight"):
            scale, offset = 0.2, 1.0
        elif len(shape) == 1 and ("norm" in name or name.startswith("encoder.embed.out.1")) and name.endswith("bias"):
            scale = 0.1
        elif "block1.block.1" in name or "block2.block.1" in name or "final_block.block.1" in name:
            scale, offset = (0.2, 1.0) if name.endswith("weight") else (0.1, 0.0)
        elif "length_regulator.model." in name and len(shape) == 1:
            scale, offset = (0.2, 1.0) if name.endswith("weight") and int(name.split(".")[2]) % 3 == 1 else (0.1, 0.0)
        elif name.endswith("bias"):
            scale = 0.1
        elif "pos_bias" in name:
            scale = 0.2
        elif name == "input_embedding.weight":
            scale = 1.0
        if kind == "hift" and name == "conv_post.weight_g":  # log-magnitudes of a few units, not tens
            scale, offset = 0.05, 0.3
        if kind == "hift" and name == "f0_predictor.classifier.weight":
            scale = 40.0 / math.sqrt(fan_in)
        if kind == "hift" and name == "f0_predictor.classifier.bias":
            scale, offset = 0.0, -12.5
        spec.append([name, shape, scale, offset])
    return spec


def save_state(path: Path, state: dict[str, np.ndarray]) -> None:
    torch.save(gw.to_torch(state), path)


# --- the official code, imported with its stubs ---------------------------------------------------


class _Recorder:
    """Random draws of the official code, in the order made: (site, tensor as used)."""

    def __init__(self):
        self.draws: list[tuple[str, torch.Tensor]] = []
        self.replay: dict[str, list[torch.Tensor]] = {}  # site -> values to hand out instead of drawing

    def draw(self, site: str, make, like: torch.Tensor | None = None) -> torch.Tensor:
        queue = self.replay.get(site)
        value = queue.pop(0).to(like.dtype if like is not None else torch.float32).clone() if queue else make()
        self.draws.append((site, value))
        return value

    def take(self, site: str) -> list[torch.Tensor]:
        found = [t for s, t in self.draws if s == site]
        self.draws = [(s, t) for s, t in self.draws if s != site]
        return found


RECORD = _Recorder()
FP32 = {"on": False}  # the switch of the fp32 goldens: torch.bfloat16 read as torch.float32 where named


class _TorchAs(types.ModuleType):
    """`torch` as one official module sees it: itself, but for bfloat16 (fp32 goldens) and the
    recorded random draws."""

    def __init__(self, site: str):
        super().__init__("torch")
        self._site = site

    def __getattr__(self, name):
        if name == "bfloat16" and FP32["on"]:
            return torch.float32
        if name == "randn_like":

            def randn_like(x, *args, **kwargs):
                return RECORD.draw(f"{self._site}.randn_like", lambda: torch.randn_like(x, *args, **kwargs), x)

            return randn_like
        return getattr(torch, name)


def _uniform_recording(uniform_class):
    class RecordingUniform(uniform_class):
        def sample(self, sample_shape=torch.Size()):  # noqa: B008 (the signature it overrides)
            # zeroed in place for the fundamental afterwards
            return RECORD.draw("hift.phase", lambda: super(RecordingUniform, self).sample(sample_shape))

    return RecordingUniform


def import_official(official: Path, modeling: Path):
    """The official modules, with the stubs above in place; returns the imported `tts` module."""
    sys.path.insert(0, str(official))
    sys.modules.setdefault("whisper", types.ModuleType("whisper"))  # S3 tokenizer only, never run for TTS

    # CUDA -> CPU (the numbers are the CPU's either way on this machine)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        original_to = torch.Tensor.to

        def to(self, *args, **kwargs):
            args = tuple("cpu" if a == "cuda" else a for a in args)
            if kwargs.get("device") == "cuda":
                kwargs["device"] = "cpu"
            return original_to(self, *args, **kwargs)

        torch.Tensor.to = to

    import soundfile
    import torchaudio

    def load(path, *args, **kwargs):
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    torchaudio.load = load

    import cosyvoice.cli.cosyvoice as cli_cosyvoice
    import cosyvoice.flow.decoder as flow_decoder
    import cosyvoice.flow.flow as flow_flow
    import cosyvoice.flow.flow_matching as flow_matching
    import cosyvoice.hifigan.generator as generator

    import tts as official_tts

    for module, site in (
        (cli_cosyvoice, "cosyvoice"),
        (flow_decoder, "estimator"),
        (flow_flow, "flow"),
        (flow_matching, "flow"),
        (generator, "hift"),
        (official_tts, "tts"),
    ):
        module.torch = _TorchAs(site)
    generator.Uniform = _uniform_recording(generator.Uniform)

    class CpuAutoModel:
        @staticmethod
        def from_pretrained(path, **kwargs):
            kwargs.pop("device_map", None)
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    official_tts.AutoModelForCausalLM = CpuAutoModel
    return official_tts


def official_commit(official: Path) -> str:
    if os.environ.get("STEP_AUDIO_OFFICIAL_COMMIT"):
        return os.environ["STEP_AUDIO_OFFICIAL_COMMIT"]
    try:
        return subprocess.run(
            ["git", "-C", str(official), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout; set STEP_AUDIO_OFFICIAL_COMMIT)"


# --- tiny files in the official layout ------------------------------------------------------------


def write_onnx_speaker(path: Path, dim: int, seed: int) -> bytes:
    """A CAMPPlus stand-in with its interface: feats [1, T, 80] -> embedding [1, dim]
    (max and mean square over time of each feature, through a dense layer and tanh)."""
    from onnx import TensorProto, helper

    weights = gw.uniform(seed, "campplus.w", (160, dim)) * np.float32(0.2)
    feats = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, None, 80])
    out = helper.make_tensor_value_info("embs", TensorProto.FLOAT, [1, dim])
    w = helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten().tolist())
    nodes = [
        helper.make_node("ReduceMax", ["feats"], ["peak"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["feats", "feats"], ["square"]),
        helper.make_node("ReduceMean", ["square"], ["power"], axes=[1], keepdims=0),
        helper.make_node("Concat", ["peak", "power"], ["pooled"], axis=1),
        helper.make_node("MatMul", ["pooled", "w"], ["dense"]),
        helper.make_node("Tanh", ["dense"], ["embs"]),
    ]
    graph = helper.make_graph(nodes, "campplus_tiny", [feats], [out], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data = model.SerializeToString()
    path.write_bytes(data)
    return data


def write_onnx_unused(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, None])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 128, None])
    graph = helper.make_graph([helper.make_node("Identity", ["feats"], ["out"])], "unused", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def cosyvoice_specs() -> tuple[list, list]:
    """Names and shapes of the tiny flow and HiFT, read off the official modules built from the YAML."""
    from hyperpyyaml import load_hyperpyyaml

    configs = load_hyperpyyaml(FLOW_HIFT_YAML)
    return module_spec(configs["flow"].state_dict(), "flow"), module_spec(configs["hift"].state_dict(), "hift")


def write_cosyvoice(folder: Path, flow_spec: list, hift_spec: list, seed: int, campplus_dim: int = 12) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cosyvoice.yaml").write_text(FLOW_HIFT_YAML)
    flow_state, hift_state = gw.make_state(seed, flow_spec), gw.make_state(seed + 1, hift_spec)
    save_state(folder / "flow.pt", flow_state)
    save_state(folder / "hift.pt", hift_state)
    campplus = write_onnx_speaker(folder / "campplus.onnx", campplus_dim, seed + 2)
    write_onnx_unused(folder / "speech_tokenizer_v1.onnx")
    return {"flow": gw.digest(flow_state), "hift": gw.digest(hift_state), "campplus": campplus}


SPM_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "Hello there, how are you today?",
    "human assistant system",
    "你好，我是婷婷。你好，世界。",
    "作为一名卓越的声优演员，你的任务是根据文本中（）或()括号内标注的情感、语种或方言来朗读文本。",
    "请参考对话历史里的音色，用RAP方式将文本内容大声说唱出来。",
    "高兴 生气 悲伤 撒娇 中文 英文 韩语 日语 四川话 粤语 广东话 哼唱 慢速 快速",
] * 20


def train_tokenizer() -> bytes:
    """A SentencePiece model laid out like Step1's: <unk> 0, <s> 1, </s> 2, <|EOT|> 3, <|BOT|> 4."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS),
        model_writer=model,
        vocab_size=500,
        model_type="bpe",
        user_defined_symbols=["<|EOT|>", "<|BOT|>"],
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    return model.getvalue()


# The tokenizer_config.json published with Step-Audio-EditX (Step1, same tokenizer.model size as TTS-3B's);
# TTS-3B's own is not available here.
TOKENIZER_CONFIG = {
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "legacy": False,
    "model_max_length": 65536,
    "pad_token": "<unk>",
    "padding_side": "left",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": "<unk>",
    "use_default_system_prompt": False,
}


def write_step1(folder: Path, config: dict, spec: list, seed: int, modeling: Path, tokenizer: bytes | None) -> str:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "modeling_step1.py").write_bytes((modeling / "modeling_step1.py").read_bytes())
    state = gw.make_state(seed, spec)
    save_file(gw.to_torch(state), str(folder / "model.safetensors"))
    if tokenizer is not None:
        (folder / "tokenizer.model").write_bytes(tokenizer)
        (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    return gw.digest(state)


def load_step1(folder: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, trust_remote_code=True).eval()


# --- goldens --------------------------------------------------------------------------------------


class Golden:
    def __init__(self, name: str, meta: dict):
        self.name, self.tensors, self.meta = name, {}, dict(meta)

    def add(self, key: str, value) -> torch.Tensor:
        value = torch.as_tensor(value).detach().cpu()
        if value.is_floating_point():
            value = value.float()
        self.tensors[key] = value.contiguous().clone()
        return self.tensors[key]

    def save(self, out: Path) -> None:
        from safetensors.torch import save_file

        save_file(
            self.tensors,
            str(out / f"{self.name}.safetensors"),
            metadata={"meta": json.dumps(self.meta, ensure_ascii=False)},
        )
        size = (out / f"{self.name}.safetensors").stat().st_size
        print(f"wrote {self.name}.safetensors ({size / 1024:.0f} KiB)")


def step1_goldens(work: Path, modeling: Path, base: dict) -> Golden:
    """Logits of the official Step1ForCausalLM through Hugging Face's KV cache: a prefill of 13 tokens,
    then 5 single-token steps, for each tiny shape, in fp32 and bf16."""
    golden = Golden("step1", {**base, "component": "Step1ForCausalLM logits with a KV cache", "models": {}})
    ids = torch.from_numpy((np.abs(gw.uniform(7, "step1.ids", (18,))) * STEP1_LOGITS_VOCAB).astype(np.int64))
    ids = ids.clamp(max=STEP1_LOGITS_VOCAB - 1)
    golden.add("ids", ids)
    prefill = 13
    for index, (name, sizes) in enumerate(STEP1_LOGITS_CONFIGS.items()):
        config = step1_config(sizes, STEP1_LOGITS_VOCAB)
        spec = step1_spec(config)
        folder = work / f"step1-{name}"
        sha = write_step1(folder, config, spec, 100 + index, modeling, None)
        entry = {"config": config, "spec": spec, "seed": 100 + index, "sha256": sha}
        for dtype in (torch.float32, torch.bfloat16):
            model = load_step1(folder, dtype)
            entry["ties_lm_head"] = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
            with torch.inference_mode():
                out = model(input_ids=ids[None, :prefill], use_cache=True)
                logits, past = [out.logits[0]], out.past_key_values
                for position in range(prefill, len(ids)):
                    out = model(input_ids=ids[None, position : position + 1], past_key_values=past, use_cache=True)
                    logits.append(out.logits[0])
                    past = out.past_key_values
                whole = model(input_ids=ids[None], use_cache=False).logits[0]
            tag = "fp32" if dtype == torch.float32 else "bf16"
            golden.add(f"{name}.{tag}.logits", torch.cat(logits))
            golden.add(f"{name}.{tag}.logits_no_cache", whole)
        golden.meta["models"][name] = entry
    golden.meta["prefill"] = prefill
    # weight tying: Step1ForCausalLM defines no get_output_embeddings, so transformers never ties its head,
    # whatever tie_word_embeddings says (and a checkpoint without lm_head.weight gets a random head)
    tying = {}
    for tie in (True, False):
        config = {**step1_config(STEP1_LOGITS_CONFIGS["gqa6"], STEP1_LOGITS_VOCAB), "tie_word_embeddings": tie}
        folder = work / f"step1-tie-{tie}"
        write_step1(folder, config, step1_spec(config), 100, modeling, None)
        model = load_step1(folder, torch.float32)
        tying[f"tie_word_embeddings={str(tie).lower()}"] = (
            model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        )
    golden.meta["official_ties_lm_head"] = tying
    return golden


def mel_input(seed: int, frames: int) -> torch.Tensor:
    """A mel-like [1, 80, frames]: a log-magnitude level around -5 with structure in time and frequency."""
    u = torch.from_numpy(gw.uniform(seed, "mel", (80, frames)))
    ramp = torch.linspace(-2.0, -8.0, 80)[:, None]
    return (ramp + 1.5 * u + torch.sin(torch.arange(frames) / 3.0)[None])[None]


def flow_hift_goldens(work: Path, base: dict, flow_spec: list, hift_spec: list) -> list[Golden]:
    from cosyvoice.cli.cosyvoice import CosyVoice

    folder = work / "cosy"
    digests = write_cosyvoice(folder, flow_spec, hift_spec, 200)
    meta = {
        **base,
        "yaml": FLOW_HIFT_YAML,
        "flow_spec": flow_spec,
        "hift_spec": hift_spec,
        "flow_seed": 200,
        "hift_seed": 201,
        "flow_sha256": digests["flow"],
        "hift_sha256": digests["hift"],
    }

    # flow: MaskedDiffWithXvec.inference as CosyVoice.token_to_wav_offline calls it
    flow = Golden("flow", {**meta, "component": "MaskedDiffWithXvec.inference (CFG, Euler, cosine grid)", "cases": {}})
    n_tokens, n_prompt, prompt_frames = 37, 15, 23
    tokens = (np.abs(gw.uniform(11, "flow.tokens", (n_tokens,))) * 5120).astype(np.int64)
    prompt_tokens = (np.abs(gw.uniform(12, "flow.prompt_tokens", (n_prompt,))) * 5120).astype(np.int64)
    prompt_feat = mel_input(13, prompt_frames).transpose(1, 2)  # [1, P, 80]
    embedding = torch.from_numpy(gw.uniform(14, "flow.embedding", (1, 12)))
    flow.add("tokens", tokens)
    flow.add("prompt_tokens", prompt_tokens)
    flow.add("prompt_feat", prompt_feat)
    flow.add("embedding", embedding)
    models = {}
    for fp32 in (True, False):
        FP32["on"] = fp32
        torch.manual_seed(0)
        models[fp32] = CosyVoice(str(folder))

    def run(fp32: bool, n_p: int, replay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        FP32["on"] = fp32
        model = models[fp32].model.flow
        dtype = model.input_embedding.weight.dtype
        feat = prompt_feat[:, : prompt_frames if n_p else 0]
        RECORD.draws.clear()
        RECORD.replay = {"flow.randn_like": [replay]} if replay is not None else {}
        with torch.inference_mode():
            mel = model.inference(
                token=torch.tensor(tokens)[None],
                token_len=torch.tensor([n_tokens], dtype=torch.int32),
                prompt_token=torch.tensor(prompt_tokens[:n_p])[None],
                prompt_token_len=torch.tensor([n_p], dtype=torch.int32),
                prompt_feat=feat.to(dtype),
                prompt_feat_len=torch.tensor([feat.shape[1]], dtype=torch.int32),
                embedding=embedding.to(dtype),
            )
        (noise,) = RECORD.take("flow.randn_like")
        RECORD.replay = {}
        return mel, noise

    for case, n_p in (("prompt", n_prompt), ("no_prompt", 0)):
        flow.meta["cases"][case] = {"prompt_tokens": n_p, "prompt_frames": prompt_frames if n_p else 0}
        mel, noise = run(True, n_p)
        flow.add(f"{case}.fp32.noise", noise)
        flow.add(f"{case}.fp32.mel", mel)
        mel, noise = run(False, n_p)
        flow.add(f"{case}.bf16.noise", noise)
        flow.add(f"{case}.bf16.mel", mel)
        # the release's own rounding: the official flow in fp32 on the bf16 run's noise
        flow.add(f"{case}.bf16.mel_fp32_same_noise", run(True, n_p, noise)[0])
    FP32["on"] = False

    # HiFT: HiFTGenerator.inference on a mel, fp32 as released (CosyVoice converts only the flow)
    hift = Golden("hift", {**meta, "component": "HiFTGenerator.inference"})
    cosy = CosyVoice(str(folder))
    mel = mel_input(15, 24)
    hift.add("mel", mel)
    RECORD.draws.clear()
    with torch.inference_mode():
        f0 = cosy.model.hift.f0_predictor(mel)
        audio, source = cosy.model.hift.inference(mel=mel)
    (phase,) = RECORD.take("hift.phase")
    sine_noise, _noise_branch = RECORD.take("hift.randn_like")
    hift.add("f0", f0)
    hift.add("phase", phase[:, :, 0])  # after the official zeroes the fundamental's
    hift.add("noise", sine_noise)  # standard normal, before the official scales it by voicing
    hift.add("source", source)
    hift.add("audio", audio)
    voiced = float((f0 > 10).float().mean())
    hift.meta["voiced_share"] = voiced
    print(f"hift golden: {voiced:.0%} of frames voiced")
    return [flow, hift]


def speechlike(seconds: float, rate: int, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = gw.uniform(seed, "speech.noise", (len(t),))
    chirp = np.sin(2 * np.pi * (140 * t + 300 * t**2)) + 0.4 * np.sin(2 * np.pi * 620 * t + 1.0)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t) ** 2
    samples = 0.3 * envelope * chirp + 0.02 * noise
    return (np.round(samples * 32767) / 32768).astype(np.float32)  # exactly 16-bit values


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import soundfile

    soundfile.write(str(path), samples, rate, subtype="PCM_16")


class StubEncoder:
    """The Step-Audio tokenizer's `wav2token`, stubbed: 5 codes (2 semantic, 3 acoustic) per 120 ms,
    a fixed pattern, as LLM ids (65536 + code)."""

    def wav2token(self, wav, sample_rate):
        groups = int(wav.shape[-1] / sample_rate / 0.12)
        codes = []
        for g in range(groups):
            codes += [(37 * g + 5) % 1024, (53 * g + 11) % 1024]
            codes += [1024 + (97 * g + 7 * j + 3) % 4096 for j in range(3)]
        return [65536 + c for c in codes], None, None


def front_end_goldens(work: Path, base: dict, official_tts) -> list[Golden]:
    """The prompt mel (22.05 kHz decoder mel) and the CAMPPlus front end + embedding, through
    StepAudioTTS.preprocess_prompt_wav on a 24 kHz 16-bit wav (so both resamplings happen)."""
    from cosyvoice.cli.cosyvoice import CosyVoice

    folder = work / "cosy-frontend"
    flow_spec, hift_spec = cosyvoice_specs()
    digests = write_cosyvoice(folder, flow_spec, hift_spec, 300)
    cosy = CosyVoice(str(folder))
    frontend = cosy.frontend
    seen = {}
    extract_feat, extract_spk = frontend._extract_speech_feat, frontend._extract_spk_embedding
    session = frontend.campplus_session

    class RecordingSession:
        def get_inputs(self):
            return session.get_inputs()

        def run(self, names, feeds):
            seen["campplus_feats"] = torch.from_numpy(next(iter(feeds.values())))
            return session.run(names, feeds)

    frontend.campplus_session = RecordingSession()

    def feat(speech):
        seen["wav_22k"] = speech
        return extract_feat(speech)

    def spk(speech):
        seen["wav_16k"] = speech
        return extract_spk(speech)

    frontend._extract_speech_feat, frontend._extract_spk_embedding = feat, spk
    tts = official_tts.StepAudioTTS.__new__(official_tts.StepAudioTTS)
    tts.common_cosy_model, tts.encoder = cosy, StubEncoder()

    raw = speechlike(1.3, 24000, 21)
    write_wav(work / "prompt24k.wav", raw, 24000)
    _code, _token, _len, speech_feat, _feat_len, embedding = tts.preprocess_prompt_wav(str(work / "prompt24k.wav"))

    mel = Golden(
        "prompt_mel",
        {
            **base,
            "component": "prompt mel: torchaudio Resample to 22.05 kHz + the "
            "yaml's feat_extractor (matcha mel_spectrogram)",
            "raw_rate": 24000,
            "yaml": FLOW_HIFT_YAML,
        },
    )
    mel.add("raw", raw)
    mel.add("wav_22k", seen["wav_22k"][0])
    mel.add("speech_feat", speech_feat[0])  # [T, 80]
    camp = Golden(
        "campplus",
        {
            **base,
            "component": "CAMPPlus: torchaudio Resample to 16 kHz, kaldi.fbank "
            "(80 bins, dither 0) minus its mean, campplus.onnx on onnxruntime",
            "raw_rate": 24000,
        },
    )
    camp.add("raw", raw)
    camp.add("wav_16k", seen["wav_16k"][0])
    camp.add("feats", seen["campplus_feats"][0])
    camp.add("embedding", embedding[0])
    camp.add("campplus_onnx", torch.frombuffer(bytearray(digests["campplus"]), dtype=torch.uint8))
    # a 16 kHz input too, where the official resampler is the identity
    raw16 = speechlike(0.9, 16000, 22)
    write_wav(work / "prompt16k.wav", raw16, 16000)
    seen.clear()
    *_, embedding16 = tts.preprocess_prompt_wav(str(work / "prompt16k.wav"))
    camp.add("raw16", raw16)
    camp.add("feats16", seen["campplus_feats"][0])
    camp.add("embedding16", embedding16[0])
    return [mel, camp]


def chain_weights(spec: list, tokenizer_last: int, chain: list[int], dim: int) -> list:
    """The TTS LM's head rows that make its greedy output the chain: row chain[i+1] is a large multiple of
    the embedding of chain[i] (the residual stream carries the current token's embedding), so after
    the prompt's last token the LM says chain[0], chain[1], ..., then EOT."""
    overrides = []
    previous = tokenizer_last
    for token in chain:
        overrides.append([token, "model.embed_tokens.weight", previous, 2.0])
        previous = token
    out = []
    for name, shape, scale, offset in spec:
        if name == "lm_head.weight":
            out.append([name, shape, 0.01, 0.0, overrides])
        else:
            out.append([name, shape, scale, offset])
    return out


def tts_goldens(work: Path, modeling: Path, base: dict, official_tts, flow_spec, hift_spec) -> list[Golden]:
    """The TTS prompt ids that StepAudioTTS.tokenize builds, and whole StepAudioTTS.__call__ runs on a
    tiny Step-Audio-TTS-3B (fp32 and as released in bf16)."""
    from transformers import AutoTokenizer

    spm = train_tokenizer()
    root = work / "Step-Audio-TTS-3B"
    config = step1_config(STEP1_TTS, STEP1_TTS_VOCAB)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokenizer.model").write_bytes(spm)
    (root / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    tokenizer = AutoTokenizer.from_pretrained(root, trust_remote_code=True)
    slow = AutoTokenizer.from_pretrained(root, trust_remote_code=True, use_fast=False)
    last = tokenizer.encode("assistant\n")[-1]
    chain_codes = []
    for g in range(4):  # 4 groups of 2 semantic + 3 acoustic codes, all distinct
        chain_codes += [(101 * g + 17) % 1024, (211 * g + 5) % 1024]
        chain_codes += [1024 + (389 * g + 131 * j + 29) % 4096 for j in range(3)]
    chain = [65536 + c for c in chain_codes] + [3]
    spec = chain_weights(step1_spec(config), last, chain, STEP1_TTS["hidden_size"])
    sha = write_step1(root, config, spec, 400, modeling, spm)
    (root / "lib").mkdir(exist_ok=True)
    cosy_digests = {}
    for index, name in enumerate(("CosyVoice-300M-25Hz", "CosyVoice-300M-25Hz-Music")):
        cosy_digests[name] = write_cosyvoice(root / name, flow_spec, hift_spec, 500 + 10 * index)
        cosy_digests[name]["campplus"] = hashlib.sha256(cosy_digests[name]["campplus"]).hexdigest()

    speakers = {"TinySpeaker": "你好，我是婷婷。", "TinySpeakerRAP": "我是说唱的婷婷。"}
    run_dir = work / "run"
    (run_dir / "speakers").mkdir(parents=True, exist_ok=True)
    (run_dir / "speakers" / "speakers_info.json").write_text(json.dumps(speakers, ensure_ascii=False))
    speaker_wavs = {}
    for index, name in enumerate(speakers):
        speaker_wavs[name] = speechlike(1.0 + 0.2 * index, 16000, 30 + index)
        write_wav(run_dir / "speakers" / f"{name}_prompt.wav", speaker_wavs[name], 16000)

    meta = {
        **base,
        "step1_config": config,
        "step1_spec": spec,
        "step1_seed": 400,
        "step1_sha256": sha,
        "flow_spec": flow_spec,
        "hift_spec": hift_spec,
        "yaml": FLOW_HIFT_YAML,
        "cosyvoice": {
            name: {
                "flow_seed": 500 + 10 * i,
                "hift_seed": 501 + 10 * i,
                "campplus_seed": 502 + 10 * i,
                "flow_sha256": d["flow"],
                "hift_sha256": d["hift"],
                "campplus_sha256": d["campplus"],
            }
            for i, (name, d) in enumerate(cosy_digests.items())
        },
        "tokenizer_config": TOKENIZER_CONFIG,
        "tokenizer_class": type(tokenizer).__name__,
        "speakers": speakers,
        "chain": chain,
    }

    prompt = Golden("tts_prompt", {**meta, "component": "StepAudioTTS.tokenize / detect_instruction_name", "cases": []})
    prompt.add("tokenizer_model", torch.frombuffer(bytearray(spm), dtype=torch.uint8))
    cwd = os.getcwd()
    os.chdir(run_dir)
    try:
        goldens = [prompt]
        models = {}
        for fp32 in (True, False):
            FP32["on"] = fp32
            torch.manual_seed(0)
            models[fp32] = tts = official_tts.StepAudioTTS(str(root), StubEncoder())
            tag = "fp32" if fp32 else "bf16"
            if fp32:
                add_prompt_cases(prompt, tts, slow)
            goldens.append(tts_call(tts, tag, meta, speaker_wavs))
        # the release's own rounding: the bf16 call's tokens, voice and draws through the fp32 flow and HiFT
        bf16, tts32 = goldens[-1], models[True]
        FP32["on"] = True
        RECORD.draws.clear()
        RECORD.replay = {
            "flow.randn_like": [bf16.draws["flow"]],
            "hift.phase": [bf16.draws["phase"]],
            "hift.randn_like": [bf16.draws["sine"], bf16.draws["branch"]],
        }
        info = models[False].speakers_info[bf16.meta["speaker"]]
        audio = tts32.common_cosy_model.token_to_wav_offline(
            bf16.tensors["output_ids"][None, :-1] - 65536,
            info["cosy_speech_feat"].float(),
            info["cosy_speech_feat_len"],
            info["cosy_prompt_token"],
            info["cosy_prompt_token_len"],
            info["cosy_speech_embedding"].float(),
        )
        assert not any(RECORD.replay.values()), "not every recorded draw was replayed"
        RECORD.replay = {}
        bf16.add("mel_fp32_same_noise", goldens[-2].seen["mel"][0])
        bf16.add("audio_fp32_same_noise", audio[0])
    finally:
        os.chdir(cwd)
        FP32["on"] = False
    return goldens


PROMPT_CASES = [
    # (text, prompt speaker, speaker's transcript)
    ("你好，世界。Hello there.", "TinySpeaker", "你好，我是婷婷。"),
    ("(高兴1)Hello there, how are you today?", "TinySpeaker", "你好，我是婷婷。"),
    ("（RAP）我踏上这条路", "TinySpeaker", "我是说唱的婷婷。"),
    ("(哼唱)啦啦啦", "TinySpeaker", "我是说唱的婷婷。"),
    ("(RAP)(哼唱)both tags", "TinySpeaker", "我是说唱的婷婷。"),
    ("（高兴1）你好（笑）呀", "TinySpeaker", "你好，我是婷婷。"),
    ("（RAP）我踏上（嘿）这条路", "TinySpeaker", "我是说唱的婷婷。"),  # later full-width parentheses
    ("(粤语)(快速1)你好。", "", "My own words."),
    ("Hello (not a tag) there.", "", "My own words."),
    ("  leading spaces and\nnewline", "TinySpeaker", " spaced transcript "),
]


def add_prompt_cases(golden: Golden, tts, slow_tokenizer) -> None:
    codes = StubEncoder().wav2token(np.zeros(16000), 16000)[0]
    for index, (text, speaker, transcript) in enumerate(PROMPT_CASES):
        ids = tts.tokenize(text, transcript, speaker, codes)
        golden.add(f"case{index}.ids", torch.tensor(ids))
        # the same with the slow (sentencepiece) LlamaTokenizer: equal unless the conversion matters
        fast = tts.tokenizer
        tts.tokenizer = slow_tokenizer
        slow_ids = tts.tokenize(text, transcript, speaker, codes)
        tts.tokenizer = fast
        golden.meta["cases"].append(
            {
                "text": text,
                "speaker": speaker,
                "prompt_text": transcript,
                "instruction": tts.detect_instruction_name(text),
                "slow_tokenizer_equal": slow_ids == ids,
            }
        )
    golden.add("prompt_codes", torch.tensor(codes))


def tts_call(tts, tag: str, meta: dict, speaker_wavs: dict) -> Golden:
    """One StepAudioTTS.__call__ with the registered speaker, every intermediate recorded."""
    golden = Golden(
        f"tts_e2e_{tag}",
        {
            **meta,
            "component": "StepAudioTTS.__call__ end to end",
            "dtype": "float32" if tag == "fp32" else "bfloat16 (as released)",
        },
    )
    text, speaker = "你好，世界。Hello there.", "TinySpeaker"
    seen = {}
    generate = tts.llm.generate

    def recording_generate(input_ids, **kwargs):
        out = generate(input_ids, **kwargs)
        seen["prompt_ids"], seen["output_ids"] = input_ids[0].clone(), out[0, input_ids.shape[1] :].clone()
        seen["generate_kwargs"] = {k: v for k, v in kwargs.items() if isinstance(v, (int, float, bool, str))}
        return out

    tts.llm.generate = recording_generate
    flow = tts.common_cosy_model.model.flow
    inference = flow.inference

    def recording_inference(**kwargs):
        seen["flow_kwargs"] = kwargs
        mel = inference(**kwargs)
        seen["mel"] = mel
        return mel

    flow.inference = recording_inference
    RECORD.draws.clear()
    audio, rate = tts(text, speaker)
    info = tts.speakers_info[speaker]
    golden.add("speaker_wav", speaker_wavs[speaker])
    golden.add("prompt_code", torch.tensor(info["prompt_code"]))
    golden.add("speech_feat", info["cosy_speech_feat"][0])
    golden.add("speech_embedding", info["cosy_speech_embedding"][0])
    golden.add("prompt_ids", seen["prompt_ids"])
    golden.add("output_ids", seen["output_ids"])
    (flow_noise,) = RECORD.take("flow.randn_like")
    golden.add("flow_noise", flow_noise[0])
    golden.add("mel", seen["mel"][0])
    (phase,) = RECORD.take("hift.phase")
    sine_noise, branch = RECORD.take("hift.randn_like")
    golden.draws = {"flow": flow_noise, "phase": phase, "sine": sine_noise, "branch": branch}
    golden.seen = seen
    golden.add("hift_phase", phase[0, :, 0])
    golden.add("hift_noise", sine_noise[0])
    golden.add("audio", audio[0])
    onnx = Path(tts.common_cosy_model.model_dir) / "campplus.onnx"
    golden.add("campplus_onnx", torch.frombuffer(bytearray(onnx.read_bytes()), dtype=torch.uint8))
    golden.meta |= {"text": text, "speaker": speaker, "rate": rate, "generate_kwargs": seen["generate_kwargs"]}
    tokens = seen["output_ids"].tolist()
    assert tokens == meta["chain"], f"the tiny LM did not follow its chain: {tokens}"
    # how sure the sampler was: the smallest gap between the top two logits over the generated steps
    with torch.inference_mode():
        ids = torch.cat([seen["prompt_ids"], seen["output_ids"][:-1]])[None]
        logits = tts.llm(input_ids=ids, use_cache=False).logits[0, len(seen["prompt_ids"]) - 1 :].float()
    top = logits.topk(2, dim=-1).values
    assert logits.argmax(-1).tolist() == tokens
    golden.meta["min_top2_margin"] = float((top[:, 0] - top[:, 1]).min())
    print(f"tts_e2e_{tag}: min top-2 logit margin {golden.meta['min_top2_margin']:.1f}")
    return golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "goldens")
    args = parser.parse_args()
    try:
        official = Path(os.environ["STEP_AUDIO_OFFICIAL_DIR"]).resolve()
        modeling = Path(os.environ["STEP1_MODELING_DIR"]).resolve()
    except KeyError as missing:
        sys.exit(f"set {missing.args[0]} (see this script's docstring)")
    if not (official / "tts.py").is_file() or not (modeling / "modeling_step1.py").is_file():
        sys.exit("STEP_AUDIO_OFFICIAL_DIR must hold tts.py and STEP1_MODELING_DIR modeling_step1.py")
    torch.set_num_threads(1)
    official_tts = import_official(official, modeling)
    import transformers

    base = {
        "official_repository": "github.com/stepfun-ai/Step-Audio",
        "official_commit": official_commit(official),
        "step1_modeling_sha256": hashlib.sha256((modeling / "modeling_step1.py").read_bytes()).hexdigest(),
        "step1_modeling_origin": os.environ.get("STEP1_MODELING_ORIGIN", "unknown"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "made_by": "tests/reference/make_goldens.py",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        work = Path(tmp)
        flow_spec, hift_spec = cosyvoice_specs()
        goldens = [step1_goldens(work, modeling, base)]
        goldens += flow_hift_goldens(work, base, flow_spec, hift_spec)
        goldens += front_end_goldens(work, base, official_tts)
        goldens += tts_goldens(work, modeling, base, official_tts, flow_spec, hift_spec)
    for golden in goldens:
        golden.save(args.out)


if __name__ == "__main__":
    main()
