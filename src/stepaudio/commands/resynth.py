"""`stepaudio resynth`: tokenize speech, then decode the tokens back to speech in the input's voice."""

from __future__ import annotations

import argparse
import sys

from stepaudio.device import DEVICES
from stepaudio.models.measured import MINI_RESYNTH_BENCH, MINI_RESYNTH_ORIGINAL_WER, MINI_RESYNTH_WER

MINI_NOTE = (
    f"mini's resynth is experimental: its tokens and flow lose words (WER {MINI_RESYNTH_WER:.2f} on the recipe's "
    f"English eval set, where Whisper hears the original audio at {MINI_RESYNTH_ORIGINAL_WER:.2f}; "
    f"`{MINI_RESYNTH_BENCH}`)"
)


def cmd_resynth(args: argparse.Namespace) -> None:
    from stepaudio.audio import check_output_path, load_audio, save_audio
    from stepaudio.decoder.speech_decoder import SpeechDecoder
    from stepaudio.device import pick_device
    from stepaudio.models import resolve_model
    from stepaudio.outputs import note_replacing
    from stepaudio.tokenizer.dual import DualTokenizer

    samples, rate = load_audio(args.audio)  # a bad file or output path fails before any model loads
    note_replacing(check_output_path(args.output, [args.audio]))
    if resolve_model(args.model).kind == "mini":
        print(f"stepaudio resynth: note: {MINI_NOTE}", file=sys.stderr)
    decoder = SpeechDecoder.load(args.model).to(pick_device(args.device))
    tokenizer = DualTokenizer.load(args.model)
    tokens = tokenizer.encode(samples, rate)
    voice = decoder.voice(samples, rate, tokenizer.encode(samples, rate, prompt=True).interleaved)
    pcm, out_rate = decoder.decode(tokens.interleaved, voice)
    save_audio(args.output, pcm, out_rate)
    print(f"{args.audio}: {tokens.groups} token groups -> {args.output} ({len(pcm) / out_rate:.2f} s at {out_rate} Hz)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "resynth",
        help="speech -> tokens -> speech, in the input's voice",
        description="Tokenize an audio file with the dual tokenizer, then decode the tokens with the speech decoder, "
        "using the input itself as the voice prompt. Shows what the tokens keep. With mini the output is "
        f"experimental: {MINI_NOTE.split(': ', 1)[1]}.",
    )
    parser.add_argument("audio", help="input audio file (wav/flac/ogg/mp3)")
    parser.add_argument(
        "-o", "--output", required=True, help="output audio file (22.05 kHz; .wav, .flac, .ogg or .mp3)"
    )
    parser.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="where the decoder runs (auto: the GPU when torch sees one)"
    )
    parser.set_defaults(run=cmd_resynth)
