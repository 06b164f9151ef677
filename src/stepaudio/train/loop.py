"""One training loop for every recipe: on the CPU or a GPU, single process or torchrun (gloo on CPU,
NCCL on GPUs), checkpoints, resume, a progress bar and a JSONL loss log.

A recipe hands over an `objective` module whose forward(batch) returns (loss, {name: value}), the
dataset with its collate function, and an `export` callback that writes the deployable weights.
Under torchrun (WORLD_SIZE > 1) the objective is wrapped in DistributedDataParallel, every rank reads
its own shard of the data and rank 0 alone logs, checkpoints and exports. Batches are built on the CPU
(by `workers` processes if asked) and moved to the device whole; a dataset with `lengths` (one per
example) gets batches of similar lengths (`stepaudio.train.length_groups`) unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from stepaudio.device import pick_device
from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.train.length_groups import LengthGroupedBatches

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainOptions:
    out: Path
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    log_every: int = 10
    save_every: int = 200
    seed: int = 0
    resume: bool = False
    # "bf16": forward passes under bfloat16 autocast (weights, gradients and optimiser stay float32);
    # "auto": bf16 where the CPU multiplies bfloat16 natively (AMX or AVX512-BF16: a mini TTS LM step runs
    # ~1.9x faster on one such core), float32 elsewhere
    precision: str = "auto"
    # End after this step, partway through the `steps` schedule (its learning rate not yet decayed to 0):
    # reproduces weights taken from the middle of a longer run. None: run the whole schedule.
    stop_after: int | None = None
    # "cpu", "cuda" or "auto" (cuda when torch sees a GPU); under torchrun each rank takes its local GPU
    device: str = "auto"
    # data-loading processes beside the training one (0: load in it); a GPU run needs them to stay busy
    workers: int = 0
    # "length": a dataset with `lengths` gets batches of similar lengths (stepaudio.train.length_groups);
    # "random": batches drawn at random, as before them
    batching: str = "length"


def training_device(device: str) -> torch.device:
    """The device of a TrainOptions.device; under torchrun on GPUs, this rank's own GPU."""
    picked = pick_device(device)
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if picked.type == "cuda" else picked


def to_device(batch, device: torch.device):
    """The batch with every tensor in it (also inside dicts, lists and tuples) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def autocast_dtype(precision: str, device: torch.device | None = None) -> torch.dtype | None:
    """The dtype of the training forward's autocast for a TrainOptions.precision on `device` (default the
    CPU); None: plain float32."""
    if precision == "auto":
        native = (
            torch.cuda.is_bf16_supported()
            if device is not None and device.type == "cuda"
            else torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        )
        precision = "bf16" if native else "fp32"
    if precision not in ("bf16", "fp32"):
        raise StepAudioError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None


class _Distributed:
    """Rank and world size; initialises gloo (CPU) or NCCL (GPUs) when launched by torchrun."""

    def __init__(self, device: torch.device):
        self.world, self.device = int(os.environ.get("WORLD_SIZE", "1")), device
        if self.world > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.world > 1 else 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world).tolist(), strict=True))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()


def _save_checkpoint(path: Path, objective: nn.Module, optimizer, scheduler, step: int, options: TrainOptions) -> None:
    state = {
        "model": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "options": json.dumps(asdict(options), default=str),
    }
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)


def train(
    objective: nn.Module,
    dataset: torch.utils.data.Dataset,
    collate: Callable,
    options: TrainOptions,
    export: Callable[[], None],
) -> int:
    """Run until options.steps optimiser steps are done; returns the step reached."""
    device = training_device(options.device)
    autocast = autocast_dtype(options.precision, device)
    world = _Distributed(device)
    out = Path(options.out)
    checkpoint = out / CHECKPOINT
    try:
        if checkpoint.exists() and not options.resume:  # every rank sees it, so none waits for the others
            raise StepAudioError(f"{checkpoint} exists: pass --resume to continue it, or choose another --out")
        if world.main:
            out.mkdir(parents=True, exist_ok=True)
        world.barrier()
        torch.manual_seed(options.seed + world.rank)
        objective.to(device)
        optimizer = torch.optim.AdamW(objective.parameters(), lr=options.lr)
        warmup = max(1, options.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to 0
            optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / options.steps))),
        )
        step = 0
        if options.resume and checkpoint.exists():
            try:
                state = torch.load(checkpoint, map_location=device, weights_only=True)
                objective.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                step = int(state["step"])
            except (KeyError, RuntimeError) as error:
                raise CheckpointError(f"cannot resume from {checkpoint}: {error}") from error
        model = (
            nn.parallel.DistributedDataParallel(objective, device_ids=[device] if device.type == "cuda" else None)
            if world.world > 1
            else objective
        )
        generator = torch.Generator()
        lengths = getattr(dataset, "lengths", None) if options.batching == "length" else None
        if lengths is not None:
            order = LengthGroupedBatches(lengths, options.batch_size, generator, world.rank, world.world)
            loading = {"batch_sampler": order}
        else:
            order = (
                torch.utils.data.DistributedSampler(dataset, seed=options.seed)
                if world.world > 1
                else torch.utils.data.RandomSampler(dataset, generator=generator)
            )
            loading = {"batch_size": options.batch_size, "sampler": order}
        loader = torch.utils.data.DataLoader(
            dataset,
            **loading,
            collate_fn=collate,
            num_workers=options.workers,
            persistent_workers=options.workers > 0,
            pin_memory=device.type == "cuda",
        )
        # Each epoch's order depends on (seed, epoch) only, so a resumed run goes on with the same orders.
        epoch, started = step // max(1, len(loader)), time.monotonic()
        end = options.steps if options.stop_after is None else min(options.steps, options.stop_after)
        model.train()
        with contextlib.ExitStack() as closing:
            progress = closing.enter_context(
                tqdm(total=options.steps, initial=step, disable=not world.main, unit="step", dynamic_ncols=True)
            )
            log = closing.enter_context((out / LOG).open("a")) if world.main else None
            while step < end:
                if isinstance(order, torch.utils.data.DistributedSampler):
                    order.set_epoch(epoch)
                else:
                    generator.manual_seed(options.seed * 100_003 + epoch)
                for batch in loader:
                    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                        loss, parts = model(to_device(batch, device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = nn.utils.clip_grad_norm_(objective.parameters(), options.grad_clip)  # read when logged
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    if step % options.log_every == 0 or step == end:
                        values = world.mean({"loss": loss.item(), **{k: float(v) for k, v in parts.items()}})
                        if world.main:
                            record = {"step": step, **values, "grad_norm": float(grad_norm)}
                            record["lr"] = scheduler.get_last_lr()[0]
                            record["seconds"] = round(time.monotonic() - started, 2)
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                            progress.set_postfix(loss=f"{values['loss']:.4f}")
                    if world.main:
                        progress.update(1)
                    if world.main and (step % options.save_every == 0 or step == end):
                        _save_checkpoint(checkpoint, objective, optimizer, scheduler, step, options)
                        export()
                    if step >= end:
                        break
                epoch += 1
        world.barrier()
        return step
    finally:
        world.close()
