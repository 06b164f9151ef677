"""The shared training loop's options: bf16 autocast in the forward (float32 weights), stopping partway."""

import json
import math

import pytest
import torch
from torch import nn

from stepaudio.errors import StepAudioError
from stepaudio.train.loop import TrainOptions, autocast_dtype, train


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
    options = TrainOptions(out=tmp_path, steps=200, batch_size=32, lr=0.05, warmup_steps=1, precision=precision)
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
