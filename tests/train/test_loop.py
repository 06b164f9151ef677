"""The shared training loop's options: bf16 autocast in the forward (float32 weights), stopping partway,
the device and data-loading workers."""

import json
import math

import pytest
import torch
from torch import nn

from stepaudio.errors import StepAudioError
from stepaudio.train.loop import TrainOptions, autocast_dtype, to_device, train, training_device


class Regression(nn.Module):
    """Least squares of a linear map; remembers the dtype its layer computed in."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.computed_in: set[torch.dtype] = set()

    def forward(self, batch):
        x, y = batch
        prediction = self.layer(x)
        self.computed_in.add(prediction.dtype)
        loss = ((prediction.float() - y) ** 2).mean()
        return loss, {}


@pytest.mark.parametrize(("precision", "computed_in"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_forward_dtype_and_training_still_learns(tmp_path, precision, computed_in):
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    data = list(zip(x, x @ torch.arange(8.0)[:, None], strict=True))
    objective = Regression()
    before = objective(torch.utils.data.default_collate(data))[0].item()
    options = TrainOptions(
        out=tmp_path, steps=200, batch_size=32, lr=0.05, warmup_steps=1, precision=precision, device="cpu"
    )
    train(objective, data, torch.utils.data.default_collate, options, lambda: None)
    assert objective.computed_in == {computed_in, torch.float32}  # float32 for the check before training
    assert objective.layer.weight.dtype == torch.float32
    assert objective(torch.utils.data.default_collate(data))[0].item() < 0.05 * before


def test_auto_precision_follows_the_cpu_and_bad_names_are_refused():
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert autocast_dtype("auto") == (torch.bfloat16 if native else None)
    with pytest.raises(StepAudioError, match="precision must be"):
        autocast_dtype("fp16")


def test_stop_after_ends_partway_through_the_schedule_and_resume_finishes_it(tmp_path):
    torch.manual_seed(0)
    data = [(torch.randn(8), torch.randn(1)) for _ in range(64)]
    collate, objective = torch.utils.data.default_collate, Regression()
    options = TrainOptions(out=tmp_path, steps=20, batch_size=8, lr=0.1, warmup_steps=1, stop_after=8)
    assert train(objective, data, collate, options, lambda: None) == 8
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 8 / 20)))  # the 20-step schedule's
    resumed = TrainOptions(out=tmp_path, steps=20, batch_size=8, lr=0.1, warmup_steps=1, resume=True)
    assert train(objective, data, collate, resumed, lambda: None) == 20


def test_device_auto_takes_the_gpu_only_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == torch.device("cpu")
    with pytest.raises(StepAudioError, match="no GPU"):
        training_device("cuda")
    with pytest.raises(StepAudioError, match="device must be"):
        training_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process takes the second GPU
    assert training_device("auto") == torch.device("cuda", 1)


def test_batches_move_to_the_device_whole():
    batch = {"ids": torch.ones(2, 3), "spans": [[(0, 1, 2, 3)]], "pair": (torch.zeros(1), "text")}
    moved = to_device(batch, torch.device("meta"))
    assert moved["ids"].is_meta and moved["pair"][0].is_meta and moved["pair"][1] == "text"
    assert moved["spans"] == [[(0, 1, 2, 3)]] and not batch["ids"].is_meta


def test_workers_load_the_same_batches(tmp_path):
    torch.manual_seed(0)
    data = [(torch.randn(8), torch.randn(1)) for _ in range(64)]
    losses = []
    for workers in (0, 2):
        torch.manual_seed(1)
        options = TrainOptions(out=tmp_path / f"w{workers}", steps=10, batch_size=8, lr=0.1, log_every=1,
                               workers=workers, precision="fp32")  # fmt: skip
        train(Regression(), data, torch.utils.data.default_collate, options, lambda: None)
        losses.append([json.loads(line)["loss"] for line in (options.out / "log.jsonl").open()])
    assert losses[0] == pytest.approx(losses[1])


def test_cli_refuses_a_bad_device_or_worker_count(capsys):
    from stepaudio.cli import main

    for option, value in (("--workers", "-1"), ("--workers", "two"), ("--device", "tpu")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "tts", "--manifest", "m.jsonl", "--out", "run", option, value])
        assert exit_info.value.code == 2 and option in capsys.readouterr().err
