"""The `stepaudio` command: one entry point, one subcommand per job, `--help` everywhere.

Each subcommand lives in `stepaudio.commands.<name>` and adds itself with `register(commands)`;
heavy imports happen inside the command, so `stepaudio --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from stepaudio import __version__
from stepaudio.errors import StepAudioError

# Idle OpenMP threads must sleep, not spin: on a loaded CPU (a server, other jobs) spinning threads made
# per-token decoding ten times slower here. Set before any command imports torch; the user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = (
    "info",
    "install",
    "features",
    "vad",
    "tokenize",
    "transcribe",
    "resynth",
    "tts",
    "voices",
    "generate",
    "chat",
    "simulate",
    "talk",
    "serve",
    "data",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepaudio",
        description="Step-Audio: speech tokenizer, speech-text LMs, speech decoder and real-time voice chat.",
    )
    parser.add_argument("--version", action="version", version=f"stepaudio {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"stepaudio.commands.{name}").register(commands)
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
