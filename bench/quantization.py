"""Weight-only int8 / int4 quantisation of the official Step1 models (#34 item 3): memory and agreement with bf16.

    python bench/quantization.py [--new-tokens 64] [--threads 2] [--skip-memory] [--json out.json]

(a) memory. Bytes of the weights the model computes with (parameters and buffers) for Step-Audio-TTS-3B
    (hidden 3072, intermediate 8192, 48 heads / 4 kv groups, 32 layers, vocab 74752) and Step-Audio-Chat
    (12288, 31232, 96 / 8, 88 layers, vocab 74752), the release's config.json (shared/reference), counted
    on the meta device (`quantize` sizes a model there without its weights). Measured for real as well: an
    official-layout checkpoint with TTS-3B's shapes and random bf16 weights, but 2 of its 32 layers, is
    written; each setting loads it (`load_step1`, bf16), quantizes it and runs one step (which reads every
    weight) in a process of its own, which reports its weight bytes, its peak RSS (VmHWM, loading included)
    and its RSS after the step, anonymous + file-backed (safetensors maps the checkpoint file: its pages
    count as file-backed). The embedding, head and one layer's bytes scaled to 32 layers must equal the
    meta count.
(b) agreement with bf16. Tiny official-layout checkpoints: the loaders' test checkpoint (48 wide: too narrow
    for int4's groups of 32), the same layout 64 wide (tests/lm/test_quantize.py) and the goldens' tiny
    Step-Audio-TTS-3B (tests/reference; 48 wide, an answer with top-2 margins of 25+). Each answers the
    official TTS prompt (the goldens' text, speaker and voice-prompt codes) greedily, audio tokens only, up to
    --new-tokens; printed per setting: the share of steps at which it picks bf16's token given bf16's answer
    so far ("per step"), the tokens equal to bf16's at the same place, and the first step that differs.
(c) mel. Each setting's tokens go through the goldens' tiny flow (CosyVoice-300M-25Hz layout, the goldens'
    voice prompt and one fixed noise draw): mean absolute difference of its log-mel to bf16's over the
    common frames, next to that of random audio tokens (the distance of unrelated speech). Random tiny
    weights: this says how far a token change moves the mel, not how a real voice sounds.
CPU. fp32 is printed as the yardstick of (b) and (c): what bf16 rounding alone changes.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "lm")]

from lm_fixtures import write_step1_checkpoint  # noqa: E402
from test_quantize import agreement, tts_prompt, write_wide_step1  # noqa: E402

from golden_tts import golden, write_golden_tts  # noqa: E402
from stepaudio.decoder.official import load_official  # noqa: E402
from stepaudio.errors import OptionError  # noqa: E402
from stepaudio.lm.generate import Session  # noqa: E402
from stepaudio.lm.loaders import load_step1, step1_config  # noqa: E402
from stepaudio.lm.model import Transformer  # noqa: E402
from stepaudio.lm.quantize import QUANTIZATIONS, quantize  # noqa: E402
from stepaudio.lm.sampling import Sampling  # noqa: E402
from stepaudio.tokenizer.interleave import LLM_AUDIO_OFFSET  # noqa: E402

SETTINGS = ("bf16", *QUANTIZATIONS)
EOT = 3
# The release's config.json fields (shared/reference/official-step-audio.md, section 3).
STEP1 = {"model_type": "step1", "vocab_size": 74752, "max_seq_len": 32768, "rms_norm_eps": 1e-5}
TTS_3B = STEP1 | {"hidden_size": 3072, "intermediate_size": 8192, "num_attention_heads": 48, "num_attention_groups": 4}
TTS_3B |= {"num_hidden_layers": 32}
CHAT = STEP1 | {"hidden_size": 12288, "intermediate_size": 31232, "num_attention_heads": 96, "num_attention_groups": 8}
CHAT |= {"num_hidden_layers": 88}
MEASURED_LAYERS = 2


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of parameters and buffers (a tied tensor counted once)."""
    return sum(t.nbytes for t in {id(t): t for t in [*module.parameters(), *module.buffers()]}.values())


