"""The `stepaudio` command: one entry point, one subcommand per job, `--help` everywhere."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

from stepaudio import __version__
from stepaudio.errors import StepAudioError

_REPORTED_PACKAGES = ("torch", "numpy", "soundfile", "soxr", "kaldi-native-fbank", "safetensors", "onnxruntime", "gguf")


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


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
    }


def cmd_info(args: argparse.Namespace) -> None:
    info = _info(args)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"stepaudio {info['stepaudio']}  (python {info['python']}, {info['platform']})")
    print("packages: " + ", ".join(f"{name} {ver or '(not installed)'}" for name, ver in info["packages"].items()))
    print(f"device:   {'CUDA available' if info['cuda'] else 'CPU only'}; "
          f"threads: torch {info['threads']['torch']}, cpus {info['threads']['cpus']}")
    print(f"audio:    files longer than {info['max_audio_seconds']:g} s are refused (${info['max_audio_seconds_env']})")
    print("models:")
    for name, model in info["models"].items():
        print(f"  {name}")
        if "error" in model:
            print(f"    error: {model['error']}")
            continue
        for component, path in model["found"].items():
            print(f"    {component:<10} found    {path}")
        for component, hint in model["missing"].items():
            print(f"    {component:<10} missing  {hint}")
    if not any(model.get("kind") == "official" for model in info["models"].values()):
        print(f"  official checkpoints: none given (use --model DIR or set ${info['model_dir_env']})")


FEATURE_KINDS = ("paraformer", "whisper-80", "whisper-128", "decoder")


def cmd_features(args: argparse.Namespace) -> None:
    import numpy as np

    from stepaudio.audio import (
        Cmvn,
        ParaformerFrontend,
        load_audio,
        log_mel_spectrogram,
        mel_spectrogram,
        peak_normalize,
        trim_silence,
    )
    from stepaudio.audio import decoder_mel, fbank, whisper_mel

    rate = decoder_mel.SAMPLE_RATE if args.kind == "decoder" else fbank.SAMPLE_RATE
    samples, rate = load_audio(args.audio, rate)
    samples = peak_normalize(samples)
    if args.trim:
        samples = trim_silence(samples, rate)
    if args.kind == "paraformer":
        frontend = ParaformerFrontend(Cmvn.from_kaldi(args.cmvn) if args.cmvn else None)
        feats, rate_hz = frontend(samples), fbank.FRAMES_PER_SECOND
    elif args.kind == "decoder":
        feats, rate_hz = mel_spectrogram(samples).T.numpy(), decoder_mel.FRAMES_PER_SECOND
    else:
        n_mels = int(args.kind.split("-")[1])
        feats, rate_hz = log_mel_spectrogram(samples, n_mels).T.numpy(), whisper_mel.FRAMES_PER_SECOND
    print(f"{args.audio}: {len(samples) / rate:.2f} s at {rate} Hz -> {args.kind} features "
          f"{feats.shape[0]} frames x {feats.shape[1]} dims ({rate_hz:.2f} frames/s); "
          f"min {feats.min():.3f} mean {feats.mean():.3f} max {feats.max():.3f}")
    if args.output:
        np.save(args.output, feats)
        print(f"wrote {args.output} (float32 [frames, dims])")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepaudio", description="Step-Audio: speech tokenizer, speech-text LMs, "
                                     "speech decoder and real-time voice chat.")
    parser.add_argument("--version", action="version", version=f"stepaudio {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser("info", help="versions, threads, and which models were found where",
                               description="Print versions, threads and the models found on this machine.")
    info.add_argument("--model", metavar="DIR", help="also check this directory of official checkpoints")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=cmd_info)

    features = commands.add_parser("features", help="compute front-end features of an audio file",
                                   description="Load an audio file (wav/flac/ogg/mp3), peak-normalise it and compute "
                                   "one of the front-end features the models read.")
    features.add_argument("audio", help="input audio file")
    features.add_argument("--kind", choices=FEATURE_KINDS, default="paraformer",
                          help="paraformer: fbank+LFR (+CMVN) for the semantic tokenizer; whisper-80/128: Whisper "
                          "log-mel; decoder: 22.05 kHz mel of the speech decoder (default: %(default)s)")
    features.add_argument("--cmvn", metavar="AM_MVN", help="Kaldi am.mvn file for the paraformer features")
    features.add_argument("--trim", action="store_true", help="trim silence as for voice prompts")
    features.add_argument("-o", "--output", metavar="OUT.npy", help="save the features as float32 [frames, dims]")
    features.set_defaults(run=cmd_features)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except StepAudioError as error:
        print(f"stepaudio {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
