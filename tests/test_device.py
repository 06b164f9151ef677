"""One device rule for every command: auto takes a GPU when torch sees one; asking for a missing GPU is an error."""

import pytest
import torch

from stepaudio.device import inference_dtype, pick_device
from stepaudio.errors import OptionError


def test_auto_takes_the_gpu_only_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == pick_device(None) == pick_device("cpu") == torch.device("cpu")
    with pytest.raises(OptionError, match="torch sees no GPU"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_unknown_devices_are_refused():
    with pytest.raises(OptionError, match="device must be auto, cpu or cuda, not 'tpu'"):
        pick_device("tpu")


def test_big_lms_run_in_bfloat16_on_a_gpu_only():
    assert inference_dtype(torch.device("cpu")) == torch.float32
    assert inference_dtype(torch.device("cuda")) == torch.bfloat16
