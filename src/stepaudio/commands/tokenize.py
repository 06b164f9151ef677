"""`stepaudio tokenize`: audio files -> dual-codebook speech tokens."""

from __future__ import annotations

import argparse
import json


def cmd_tokenize(args: argparse.Namespace) -> None:
    from stepaudio.audio import load_audio
    from stepaudio.tokenizer.dual import DualTokenizer

    audio = [(path, *load_audio(path)) for path in args.audio]  # bad files fail before the model loads
    tokenizer = DualTokenizer.load(args.model)
    for path, samples, rate in audio:
        tokens = tokenizer.encode(samples, rate, prompt=args.prompt)
        if args.format == "ids":
            print(" ".join(map(str, tokens.interleaved)))
        elif args.format == "text":
            print(tokens.text())
        else:
            record = {
                "audio": path,
                "seconds": round(len(samples) / rate, 3),
                "semantic": tokens.semantic.tolist(),
                "acoustic": tokens.acoustic.tolist(),
                "interleaved": tokens.interleaved.tolist(),
                "llm_ids": tokens.llm_ids().tolist(),
            }
            print(json.dumps(record))


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tokenize",
        help="audio -> dual-codebook speech tokens",
        description="Tokenize audio files into semantic (16.67 Hz, 1024 codes) and acoustic (25 Hz, 4096 codes) "
        "tokens interleaved 2:3 (audio index K in 0..5119; LLM id 65536+K). One line per file.",
    )
    parser.add_argument("audio", nargs="+", help="audio files (wav/flac/ogg/mp3)")
    parser.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    parser.add_argument(
        "--format",
        choices=("ids", "text", "json"),
        default="ids",
        help="ids: interleaved audio indices; text: <audio_K> string; json: both streams and LLM ids",
    )
    parser.add_argument("--prompt", action="store_true", help="trim silence as for a voice-cloning prompt")
    parser.set_defaults(run=cmd_tokenize)
