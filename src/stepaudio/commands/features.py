"""`stepaudio features`: compute one front-end feature of an audio file."""

from __future__ import annotations

import argparse
import io

FEATURE_KINDS = ("paraformer", "whisper-80", "whisper-128", "decoder")


def cmd_features(args: argparse.Namespace) -> None:
    import numpy as np

    from stepaudio.audio import (
        Cmvn,
        ParaformerFrontend,
        decoder_mel,
        fbank,
        load_audio,
        log_mel_spectrogram,
        mel_spectrogram,
        peak_normalize,
        trim_silence,
        whisper_mel,
    )
    from stepaudio.outputs import check_output, note_replacing, write_file

    if args.output:
        note_replacing(check_output(args.output, [args.audio, args.cmvn]))  # before the work
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
    print(
        f"{args.audio}: {len(samples) / rate:.2f} s at {rate} Hz -> {args.kind} features "
        f"{feats.shape[0]} frames x {feats.shape[1]} dims ({rate_hz:.2f} frames/s); "
        f"min {feats.min():.3f} mean {feats.mean():.3f} max {feats.max():.3f}"
    )
    if args.output:
        npy = io.BytesIO()
        np.save(npy, feats)  # given a path, np.save would add .npy to a name without it
        write_file(args.output, npy.getvalue())
        print(f"wrote {args.output} (float32 [frames, dims])")


def register(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser(
        "features",
        help="compute front-end features of an audio file",
        description="Load an audio file (wav/flac/ogg/mp3), peak-normalise it and compute "
        "one of the front-end features the models read.",
    )
    features.add_argument("audio", help="input audio file")
    features.add_argument(
        "--kind",
        choices=FEATURE_KINDS,
        default="paraformer",
        help="paraformer: fbank+LFR (+CMVN) for the semantic tokenizer; whisper-80/128: Whisper "
        "log-mel; decoder: 22.05 kHz mel of the speech decoder (default: %(default)s)",
    )
    features.add_argument("--cmvn", metavar="AM_MVN", help="Kaldi am.mvn file for the paraformer features")
    features.add_argument("--trim", action="store_true", help="trim silence as for voice prompts")
    features.add_argument("-o", "--output", metavar="OUT.npy", help="save the features as float32 [frames, dims]")
    features.set_defaults(run=cmd_features)
