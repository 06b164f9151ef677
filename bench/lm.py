"""Language-model speed on this machine: stepaudio next to HF transformers on the same SmolLM2-135M
weights (and llama-cpp-python when it is installed), measured in the same run.

    python bench/lm.py [--threads 1] [--new-tokens 64] [--repeat 3] [--lookahead 5] [--json out.json]

Engines: `stepaudio fp32` (the dequantised GGUF weights, exactly what transformers runs),
`stepaudio int4` (4-bit weights in groups of 32, 8-bit vocabulary head: our fast CPU path) and
`transformers fp32` (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, greedy `generate`).
Timing rounds alternate between engines so a busy machine slows all of them alike; the best round
is kept. Prefill: tokens/s of one forward over the prompt. Decode: tokens/s of the tokens after the
first, i.e. (new_tokens - 1) / (generation time - prefill time), for every engine alike. Peak memory:
maximum resident set of a separate process that loads the engine and generates once (loading
included); weights MB: bytes of the parameters and buffers the engine computes with.

Speculative decoding: SmolLM2-135M has no smaller pretrained sibling here. Two drafts are measured:
the 4-bit copy of the model drafting for the float32 model (4x fewer weight bytes per draft step and
nearly the same predictions, so most drafts are accepted; the output stays exactly the float32
model's), and, for comparison, the first N layers of the same model sharing its head (no extra
memory, but the head does not understand middle-layer states: almost nothing is accepted). Printed:
speed-up over plain greedy decoding of the same target, acceptance rate, identical output or not.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle. "
    "The story should have a beginning, a middle and an end, and mention the sea, the wind and an old map."
)


def gguf_path() -> Path:
    from stepaudio.models.store import resolve_model

    return resolve_model("mini").require("chat_lm")


def weights_mb(module: torch.nn.Module) -> float:
    """Bytes of parameters and buffers (tied tensors counted once)."""
    tensors = {t.data_ptr(): t.nbytes for t in [*module.parameters(), *module.buffers()]}
    return sum(tensors.values()) / 2**20


def load_engine(name: str, base=None):
    """(prefill(ids) -> None, generate(ids, n) -> list[int], weights MB) for one engine; stepaudio
    engines start from `base` (a loaded LanguageModel) when given."""
    from stepaudio.lm.generate import Session
    from stepaudio.lm.loaders import load_lm
    from stepaudio.lm.quantize import quantize_int4
    from stepaudio.lm.sampling import Sampling

    if name == "stepaudio llama.cpp":  # our LM interface over llama.cpp: what `--engine llama.cpp` runs
        from stepaudio.lm import EngineOptions

        decoder = load_lm("mini-chat", engine=EngineOptions("llama.cpp")).backend.decoder(1024)

        def prefill(ids):
            decoder._llama.reset()  # no cached prefix: every run prefills, as the other engines do
            decoder._llama.eval(ids)

        def generate(ids, n):
            decoder._llama.reset()
            return list(decoder.stream(ids, Sampling(max_new_tokens=n)))

        return prefill, generate, gguf_path().stat().st_size / 2**20
    if name.startswith("stepaudio"):
        model = (base or load_lm("mini-chat")).model
        model = quantize_int4(copy.deepcopy(model)) if name == "stepaudio int4" else model

        def prefill(ids):
            Session(model, max_len=1024).feed([ids])

        def generate(ids, n):
            return Session(model, max_len=1024).generate([ids], Sampling(max_new_tokens=n))[0]

        return prefill, generate, weights_mb(model)
    if name == "transformers fp32":
        from transformers import AutoModelForCausalLM

        path = gguf_path()
        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

        def prefill(ids):
            hf(torch.tensor([ids]))

        def generate(ids, n):
            out = hf.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
            return out[0, len(ids) :].tolist()

        return prefill, generate, weights_mb(hf)
    if name == "llama.cpp":
        from llama_cpp import Llama

        llm = Llama(str(gguf_path()), n_ctx=1024, n_threads=torch.get_num_threads(), verbose=False)

        def prefill(ids):
            llm.reset()
            llm.eval(ids)

        def generate(ids, n):
            llm.reset()
            out = []
            for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                out.append(token)
                if len(out) == n:
                    return out
            return out

        return prefill, generate, gguf_path().stat().st_size / 2**20
    raise ValueError(name)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def engines_available() -> list[str]:
    names = ["stepaudio fp32", "stepaudio int4", "transformers fp32"]
    try:
        import llama_cpp  # noqa: F401

        names += ["llama.cpp", "stepaudio llama.cpp"]
    except ImportError:
        print("llama-cpp-python is not installed: no llama.cpp column (it needs a ~6 min source build here)")
    return names


def peak_memory_mb(name: str, threads: int, new_tokens: int) -> float:
    """Peak RSS of a fresh process that loads `name` and generates once."""
    # VmHWM, not ru_maxrss: the latter survives exec and would report this (large) parent process.
    code = (
        f"import sys, torch; sys.path.insert(0, 'bench'); torch.set_num_threads({threads}); import lm; "
        f"p, g, _ = lm.load_engine({name!r}); ids = list(range(100, 200))\n"
        f"with torch.inference_mode(): g(ids, {new_tokens})\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root / "src")}
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.strip().splitlines()[-1])


def speculative(target, drafts: dict, prompt: list[int], new_tokens: int, lookahead: int, repeat: int) -> list[dict]:
    """Greedy speculative decoding with each draft against plain greedy decoding of `target`."""
    from stepaudio.lm.generate import Session
    from stepaudio.lm.sampling import Sampling
    from stepaudio.lm.speculative import SpeculativeDecoder

    sampling = Sampling(max_new_tokens=new_tokens)
    plain_s, plain = float("inf"), None
    times = {name: float("inf") for name in drafts}
    outputs, stats = {}, {}
    for _ in range(repeat):  # alternate, so load changes hit every variant alike
        seconds, plain = timed(lambda: Session(target, max_len=1024).generate([prompt], sampling)[0])
        plain_s = min(plain_s, seconds)
        for name, draft in drafts.items():
            decoder = SpeculativeDecoder(target, draft, lookahead=lookahead, max_len=1024)
            seconds, outputs[name] = timed(decoder.generate, prompt, sampling)
            times[name], stats[name] = min(times[name], seconds), decoder.stats
    return [
        {
            "draft": name,
            "lookahead": lookahead,
            "plain_tokens_per_s": new_tokens / plain_s,
            "speculative_tokens_per_s": new_tokens / times[name],
            "speedup": plain_s / times[name],
            "acceptance_rate": stats[name].acceptance_rate,
            "identical_to_greedy": outputs[name] == plain,
        }
        for name in drafts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds (best kept)")
    parser.add_argument("--draft-layers", type=int, default=15, help="depth of the layer-truncated draft (of 30)")
    parser.add_argument("--lookahead", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from stepaudio.lm.loaders import load_lm

    base = load_lm("mini-chat")
    prompt = base.chat.encode(base.tokenizer, [{"role": "user", "content": PROMPT}])
    names = engines_available()
    engines = {name: load_engine(name, base) for name in names}
    results = {name: {"prefill": 0.0, "decode": 0.0, "weights_mb": engines[name][2]} for name in names}
    outputs = {}
    with torch.inference_mode():
        for prefill, generate, _ in engines.values():  # warm-up
            prefill(prompt)
            generate(prompt, 4)
        for _ in range(args.repeat):
            for name, (prefill, generate, _) in engines.items():
                prefill_s, _ = timed(prefill, prompt)
                total_s, outputs[name] = timed(generate, prompt, args.new_tokens)
                results[name]["prefill"] = max(results[name]["prefill"], len(prompt) / prefill_s)
                decode = (args.new_tokens - 1) / max(total_s - prefill_s, 1e-9)
                results[name]["decode"] = max(results[name]["decode"], decode)
    if not args.no_memory:
        for name in names:
            results[name]["peak_mb"] = peak_memory_mb(name, args.threads, args.new_tokens)
    reference = results["transformers fp32"]
    print(
        f"\nSmolLM2-135M-Instruct, prompt {len(prompt)} tokens, {args.new_tokens} new tokens (greedy), "
        f"{args.threads} thread(s), best of {args.repeat}"
    )
    columns = ("prefill tok/s", 15), ("decode tok/s", 14), ("decode vs HF", 14), ("weights MB", 12), ("peak MB", 10)
    print(f"{'engine':<20}" + "".join(f"{title:>{width}}" for title, width in columns) + "  same tokens as HF")
    for name, row in results.items():
        same = outputs[name] == outputs["transformers fp32"]
        print(
            f"{name:<20}{row['prefill']:>15.1f}{row['decode']:>14.1f}{row['decode'] / reference['decode']:>13.2f}x"
            f"{row['weights_mb']:>12.0f}{row.get('peak_mb', float('nan')):>10.0f}  {same}"
        )
        row["same_tokens_as_transformers"] = same
    if "llama.cpp" in results:
        ratio = results["stepaudio int4"]["decode"] / results["llama.cpp"]["decode"]
        print(f"stepaudio int4 decodes at {ratio:.2f}x llama.cpp")
        ratio = results["stepaudio llama.cpp"]["decode"] / results["llama.cpp"]["decode"]
        print(f"stepaudio on llama.cpp (--engine llama.cpp) decodes at {ratio:.2f}x llama.cpp")

    from stepaudio.lm.quantize import quantize_int4

    fp32, int4 = base.model, quantize_int4(copy.deepcopy(base.model))
    truncated = f"first {args.draft_layers} layers"
    with torch.inference_mode():
        spec = speculative(
            fp32,
            {"int4 copy": int4, truncated: fp32.truncated(args.draft_layers)},
            prompt,
            args.new_tokens,
            args.lookahead,
            args.repeat,
        )
        spec += speculative(
            int4,
            {f"int4 {truncated}": int4.truncated(args.draft_layers)},
            prompt,
            args.new_tokens,
            args.lookahead,
            args.repeat,
        )
    for row, target in zip(spec, ["fp32", "fp32", "int4"], strict=True):
        row["target"] = target
    print(f"\nspeculative decoding (greedy), lookahead {args.lookahead}")
    print(
        f"{'target':<8}{'draft':<26}{'plain tok/s':>12}{'spec tok/s':>12}{'speed-up':>10}{'acceptance':>12}  identical"
    )
    for row in spec:
        print(
            f"{row['target']:<8}{row['draft']:<26}{row['plain_tokens_per_s']:>12.1f}{row['speculative_tokens_per_s']:>12.1f}"
            f"{row['speedup']:>9.2f}x{row['acceptance_rate']:>12.2f}  {row['identical_to_greedy']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"engines": results, "speculative": spec, "threads": args.threads}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
