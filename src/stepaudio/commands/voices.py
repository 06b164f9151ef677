"""`stepaudio voices`: list, add and remove the voices TTS can speak in.

stepaudio voices list
stepaudio voices add alice alice.wav "The exact words spoken in alice.wav."
stepaudio voices remove alice
"""

from __future__ import annotations

import argparse


def cmd_voices(args: argparse.Namespace) -> None:
    from stepaudio.tts.voices import VoiceRegistry

    registry = VoiceRegistry.for_model(args.model)
    if args.action == "list":
        for name in registry.names():
            voice = registry.get(name)
            kind = "built-in" if voice.builtin else "user"
            print(f"{name}\t{kind}\t{voice.transcript}")
        print(f"(user voices: {registry.user_dir})")
    elif args.action == "add":
        voice = registry.add(args.name, args.wav, args.transcript)
        print(f"added {voice.name}: {voice.wav}")
    else:
        registry.remove(args.name)
        print(f"removed {args.name}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "voices",
        help="list, add or remove TTS voices",
        description="Voices are prompt recordings with their exact transcripts. Built-in ones come with the model; "
        "user voices are kept in $STEPAUDIO_VOICES_DIR (default $XDG_DATA_HOME/stepaudio/voices). A prompt is "
        "stored as recorded, mixed to mono at its own rate; each model conditions it as it reads prompts (mini: "
        "16 kHz, peak-normalised, silence-trimmed; official weights: as the release, from the whole recording).",
    )
    parser.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the voices: name, built-in or user, transcript")
    add = actions.add_parser("add", help="register a prompt recording as a voice")
    add.add_argument("name", help="voice name (letters, digits, '.', '-', '_')")
    add.add_argument("wav", help="prompt audio, 3-10 s of clean speech is best (wav/flac/ogg/mp3, any channels)")
    add.add_argument("transcript", help="the exact words spoken in the prompt")
    remove = actions.add_parser("remove", help="delete a user voice")
    remove.add_argument("name")
    parser.set_defaults(run=cmd_voices)
