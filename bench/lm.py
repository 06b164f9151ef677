"""Language-model speed on this machine: stepaudio next to HF transformers on the same SmolLM2-135M
weights (and llama-cpp-python when it is installed), measured in the same run.

    python bench/lm.py [--threads 1] [--new-tokens 64] [--repeat 3] [--draft-layers 6,10,15] [--json out.json]

Engines: `stepaudio fp32` (the dequantised GGUF weights, exactly what transformers runs),
`stepaudio int4` (4-bit weights in groups of 32, 8-bit vocabulary head: our fast CPU path) and
`transformers fp32` (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, greedy `generate`).
Timing rounds alternate between engines so a busy machine slows all of them alike; the best round
is kept. Prefill: tokens/s of one forward over the prompt. Decode: tokens/s of the tokens after the
first, i.e. (new_tokens - 1) / (generation time - prefill time), for every engine alike. Peak memory:
maximum resident set of a separate process that loads the engine and generates once.

Speculative decoding: SmolLM2-135M has no smaller pretrained sibling here, so the draft is the first
N layers of the same model sharing its embeddings and head (no extra memory). Printed: speed-up over
plain greedy decoding in the same precision, acceptance rate, and whether the outputs are identical.
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


def load_engine(name: str, base=None):
    """(prefill(ids) -> None, generate(ids, n) -> list[int]) for one engine; stepaudio engines start
    from `base` (a loaded LanguageModel) when given."""
    from stepaudio.lm.generate import Session
    from stepaudio.lm.loaders import load_lm
    from stepaudio.lm.quantize import quantize_int4
    from stepaudio.lm.sampling import Sampling

    if name.startswith("stepaudio"):
        model = (base or load_lm("mini-chat")).model
        model = quantize_int4(copy.deepcopy(model)) if name == "stepaudio int4" else model

        def prefill(ids):
            Session(model, max_len=1024).feed([ids])

        def generate(ids, n):
            return Session(model, max_len=1024).generate([ids], Sampling(max_new_tokens=n))[0]

        return prefill, generate
    if name == "transformers fp32":
        from transformers import AutoModelForCausalLM

        path = gguf_path()
        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()

        def prefill(ids):
            hf(torch.tensor([ids]))

        def generate(ids, n):
            out = hf.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
            return out[0, len(ids) :].tolist()

        return prefill, generate
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

        return prefill, generate
    raise ValueError(name)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def engines_available() -> list[str]:
    names = ["stepaudio fp32", "stepaudio int4", "transformers fp32"]
    try:
        import llama_cpp  # noqa: F401

        names.append("llama.cpp")
    except ImportError:
        print("llama-cpp-python is not installed: no llama.cpp column (it needs a ~6 min source build here)")
    return names


def peak_memory_mb(name: str, threads: int, new_tokens: int) -> float:
    """Peak RSS of a fresh process that loads `name` and generates once."""
    code = (
        f"import sys, resource, torch; sys.path.insert(0, 'bench'); torch.set_num_threads({threads}); import lm; "
        f"p, g = lm.load_engine({name!r}); ids = list(range(100, 200))\n"
        f"with torch.inference_mode(): g(ids, {new_tokens})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root / "src")}
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.strip().splitlines()[-1])


def speculative(lm_model, prompt: list[int], new_tokens: int, draft_layers: list[int], lookahead: int, repeat: int):
    from stepaudio.lm.generate import Session
    from stepaudio.lm.sampling import Sampling
    from stepaudio.lm.speculative import SpeculativeDecoder

    sampling = Sampling(max_new_tokens=new_tokens)
    rows = []
    plain_times, plain = [], None
    for _ in range(repeat):
        seconds, plain = timed(lambda: Session(lm_model, max_len=1024).generate([prompt], sampling)[0])
        plain_times.append(seconds)
    for layers in draft_layers:
        times, out, stats = [], None, None
        for _ in range(repeat):
            decoder = SpeculativeDecoder(lm_model, lm_model.truncated(layers), lookahead=lookahead, max_len=1024)
            seconds, out = timed(decoder.generate, prompt, sampling)
            times.append(seconds)
            stats = decoder.stats
        rows.append(
            {
                "draft_layers": layers,
                "lookahead": lookahead,
                "speedup": min(plain_times) / min(times),
                "acceptance_rate": stats.acceptance_rate,
                "identical_to_greedy": out == plain,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds (best kept)")
    parser.add_argument("--draft-layers", default="6,10,15", help="comma-separated draft depths (of 30 layers)")
    parser.add_argument("--lookahead", type=int, default=4)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from stepaudio.lm.loaders import load_lm

    base = load_lm("mini-chat")
    prompt = base.chat.encode(base.tokenizer, [{"role": "user", "content": PROMPT}])
    names = engines_available()
    engines = {name: load_engine(name, base) for name in names}
    results = {name: {"prefill": 0.0, "decode": 0.0} for name in names}
    outputs = {}
    with torch.inference_mode():
        for prefill, generate in engines.values():  # warm-up
            prefill(prompt)
            generate(prompt, 4)
        for _ in range(args.repeat):
            for name, (prefill, generate) in engines.items():
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
    print(
        f"{'engine':<20}{'prefill tok/s':>15}{'decode tok/s':>14}{'decode vs HF':>14}{'peak MB':>10}  same text as HF"
    )
    for name, row in results.items():
        same = outputs[name] == outputs["transformers fp32"]
        print(
            f"{name:<20}{row['prefill']:>15.1f}{row['decode']:>14.1f}{row['decode'] / reference['decode']:>13.2f}x"
            f"{row.get('peak_mb', float('nan')):>10.0f}  {same}"
        )
        row["same_tokens_as_transformers"] = same
    if "llama.cpp" in results:
        ratio = results["stepaudio int4"]["decode"] / results["llama.cpp"]["decode"]
        print(f"stepaudio int4 decodes at {ratio:.2f}x llama.cpp")

    draft_layers = [int(n) for n in args.draft_layers.split(",") if n]
    from stepaudio.lm.quantize import quantize_int4

    spec = {}
    with torch.inference_mode():
        for precision, model in (("fp32", base.model), ("int4", quantize_int4(copy.deepcopy(base.model)))):
            spec[precision] = speculative(model, prompt, args.new_tokens, draft_layers, args.lookahead, args.repeat)
    print(f"\nspeculative decoding (greedy), draft = first N of 30 layers, lookahead {args.lookahead}")
    print(f"{'precision':<10}{'draft layers':>13}{'speed-up':>10}{'acceptance':>12}  identical to plain greedy")
    for precision, rows in spec.items():
        for row in rows:
            print(
                f"{precision:<10}{row['draft_layers']:>13}{row['speedup']:>9.2f}x{row['acceptance_rate']:>12.2f}"
                f"  {row['identical_to_greedy']}"
            )
    if args.json:
        args.json.write_text(json.dumps({"engines": results, "speculative": spec, "threads": args.threads}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
