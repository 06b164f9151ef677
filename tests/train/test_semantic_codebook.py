"""The supervised semantic codebook: what the recogniser spells, that codes learn to carry characters,
that unused codes restart, the tokenizer file, and the recipe end to end on a tiny corpus."""

import json

import jiwer
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import speechlike
from stepaudio.asr.transcribe import Transcriber
from stepaudio.audio import save_audio
from stepaudio.cli import main
from stepaudio.errors import CheckpointError
from stepaudio.tokenizer.semantic_mini import SemanticMiniTokenizer
from stepaudio.train.semantic_codebook import POOL, CodebookObjective, collate_frames, greedy_ctc, transcript_units


def test_transcript_units_spell_numbers_and_drop_punctuation():
    assert transcript_units("It's 5 o'clock, Mr. Smith!", "en") == "it's five o'clock mr smith"
    assert transcript_units("我有3个苹果。", "zh") == "我有三个苹果"


def char_frames(text: str, table: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One noisy pooled frame per character, as if each code's 60 ms held one character."""
    ids = torch.tensor([" abc".index(c) for c in text])
    return table[ids] + 0.1 * torch.randn(len(ids), table.shape[1], generator=generator)


def random_text(generator: torch.Generator, length: int = 12) -> str:
    return "".join(" abc"[int(i)] for i in torch.randint(0, 4, (length,), generator=generator))


def test_codes_learn_to_carry_the_characters():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    table = torch.randn(4, 16, generator=g)
    objective = CodebookObjective(width=16, dim=8, codes=32, vocab=4)
    optimizer = torch.optim.Adam(objective.parameters(), lr=3e-3)
    for _ in range(300):
        texts = [random_text(g) for _ in range(8)]
        items = [(char_frames(t, table, g), [" abc".index(c) + 1 for c in t]) for t in texts]
        loss, parts = objective(collate_frames(items))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    objective.eval()
    references = [random_text(g) for _ in range(20)]
    hypotheses = []
    with torch.no_grad():
        for text in references:
            _, q, _ = objective.quantize(char_frames(text, table, g))
            hypotheses.append(greedy_ctc(objective.reader(q[None])[0], " abc"))
    assert jiwer.cer([r.strip() for r in references], hypotheses) < 0.1


def test_unused_codes_restart_at_frames_of_the_batch():
    objective = CodebookObjective(width=4, dim=4, codes=8, vocab=2, restart_every=2)
    with torch.no_grad():
        objective.projection.weight.copy_(torch.eye(4))
        objective.projection.bias.zero_()
        objective.centroids.copy_(F.normalize(torch.tensor([[1.0, 0, 0, 0]] + [[-1.0, 0, 0, 0]] * 7), dim=1))
    frames = F.normalize(torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0, 0.2, 0], [1.0, 0, 0, 0.3]]), dim=1)
    batch = collate_frames([(frames, [1])])
    objective(batch)
    objective(batch)
    assert objective.quantize(frames)[2].unique().tolist() == [0]  # restarts come before the next step
    objective(batch)
    assert len(objective.quantize(frames)[2].unique()) > 1  # the dead codes moved onto the frames


def test_tokenizer_files_of_both_kinds_and_refusals(tmp_path):
    transcriber = Transcriber.load("mini")
    g = torch.Generator().manual_seed(0)
    projection = (torch.randn(32, 384, generator=g), torch.randn(32, generator=g))
    centroids = F.normalize(torch.randn(1024, 32, generator=g), dim=1)
    tokenizer = SemanticMiniTokenizer(transcriber, centroids, projection)
    tokenizer.save(tmp_path / "codebook.safetensors")
    loaded = SemanticMiniTokenizer.load(tmp_path / "codebook.safetensors", transcriber)
    pooled = torch.randn(50, 384, generator=g)
    assert torch.equal(loaded.project(pooled), tokenizer.project(pooled))
    cosine = tokenizer.project(pooled) @ centroids.T
    assert torch.equal(torch.as_tensor(loaded.quantize(encoded(pooled))), cosine.argmax(1))
    assert json.loads((tmp_path / "codebook.json").read_text())["metric"] == "cosine"
    kmeans = torch.randn(1024, 384, generator=g)  # the packaged kind: Euclidean in the encoder's space
    SemanticMiniTokenizer(transcriber, kmeans).save(tmp_path / "kmeans.safetensors")
    plain = SemanticMiniTokenizer.load(tmp_path / "kmeans.safetensors", transcriber)
    expected = torch.cdist(pooled, kmeans).argmin(1)
    assert plain.projection is None and torch.equal(torch.as_tensor(plain.quantize(encoded(pooled))), expected)
    with pytest.raises(CheckpointError, match="do not fit"):
        SemanticMiniTokenizer(transcriber, centroids, (torch.randn(32, 100), torch.zeros(32)))
    with pytest.raises(CheckpointError, match="do not fit"):
        SemanticMiniTokenizer(transcriber, centroids)  # 32-d centroids need their projection


def encoded(pooled: torch.Tensor):
    """An EncoderOutput stand-in: quantize reads only `pooled`."""
    return type("Encoded", (), {"pooled": pooled})()


def test_recipe_trains_exports_and_reports(tmp_path, capsys):
    lines = []
    for i, (text, language) in enumerate([("hello there", "en"), ("good morning", "en"), ("你好", "zh"), ("hi", "en")]):
        save_audio(tmp_path / f"u{i}.wav", speechlike(1.2, 16_000, seed=i), 16_000)
        split = "test" if i == 3 else "train"
        lines.append({"audio": f"u{i}.wav", "text": text, "language": language, "voice": "v", "speed": 1.0,
                      "pitch": 1.0, "duration": 1.2, "split": split, "source": "test"})  # fmt: skip
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    export = tmp_path / "semantic.safetensors"
    args = ["train", "semantic", "--manifest", str(tmp_path / "manifest.jsonl"), "--out", str(tmp_path / "run"),
            "--export", str(export), "--steps", "3", "--batch-size", "2", "--codes", "16", "--dim", "8"]  # fmt: skip
    assert main(args) == 0
    assert "CER of the code reader en" in capsys.readouterr().out
    tokenizer = SemanticMiniTokenizer.load(export, Transcriber.load("mini"))
    codes = tokenizer.encode(speechlike(1.2, 16_000, seed=9))
    assert len(codes) == 1.2 * 50 // POOL and codes.max() < 16 and codes.dtype == np.int64
    report = json.loads(export.with_suffix(".report.json").read_text())
    assert report["step"] == 3 and set(report["test"]["cer"]) == {"en"}
    assert set(report["vocabulary"]) == set("helo thrgdmning你好")
    assert (tmp_path / "run" / "frames.pt").is_file()  # encoder frames, for a rerun or --resume
