"""`stepaudio train RECIPE`: train a component from a corpus manifest.

stepaudio train flow --manifest corpus/manifest.jsonl --out runs/flow --export models/mini-decoder
torchrun --nproc_per_node 2 -m stepaudio.cli train vocoder --manifest ... --out runs/vocoder
stepaudio train kmeans acoustic --manifest corpus/manifest.jsonl --out acoustic_codebook.safetensors
stepaudio train acoustic --manifest corpus/manifest.jsonl --out runs/acoustic --export acoustic_codebook.safetensors
stepaudio train semantic --manifest corpus/manifest.jsonl --out runs/semantic --export semantic_codebook.safetensors
stepaudio train tts --manifest corpus/manifest.jsonl --out runs/tts --export models/mini-tts
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stepaudio.device import DEVICES
from stepaudio.errors import OptionError


def cmd_kmeans(args: argparse.Namespace) -> None:
    from stepaudio.train import codebooks

    codes = args.codes or (4096 if args.stream == "acoustic" else 1024)
    max_hours = args.max_hours or (2.0 if args.stream == "acoustic" else 1.0)
    if args.stream == "acoustic":
        report = codebooks.train_acoustic(
            args.manifest, args.out, codes, max_hours, args.iterations, args.seed, args.utterance_mean
        )
    elif args.utterance_mean:
        raise OptionError("--utterance-mean is an option of the acoustic codebook (log-mel slices) only")
    else:
        report = codebooks.train_semantic(args.manifest, args.out, codes, max_hours, args.iterations, args.seed)
    for split in ("train", "test"):
        stats = report[split]
        print(f"{split}: perplexity {stats['perplexity']:.0f} of {codes} codes, {stats['dead_codes']} dead")
    print(f"{report['train_frames']} training frames; wrote {args.out} (+ .json, .report.json)")


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
        precision=args.precision,
        stop_after=args.stop_after,
        device=args.device,
        workers=args.workers,
        batching=getattr(args, "batching", TrainOptions.batching),  # only train tts has --batching
    )
    export = Path(args.export) if args.export else None
    config_data = json.loads(Path(args.config).read_text()) if args.config else None
    if getattr(args, "init", None) and config_data:
        raise OptionError("--config and --init exclude each other: a fine-tune keeps the initial model's sizes")
    if args.recipe == "semantic":
        from stepaudio.train.semantic_codebook import train_semantic_codebook

        export = export or options.out / "semantic_codebook.safetensors"
        report = train_semantic_codebook(args.manifest, options, export, args.codes, args.dim, args.max_hours)
        step, test = report["step"], report["test"]
        cer = ", ".join(f"{language} {value:.3f}" for language, value in test["cer"].items())
        print(f"test split: CER of the code reader {cer}; perplexity {test['usage']['perplexity']:.0f} of {args.codes}")
    elif args.recipe == "acoustic":
        from stepaudio.decoder.speaker import GE2E
        from stepaudio.models.store import resolve_model
        from stepaudio.train.acoustic_recipe import train_acoustic

        if config_data:
            raise OptionError("train acoustic has no --config: its sizes are the mini tokenizer's")
        export = export or options.out / "acoustic_codebook.safetensors"
        embed = GE2E.from_resemblyzer(resolve_model("mini").require("speaker"))
        step = train_acoustic(args.manifest, options, embed, export)
    elif args.recipe == "tts":
        from stepaudio.train import tts_recipe

        if args.init and args.text_vocab is not None:
            raise OptionError("--text-vocab and --init exclude each other: a fine-tune keeps the initial vocabulary")
        step = tts_recipe.train_tts(
            args.manifest,
            options,
            config_data,
            export,
            args.text_vocab or tts_recipe.TEXT_VOCAB,
            args.max_seconds,
            args.guide_weight,
            args.speech_corruption,
            Path(args.init) if args.init else None,
            word_times=args.guide_pace == "words",
        )
    elif args.recipe == "flow":
        import dataclasses

        from safetensors.torch import load_file

        from stepaudio.decoder.checkpoint import load_model
        from stepaudio.decoder.flow import FlowModel
        from stepaudio.models.store import resolve_model
        from stepaudio.tokenizer.acoustic_fsq import code_vectors

        initial = load_model(FlowModel, FlowConfig, Path(args.init), "flow") if args.init else None
        default = config_from_dict(FlowConfig, config_data) if config_data else decoder_recipes.MINI_FLOW
        config = initial.config if initial else default
        if args.encoder_speaker:
            config = dataclasses.replace(config, encoder_speaker=True)
        if args.encoder_dropout is not None:
            config = decoder_recipes.with_encoder_dropout(config, args.encoder_dropout)
        mini = resolve_model("mini")
        embed = None
        if args.speaker == "ge2e":
            from stepaudio.decoder.speaker import GE2E

            embed = GE2E.from_resemblyzer(mini.require("speaker"))
        codebooks = None
        embedding_init = args.embedding_init or ("none" if initial else "codebooks")
        if embedding_init != "none" and not args.resume:  # a resumed run has its embeddings
            streams = ("semantic_codebook", "acoustic_codebook")
            wanted = streams if embedding_init == "codebooks" else [f"{embedding_init}_codebook"]
            vectors = {"semantic_codebook": lambda f: load_file(f)["centroids"], "acoustic_codebook": code_vectors}
            codebooks = tuple(vectors[s](mini.require(s)) if s in wanted else None for s in streams)
        step = decoder_recipes.train_flow(
            args.manifest,
            options,
            config,
            embed,
            None,
            export,
            args.max_tokens,
            args.prior_weight,
            codebooks,
            initial,
            args.acoustic_corruption,
        )
    else:
        config = config_from_dict(HiFTConfig, config_data) if config_data else decoder_recipes.MINI_HIFT
        step = decoder_recipes.train_vocoder(args.manifest, options, config, export, args.segment_frames)
    print(f"{args.recipe}: trained to step {step}; log {options.out / 'log.jsonl'}, weights in {export or options.out}")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model component from a corpus manifest",
        description="Train a component of the mini model from a corpus manifest (`stepaudio data synth`).",
    )
    recipes = parser.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    _add_gradient_recipe(recipes, "flow", "the speech decoder's flow (tokens -> mel)")
    _add_gradient_recipe(recipes, "vocoder", "the vocoder (mel -> PCM)")
    _add_gradient_recipe(recipes, "tts", "the TTS language model (text + voice prompt -> speech tokens)")
    _add_gradient_recipe(recipes, "acoustic", "the learned acoustic tokenizer (40 ms log-mel slices -> 4096 FSQ codes)")
    _add_gradient_recipe(recipes, "semantic", "the semantic tokenizer's codebook (Whisper frames -> 1024 codes)")
    kmeans = recipes.add_parser(
        "kmeans",
        help="a tokenizer codebook by k-means",
        description="Fit a tokenizer codebook by k-means on features of the corpus's training split, and report its "
        "usage (perplexity, dead codes) on the training and test splits.",
    )
    kmeans.add_argument("stream", choices=("acoustic", "semantic"), help="which tokenizer stream")
    kmeans.add_argument("--manifest", required=True, type=Path, help="corpus manifest (JSONL)")
    kmeans.add_argument("--out", required=True, type=Path, help="codebook .safetensors (config .json beside it)")
    kmeans.add_argument("--codes", type=int, help="codebook size (default: 4096 acoustic, 1024 semantic)")
    kmeans.add_argument("--max-hours", type=float, help="training audio to use (default: 2 acoustic, 1 semantic)")
    kmeans.add_argument("--iterations", type=int, default=30, help="at most this many k-means iterations")
    kmeans.add_argument("--seed", type=int, default=0)
    kmeans.add_argument(
        "--utterance-mean",
        action="store_true",
        help="acoustic: take each utterance's mean log-mel away before slicing, so the codes keep what is said "
        "and leave the speaker's average spectrum to the decoder's voice prompt (default: kept in the codes)",
    )
    kmeans.set_defaults(run=cmd_kmeans)


def _add_gradient_recipe(recipes: argparse._SubParsersAction, recipe: str, what: str) -> None:
    parser = recipes.add_parser(
        recipe,
        help=f"train {what}",
        description=f"Train {what} from a JSONL manifest (audio, text, voice, split[, tokens]). Runs on one "
        "process, or on several under torchrun (gloo on CPU, NCCL on GPUs), on a GPU when torch sees one. Writes "
        "OUT/checkpoint.pt (for --resume), OUT/log.jsonl "
        "(losses) and the weights as safetensors + JSON (tts: also its text vocabulary, tokenizer.model).",
    )
    parser.add_argument("--manifest", required=True, type=Path, help="corpus manifest (JSONL)")
    parser.add_argument("--out", required=True, help="run directory: checkpoint, log, feature cache")
    parser.add_argument(
        "--export",
        help="where to write the weights (default: --out): a directory (flow, vocoder, tts) or a .safetensors file "
        "(acoustic, semantic)",
    )
    parser.add_argument(
        "--config", help="model config JSON (default: the mini size; for tts: LM sizes, e.g. hidden_size)"
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps of the learning rate")
    parser.add_argument(
        "--stop-after", type=int, help="end after this step, partway through the --steps schedule (default: all)"
    )
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="bf16: forward passes under bfloat16 autocast (float32 weights); auto (default): bf16 where the device "
        "computes it natively (a GPU with bf16, a CPU with AMX or AVX512-BF16), else fp32",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to train: auto (default) takes the GPU when torch sees one (under torchrun, each rank its own)",
    )
    parser.add_argument(
        "--workers", type=_count, default=0, help="data-loading processes beside the training one (default 0: none)"
    )
    if recipe == "flow":
        parser.add_argument("--speaker", choices=("ge2e", "none"), default="ge2e", help="speaker embedding")
        parser.add_argument("--max-tokens", type=int, default=250, help="crop utterances to this many tokens")
        parser.add_argument("--prior-weight", type=float, default=1.0, help="weight of the prior loss (mu -> mel)")
        parser.add_argument(
            "--embedding-init",
            choices=("codebooks", "semantic", "acoustic", "none"),
            help="token embedding rows to start from the mini tokenizer's centroids (the tokens must come from it): "
            "codebooks (all; the default of a fresh run), semantic or acoustic (only those: with --init, after a new "
            "codebook of that stream; acoustic also remakes the mean mel per code) or none (the rows the flow starts "
            "with: random ones, or with --init its trained ones, the default there)",
        )
        parser.add_argument(
            "--init",
            help="start from the flow in this directory (flow.json + flow.safetensors; its config: --config is "
            "refused): fine-tuning",
        )
        parser.add_argument(
            "--encoder-dropout",
            type=_rate,
            help="dropout of the flow's Conformer encoder, all its rates (default: the config's, 0.1 for mini; "
            "with --init, that flow's)",
        )
        parser.add_argument(
            "--encoder-speaker",
            action="store_true",
            help="tell the flow's encoder the speaker (for the learned acoustic tokens, which leave the voice out; "
            "with --init, the new projection starts at zero)",
        )
        parser.add_argument(
            "--acoustic-corruption",
            type=_rate,
            default=0.0,
            help="train on acoustic tokens of which a random share, up to this rate per example, are replaced by "
            "random codes, so that the flow reads the words from the semantic tokens too (default 0: none)",
        )
    elif recipe == "tts":
        parser.add_argument("--text-vocab", type=int, help="text pieces of the trained vocabulary (default 4096)")
        parser.add_argument("--max-seconds", type=float, default=10.0, help="skip longer utterances")
        parser.add_argument(
            "--batching",
            choices=("length", "random"),
            default="length",
            help="length (default): batches of utterances of similar lengths, which pad little and train faster; "
            "random: batches drawn at random (the packaged weights were trained so)",
        )
        parser.add_argument(
            "--guide-weight", type=float, default=1.0, help="weight of the attention guide's loss (0: no guide)"
        )
        parser.add_argument(
            "--guide-pace",
            choices=("words", "even"),
            default="words",
            help="words (default): the guide follows the words' times where `stepaudio data align` recorded them, an "
            "even pace elsewhere; even: an even pace everywhere (the packaged weights were trained so)",
        )
        parser.add_argument(
            "--speech-corruption",
            type=_rate,
            default=0.0,
            help="train on input speech tokens of which a random share, up to this rate per example, are replaced by "
            "random ones (the targets stay), so that the LM reads its text rather than continuing the speech "
            "(default 0: none)",
        )
        parser.add_argument(
            "--init",
            help="start from the TTS LM exported in this directory (lm.*, tokenizer.model, tts.json; its sizes and "
            "text vocabulary): fine-tuning",
        )
    elif recipe == "semantic":
        parser.add_argument("--codes", type=int, default=1024, help="codebook size")
        parser.add_argument("--dim", type=int, default=32, help="dimension of the codes (cosine)")
        parser.add_argument("--max-hours", type=float, default=3.0, help="training audio to use")
    elif recipe == "vocoder":
        parser.add_argument("--segment-frames", type=int, default=32, help="mel frames per training segment")
    parser.set_defaults(run=cmd_train)


def _checked(convert, valid, expected: str):
    """An argparse type: text -> convert(text), refused with `expected` where it fails or is not valid."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_count = _checked(int, lambda n: n >= 0, "a whole number >= 0")  # processes
_rate = _checked(float, lambda p: 0 <= p < 1, "a rate in [0, 1)")  # dropout