def rss() -> dict[str, int]:
    """Resident bytes now: all, anonymous, file-backed (the checkpoint's pages mapped by safetensors), peak."""
    fields = dict(line.split(":") for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    kib = {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    return {"all": kib["VmRSS"], "anon": kib["RssAnon"], "file": kib["RssFile"], "peak": kib["VmHWM"]}


def meta_bytes(fields: dict, setting: str) -> int:
    with torch.device("meta"):
        model = Transformer(step1_config(fields)).to(torch.bfloat16)
    model._init_position()  # ALiBi slopes in float32, as the loader leaves them
    return weight_bytes(model if setting == "bf16" else quantize(model, setting))


def write_real_width(directory: Path) -> Path:
    """Official layout and TTS-3B's shapes, MEASURED_LAYERS layers, random bf16 weights."""
    from safetensors.torch import save_file

    config = TTS_3B | {"num_hidden_layers": MEASURED_LAYERS, "torch_dtype": "bfloat16"}
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    kv = config["num_attention_groups"] * hidden // config["num_attention_heads"]
    generator = torch.Generator().manual_seed(0)

    def weight(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.bfloat16) * 0.02

    ones = torch.ones(hidden, dtype=torch.bfloat16)
    state = {"model.embed_tokens.weight": weight(STEP1["vocab_size"], hidden), "model.norm.weight": ones}
    state["lm_head.weight"] = weight(STEP1["vocab_size"], hidden)
    for i in range(MEASURED_LAYERS):
        p = f"model.layers.{i}."
        state |= {p + "input_layernorm.weight": ones.clone(), p + "post_attention_layernorm.weight": ones.clone()}
        state |= {
            p + f"self_attn.{n}_proj.weight": weight(r, hidden)
            for n, r in zip("qkvo", (hidden, kv, kv, hidden), strict=True)
        }
        state |= {p + "mlp.gate_proj.weight": weight(inter, hidden), p + "mlp.up_proj.weight": weight(inter, hidden)}
        state[p + "mlp.down_proj.weight"] = weight(hidden, inter)
    directory.mkdir()
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.model").write_bytes(golden("tts_prompt")[0]["tokenizer_model"].numpy().tobytes())
    return directory


def memory_child(directory: str, setting: str) -> None:
    """Run in its own process: load, quantize, run one step (which reads every weight), report (one JSON line)."""
    start = rss()["all"]
    began = time.perf_counter()
    model = load_step1(directory, torch.bfloat16).model
    loaded = time.perf_counter()
    if setting != "bf16":
        quantize(model, setting)
    quantized = time.perf_counter()
    gc.collect()
    with torch.inference_mode():
        model(torch.arange(8)[None], model.new_cache(1, 8))
    report = {"weights": weight_bytes(model), "layer": weight_bytes(model.layers[0]), "rss_start": start}
    report |= {f"rss_{name}": value for name, value in rss().items()}
    report |= {"load_s": loaded - began, "quantize_s": quantized - loaded}
    print(json.dumps(report))


def memory(work: Path) -> dict:
    directory = write_real_width(work / "tts-3b-2-layers")
    rows = {}
    for setting in SETTINGS:
        child = [sys.executable, __file__, "--memory-child", str(directory), setting]
        measured = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        scaled = measured["weights"] + (TTS_3B["num_hidden_layers"] - MEASURED_LAYERS) * measured["layer"]
        counted = meta_bytes(TTS_3B, setting)
        if scaled != counted:
            raise AssertionError(f"{setting}: {scaled} bytes scaled from the loaded layers, {counted} counted on meta")
        rows[setting] = measured | {"tts_3b": counted, "chat": meta_bytes(CHAT, setting)}
    return rows


def audio_only(vocab: int) -> torch.Tensor:
    allowed = torch.zeros(vocab, dtype=torch.bool)
    allowed[LLM_AUDIO_OFFSET : LLM_AUDIO_OFFSET + 5120] = True
    allowed[EOT] = True
    return allowed


class Mel:
    """The goldens' tiny flow with the goldens' voice prompt and one noise draw for every setting."""

    def __init__(self, folder: Path):
        self.flow, _ = load_official(folder)
        tensors, _ = golden("tts_e2e_fp32")
        self.prompt_codes = tensors["prompt_code"] - LLM_AUDIO_OFFSET
        self.prompt_mel, self.embedding = tensors["speech_feat"].T, tensors["speech_embedding"]
        self.noise = torch.randn(80, self.prompt_mel.shape[1] + 4096, generator=torch.Generator().manual_seed(0))

    def __call__(self, tokens: list[int]) -> torch.Tensor | None:
        if not tokens:
            return None
        codes = torch.tensor(tokens) - LLM_AUDIO_OFFSET
        noise = self.noise[:, : self.prompt_mel.shape[1] + self.flow.config.mel_frames(len(codes))]
        with torch.inference_mode():
            return self.flow.generate(codes, self.prompt_codes, self.prompt_mel, self.embedding, noise)


def agreement_rows(directory: Path, new_tokens: int, mel: Mel) -> dict:
    """Per setting (fp32 as the yardstick): per-step agreement with bf16, equal tokens, first difference, mel."""
    reference = load_step1(directory, torch.bfloat16)
    prompt = tts_prompt(reference.tokenizer)
    allowed = audio_only(reference.model.config.vocab_size)
    sampling = Sampling(max_new_tokens=new_tokens, stop_ids=(EOT,))
    answer = list(Session(reference.model).stream(prompt, sampling, allowed=allowed))
    reference_mel = mel(answer)
    rows = {"bf16": {"tokens": len(answer)}}
    for setting in ("fp32", *QUANTIZATIONS):
        model = load_step1(directory, torch.float32 if setting == "fp32" else torch.bfloat16).model
        try:
            model = model if setting == "fp32" else quantize(model, setting)
        except OptionError as error:
            rows[setting] = {"refused": str(error)}
            continue
        tokens = list(Session(model).stream(prompt, sampling, allowed=allowed))
        same = [a == b for a, b in zip(tokens, answer, strict=False)]  # either may have stopped sooner
        stopped = [EOT] * (len(answer) < new_tokens)  # choosing to stop was a step too
        row = {"per_step": agreement(model, prompt, answer + stopped, allowed)}
        row |= {"same_place": sum(same), "tokens": len(tokens), "first_difference": (same + [False]).index(False)}
        ours = mel(tokens)
        if ours is not None and reference_mel is not None:
            frames = min(ours.shape[1], reference_mel.shape[1])
            row["log_mel_l1"] = float((ours[:, :frames] - reference_mel[:, :frames]).abs().mean())
        rows[setting] = row
    if reference_mel is not None:  # the yardstick: unrelated tokens (uniform random audio ids, as many)
        unrelated = torch.randint(0, 5120, (len(answer),), generator=torch.Generator().manual_seed(0))
        other = mel((unrelated + LLM_AUDIO_OFFSET).tolist())
        rows["random tokens"] = {"log_mel_l1": float((other - reference_mel).abs().mean())}
    return rows


def print_memory(rows: dict) -> None:
    gb, mib = 1e9, 2**20
    print("\n(a) weight memory (GB = 1e9 bytes; MiB = 2^20)")
    measured = f"TTS-3B at {MEASURED_LAYERS} layers: weights | peak RSS | RSS after one step (anon + file) | quantize"
    print(f"| setting | TTS-3B, 32 layers | Chat, 88 layers | {measured} |")
    print("|---|---|---|---|---|---|---|")
    base = rows["bf16"]
    for setting, r in rows.items():
        ratio = f" ({r['tts_3b'] / base['tts_3b']:.2f}x)" if setting != "bf16" else ""
        seconds = f"{r['quantize_s']:.1f} s" if setting != "bf16" else "-"
        print(
            f"| {setting} | {r['tts_3b'] / gb:.2f} GB{ratio} | {r['chat'] / gb:.1f} GB | "
            f"{r['weights'] / mib:.0f} MiB | {r['rss_peak'] / mib:.0f} MiB | {r['rss_all'] / mib:.0f} MiB "
            f"({r['rss_anon'] / mib:.0f} + {r['rss_file'] / mib:.0f}) | {seconds} |"
        )
    print(f"(RSS at the start, Python and torch imported: {base['rss_start'] / mib:.0f} MiB)")


def print_agreement(results: dict) -> None:
    print("\n(b, c) agreement with bf16 (greedy, audio tokens only) and log-mel L1 to bf16's mel")
    print("| checkpoint | setting | per step | same place | first difference | log-mel L1 |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        print(f"| {name} | bf16 | {rows['bf16']['tokens']} tokens | | | |")
        for setting, r in rows.items():
            if setting == "bf16":
                continue
            if "per_step" not in r and "refused" not in r:
                print(f"| | {setting} | | | | {r['log_mel_l1']:.3f} |")
                continue
            if "refused" in r:
                print(f"| | {setting} | n/a: {r['refused'].split(';')[-1].strip()} | | | |")
                continue
            mel = f"{r['log_mel_l1']:.3f}" if "log_mel_l1" in r else "-"
            print(
                f"| | {setting} | {r['per_step']:.0%} | {r['same_place']}/{r['tokens']} | "
                f"{r['first_difference']} | {mel} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true", help="leave out (a): it writes a 1.3 GB checkpoint")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--memory-child", nargs=2, metavar=("DIR", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(f"torch {torch.__version__}, {args.threads} threads, {time.strftime('%Y-%m-%d')}")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_memory:
            results["memory"] = memory(work)
            print_memory(results["memory"])
        golden_root = write_golden_tts(work / "golden")
        mel = Mel(golden_root / "Step-Audio-TTS-3B" / "CosyVoice-300M-25Hz")
        narrow, wide = work / "narrow", work / "wide"
        narrow.mkdir()
        wide.mkdir()
        write_step1_checkpoint(narrow)
        write_wide_step1(wide, (narrow / "tokenizer.model").read_bytes())
        checkpoints = {
            "tests/lm official layout, 48 wide": narrow,
            "same layout, 64 wide": wide,
            "goldens' tiny TTS-3B, 48 wide": golden_root / "Step-Audio-TTS-3B",
        }
        results["agreement"] = {name: agreement_rows(path, args.new_tokens, mel) for name, path in checkpoints.items()}
        print_agreement(results["agreement"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
