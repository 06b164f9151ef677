"""`stepaudio train RECIPE`: train a component from a corpus manifest, on one process or under torchrun.

stepaudio train flow --manifest corpus/manifest.jsonl --out runs/flow --export models/mini-decoder
torchrun --nproc_per_node 2 -m stepaudio.cli train vocoder --manifest ... --out runs/vocoder
"""

from __future__ import annotations

import argparse
from pathlib import Path

RECIPES = ("flow", "vocoder")


def cmd_train(args: argparse.Namespace) -> None:
    import json

    from stepaudio.decoder.checkpoint import config_from_dict
    from stepaudio.decoder.flow import FlowConfig
    from stepaudio.decoder.hift import HiFTConfig
    from stepaudio.train import decoder_recipes
    from stepaudio.train.loop import TrainOptions

    options = TrainOptions(
        out=Path(args.out),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        log_every=args.log_every,
        save_every=args.save_every,
        seed=args.seed,
        resume=args.resume,
    )
    export = Path(args.export) if args.export else None
    config_data = json.loads(Path(args.config).read_text()) if args.config else None
    if args.recipe == "flow":
        config = config_from_dict(FlowConfig, config_data) if config_data else decoder_recipes.MINI_FLOW
        embed = None
        if args.speaker == "ge2e":
            from stepaudio.decoder.speaker import GE2E
            from stepaudio.models.store import resolve_model

            embed = GE2E.from_resemblyzer(resolve_model("mini").require("speaker"))
        step = decoder_recipes.train_flow(args.manifest, options, config, embed, None, export, args.max_tokens)
    else:
        config = config_from_dict(HiFTConfig, config_data) if config_data else decoder_recipes.MINI_HIFT
        step = decoder_recipes.train_vocoder(args.manifest, options, config, export, args.segment_frames)
    print(f"{args.recipe}: trained to step {step}; log {options.out / 'log.jsonl'}, weights in {export or options.out}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model component from a corpus manifest",
        description="Train the speech decoder's flow (tokens -> mel) or vocoder (mel -> waveform) from a JSONL "
        "manifest (audio, text, voice, split[, tokens]). Runs on one process, or on several under torchrun (gloo). "
        "Writes OUT/checkpoint.pt (for --resume), OUT/log.jsonl (losses) and the weights as safetensors + JSON.",
    )
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--manifest", required=True, type=Path, help="corpus manifest (JSONL)")
    parser.add_argument("--out", required=True, help="run directory: checkpoint, log, feature cache")
    parser.add_argument("--export", help="where to write flow.* / hift.* weights (default: --out)")
    parser.add_argument("--config", help="model config JSON (default: the mini size)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps of the learning rate")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    parser.add_argument("--speaker", choices=("ge2e", "none"), default="ge2e", help="flow: speaker embedding")
    parser.add_argument("--max-tokens", type=int, default=250, help="flow: crop utterances to this many tokens")
    parser.add_argument("--segment-frames", type=int, default=32, help="vocoder: mel frames per training segment")
    parser.set_defaults(run=cmd_train)
