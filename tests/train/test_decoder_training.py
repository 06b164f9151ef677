"""The decoder recipes on a tiny corpus: manifest loading, steps, logs, checkpoints, resume, torchrun."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import speechlike, tone
from stepaudio.audio import save_audio
from stepaudio.cli import main
from stepaudio.decoder.checkpoint import load_model
from stepaudio.decoder.conformer import EncoderConfig
from stepaudio.decoder.estimator import EstimatorConfig
from stepaudio.decoder.flow import FlowConfig, FlowModel
from stepaudio.decoder.hift import HiFT, HiFTConfig
from stepaudio.errors import CheckpointError, DataError, StepAudioError
from stepaudio.train.data.manifest import read_split
from stepaudio.train.decoder_data import DecoderDataset, estimate_f0

FLOW = FlowConfig(
    input_size=16,
    spk_embed_dim=8,
    sampling_ratios=(1,),
    encoder=EncoderConfig(16, 16, 2, 32, 1),
    estimator=EstimatorConfig(channels=(16,), attention_head_dim=8, n_blocks=1, num_mid_blocks=1, num_heads=2),
)
HIFT = HiFTConfig(
    base_channels=8,
    resblock_kernel_sizes=(3,),
    resblock_dilation_sizes=((1,),),
    source_resblock_dilation_sizes=((1,), (1,)),
    f0_cond_channels=8,
)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Four short utterances (three for training) with random token files, and the model configs."""
    rng = np.random.default_rng(0)
    lines = []
    for i, seconds in enumerate((1.0, 1.3, 0.8, 1.1)):
        save_audio(tmp_path / f"u{i}.wav", speechlike(seconds, 22_050, seed=i), 22_050)
        np.save(tmp_path / f"u{i}.npy", rng.integers(0, 5120, 5 * int(seconds / 0.12)))
        split = "test" if i == 3 else "train"
        lines.append({"audio": f"u{i}.wav", "text": "hi", "language": "en", "voice": "v", "speed": 1.0, "pitch": 1.0,
                      "duration": seconds, "split": split, "source": "test", "tokens": f"u{i}.npy"})  # fmt: skip
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "flow.json").write_text(json.dumps(dataclasses.asdict(FLOW)))
    (tmp_path / "hift.json").write_text(json.dumps(dataclasses.asdict(HIFT)))
    return tmp_path


def train_args(corpus: Path, recipe: str, out: Path, steps: int, *extra: str) -> list[str]:
    """The command line of a tiny run; a fine-tune (--init) takes its sizes from the initial model, not --config."""
    config = [] if "--init" in extra else ["--config", str(corpus / f"{'flow' if recipe == 'flow' else 'hift'}.json")]
    return ["train", recipe, "--manifest", str(corpus / "manifest.jsonl"), "--out", str(out), "--steps", str(steps),
            "--batch-size", "2", "--log-every", "1", "--save-every", "100", "--warmup", "1",
            *config, *extra]  # fmt: skip


def log_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_manifest_splits_and_token_files(corpus):
    assert [u.audio for u in read_split(corpus / "manifest.jsonl", "train")] == ["u0.wav", "u1.wav", "u2.wav"]
    assert read_split(corpus / "manifest.jsonl", "test")[0].tokens == "u3.npy"
    with pytest.raises(DataError, match="no utterances in split 'dev'"):
        read_split(corpus / "manifest.jsonl", "dev")


def test_feature_cache_follows_token_files_made_again(corpus):
    dataset = DecoderDataset(corpus / "manifest.jsonl", "train", corpus / "cache")
    assert torch.equal(dataset[0]["tokens"], torch.from_numpy(np.load(corpus / "u0.npy")).long())
    retokenized = np.arange(40) % 5120  # as after a new codebook: same file name, new codes
    np.save(corpus / "u0.npy", retokenized)
    os.utime(corpus / "u0.npy", ns=(time.time_ns() + 10**9,) * 2)
    assert torch.equal(dataset[0]["tokens"], torch.from_numpy(retokenized).long())


def test_f0_of_a_tone_and_of_silence():
    samples = np.concatenate([tone(0.5, 22_050, 220.0), np.zeros(11_025, dtype=np.float32)])
    f0 = estimate_f0(samples)
    assert len(f0) == len(samples) // 256
    assert np.allclose(f0[5:35], 220.0, rtol=0.02) and (f0[-15:] == 0).all()


def test_flow_trains_checkpoints_resumes_and_exports(corpus, capsys):
    out = corpus / "run"
    assert main(train_args(corpus, "flow", out, 3, "--speaker", "none")) == 0
    assert log_steps(out) == [1, 2, 3]
    assert all(np.isfinite(json.loads(line)["loss"]) for line in (out / "log.jsonl").read_text().splitlines())
    flow = load_model(FlowModel, FlowConfig, out, "flow")
    assert flow.config == FLOW
    assert main(train_args(corpus, "flow", out, 3, "--speaker", "none")) == 1  # exists, no --resume
    assert "--resume" in capsys.readouterr().err
    assert main(train_args(corpus, "flow", out, 5, "--speaker", "none", "--resume")) == 0
    assert log_steps(out) == [1, 2, 3, 4, 5]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 5
    resumed = load_model(FlowModel, FlowConfig, out, "flow")
    assert not torch.equal(resumed.input_embedding.weight, flow.input_embedding.weight)


@pytest.mark.parametrize("stream", ["semantic", "acoustic"])
def test_flow_fine_tunes_from_a_trained_one_with_new_embeddings_of_one_stream(corpus, stream):
    first, second = corpus / "first", corpus / "second"
    assert main(train_args(corpus, "flow", first, 2, "--speaker", "none", "--embedding-init", "none")) == 0
    args = train_args(corpus, "flow", second, 1, "--speaker", "none", "--lr", "0", "--init", str(first))
    assert main([*args, "--embedding-init", stream]) == 0  # lr 0: only the re-initialised rows change
    before, after = (load_model(FlowModel, FlowConfig, run, "flow").state_dict() for run in (first, second))
    rows = "input_embedding.weight"
    new, kept = (slice(0, 1024), slice(1024, None))[:: 1 if stream == "semantic" else -1]
    assert not torch.equal(before[rows][new], after[rows][new])
    assert torch.equal(before[rows][kept], after[rows][kept])
    assert all(torch.equal(before[k], after[k]) for k in before if k != rows)
    kept = corpus / "kept"  # --init alone is a plain fine-tune: every trained row is kept
    assert main(train_args(corpus, "flow", kept, 1, "--speaker", "none", "--lr", "0", "--init", str(first))) == 0
    fine_tuned = load_model(FlowModel, FlowConfig, kept, "flow").state_dict()
    assert all(torch.equal(before[k], fine_tuned[k]) for k in before)


def test_flow_fine_tune_with_its_encoder_dropout_changed(corpus, capsys):
    first, second = corpus / "first", corpus / "second"
    assert main(train_args(corpus, "flow", first, 1, "--speaker", "none", "--embedding-init", "none")) == 0
    args = train_args(corpus, "flow", second, 1, "--speaker", "none", "--lr", "0", "--init", str(first))
    assert main([*args, "--config", str(corpus / "flow.json")]) == 1  # a fine-tune keeps the initial flow's sizes
    assert "--config and --init exclude each other" in capsys.readouterr().err
    assert main([*args, "--encoder-dropout", "0"]) == 0
    before, after = (load_model(FlowModel, FlowConfig, run, "flow") for run in (first, second))
    assert before.config.encoder.dropout_rate == 0.1 and after.config.encoder == dataclasses.replace(
        before.config.encoder, dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0
    )
    assert all(torch.equal(before.state_dict()[k], v) for k, v in after.state_dict().items())  # lr 0
    for option, value, expected in (("--encoder-dropout", "1.5", "a rate in [0, 1)"), ("--workers", "-1", "a whole")):
        with pytest.raises(SystemExit):
            main([*args, option, value])
        assert f"expected {expected}" in capsys.readouterr().err


def test_a_fine_tune_trains_a_flow_of_the_given_config_with_the_initial_weights(corpus, monkeypatch):
    from stepaudio.train import decoder_recipes
    from stepaudio.train.loop import TrainOptions

    trained = []
    monkeypatch.setattr(decoder_recipes, "train", lambda objective, *args: trained.append(objective.flow) or 0)
    initial, config = FlowModel(FLOW), decoder_recipes.with_encoder_dropout(FLOW, 0.0)
    options = TrainOptions(out=corpus / "run", steps=1, batch_size=2)
    decoder_recipes.train_flow(corpus / "manifest.jsonl", options, config, initial=initial)
    flow = trained[0]
    dropouts = [m.p for m in flow.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    dropouts += [m.dropout_p for m in flow.encoder.modules() if hasattr(m, "dropout_p")]
    assert len(dropouts) > 2 and set(dropouts) == {0.0}
    assert all(torch.equal(initial.state_dict()[k], v) for k, v in flow.state_dict().items())


def test_flow_fine_tuned_to_hear_the_speaker_in_its_encoder_starts_as_it_was(corpus):
    first, second = corpus / "first", corpus / "second"
    assert main(train_args(corpus, "flow", first, 1, "--speaker", "none", "--embedding-init", "none")) == 0
    args = train_args(corpus, "flow", second, 1, "--speaker", "none", "--lr", "0", "--init", str(first))
    assert main([*args, "--encoder-speaker"]) == 0
    before, after = (load_model(FlowModel, FlowConfig, run, "flow") for run in (first, second))
    assert not before.config.encoder_speaker and after.config.encoder_speaker
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items())
    assert not after.encoder_speaker.weight.any()  # the new projection starts at zero: the same flow


def test_acoustic_tokenizer_trains_and_exports(corpus):
    from stepaudio.tokenizer.acoustic_fsq import AcousticFSQTokenizer, load_acoustic_mini

    out = corpus / "acoustic"
    command = ["train", "acoustic", "--manifest", str(corpus / "manifest.jsonl"), "--out", str(out), "--steps", "2",
               "--batch-size", "2", "--log-every", "1", "--warmup", "1"]  # fmt: skip
    assert main(command) == 0
    assert log_steps(out) == [1, 2]
    tokenizer = load_acoustic_mini(out / "acoustic_codebook.safetensors")
    assert isinstance(tokenizer, AcousticFSQTokenizer)
    assert len(tokenizer.encode(speechlike(1.0, 16000))) == 25
    assert main([*command, "--config", str(corpus / "flow.json")]) == 1


def test_the_acoustic_autoencoder_learns_to_give_a_batch_back():
    from stepaudio.tokenizer.acoustic_fsq import AcousticFSQConfig, FSQEncoder
    from stepaudio.train.acoustic_recipe import AcousticObjective, SpeakerMelDecoder, collate_slices, slot_frames

    torch.manual_seed(0)
    config = AcousticFSQConfig(channels=32, blocks=2)
    objective = AcousticObjective(FSQEncoder(config), SpeakerMelDecoder(config, 8, channels=32, blocks=2))
    mixing = torch.randn(2, config.dim)
    slices = [torch.randn(n, 2) @ mixing for n in (25, 18)]  # two numbers per slot: what 4 FSQ levels can carry
    mels = [x[:, :80].repeat_interleave(4, 0).T[:, : slot_frames(len(x))] for x in slices]  # the slots' own numbers
    examples = [{"slices": x, "mel": m, "embedding": torch.randn(8)} for x, m in zip(slices, mels, strict=True)]
    batch = collate_slices(examples)
    optimizer = torch.optim.Adam(objective.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, parts = objective(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"l1", "l2"} and losses[-1] < 0.3 * losses[0], losses[::10]


def test_vocoder_trains_and_exports(corpus):
    out = corpus / "voc"
    assert main(train_args(corpus, "vocoder", out, 2, "--segment-frames", "16", "--export", str(corpus / "mini"))) == 0
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and {"stft", "mel", "f0"} <= set(record)
    assert load_model(HiFT, HiFTConfig, corpus / "mini", "hift").config == HIFT


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_flow_and_vocoder_train_on_the_gpu(corpus):
    flow, vocoder = corpus / "flow-gpu", corpus / "voc-gpu"
    assert main(train_args(corpus, "flow", flow, 2, "--speaker", "none", "--device", "cuda", "--workers", "1")) == 0
    assert main(train_args(corpus, "vocoder", vocoder, 2, "--device", "cuda", "--segment-frames", "16")) == 0
    assert all(np.isfinite(json.loads(line)["loss"]) for out in (flow, vocoder) for line in (out / "log.jsonl").open())
    assert load_model(FlowModel, FlowConfig, flow, "flow").input_embedding.weight.device.type == "cpu"
    assert load_model(HiFT, HiFTConfig, vocoder, "hift").config == HIFT


def test_torchrun_two_processes(corpus):
    out = corpus / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    flow = train_args(corpus, "flow", out, 2, "--speaker", "none", "--device", "cpu")  # gloo, also beside a GPU
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "stepaudio.cli", *flow]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert log_steps(out) == [1, 2]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert (out / "flow.safetensors").is_file()


def test_training_refuses_an_existing_run_without_resume(corpus):
    from stepaudio.train.decoder_recipes import train_flow
    from stepaudio.train.loop import TrainOptions

    (corpus / "r").mkdir()
    (corpus / "r" / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(StepAudioError, match="--resume"):
        train_flow(corpus / "manifest.jsonl", TrainOptions(out=corpus / "r", steps=1), FLOW)


def test_mean_code_mel_recovers_a_mel_made_of_per_code_slices():
    from stepaudio.decoder.flow import place, time_aligned
    from stepaudio.train.decoder_recipes import mean_code_mel

    torch.manual_seed(0)
    table = torch.randn(4096, 4 * 80)
    examples = []
    for n_groups in (10, 7):
        semantic, acoustic = torch.randint(0, 1024, (n_groups, 2)), torch.randint(1024, 5120, (n_groups, 3))
        tokens = torch.cat([semantic, acoustic], 1).reshape(-1)  # [s0 s1 a0 a1 a2] per group
        acoustic = time_aligned(tokens)[:, 0] - 1024
        frames = FLOW.mel_frames(len(tokens))
        mel = place(table[acoustic][None], frames, 4)[0]
        examples.append({"tokens": tokens, "mel": torch.cat([mel, torch.randn(80, 9)], 1)})  # + audio past the tokens
    means = mean_code_mel(examples, 4)
    for example in examples:
        tokens = example["tokens"]
        acoustic = time_aligned(tokens)[:, 0] - 1024
        frames = FLOW.mel_frames(len(tokens))
        assert torch.allclose(place(means[acoustic][None], frames, 4)[0], example["mel"][:, :frames])


def test_codebook_embedding_starts_neighbouring_codes_near():
    from stepaudio.train.decoder_recipes import codebook_embedding

    torch.manual_seed(0)
    base = torch.randn(32, 12) * 5
    centroids = torch.cat([base, base + 0.01 * torch.randn(32, 12)])  # code i and i + 32 are neighbours
    for dim in (8, 16):  # fewer components than features, and more (padded)
        rows = codebook_embedding(centroids, dim)
        assert rows.shape == (64, dim)
        assert rows.norm(dim=1).mean() == pytest.approx(dim**0.5, rel=1e-4)
        distances = torch.cdist(rows, rows).fill_diagonal_(float("inf"))
        assert torch.equal(distances.argmin(dim=1), torch.arange(64).roll(32))


def test_fresh_flow_run_takes_its_token_embeddings_from_the_codebooks(corpus):
    from stepaudio.train.decoder_recipes import codebook_embedding, train_flow
    from stepaudio.train.loop import TrainOptions

    semantic, acoustic = torch.randn(1024, 6), torch.randn(4096, 5)
    options = TrainOptions(out=corpus / "r", steps=1, batch_size=2, lr=1e-9)
    train_flow(corpus / "manifest.jsonl", options, FLOW, codebooks=(semantic, acoustic))
    start = torch.cat([codebook_embedding(c, FLOW.input_size) for c in (semantic, acoustic)])
    trained = load_model(FlowModel, FlowConfig, corpus / "r", "flow").input_embedding.weight
    assert torch.allclose(trained, start, atol=1e-2)  # float16 export
    for wrong in ((semantic, acoustic[1:]), (semantic[:1000], torch.randn(4120, 5))):  # the split matters too
        with pytest.raises(CheckpointError, match=rf"codebooks of \[{len(wrong[0])}, {len(wrong[1])}\] codes"):
            train_flow(corpus / "manifest.jsonl", options, FLOW, codebooks=wrong)


def test_kmeans_acoustic_codebook_with_the_utterance_mean_taken_away(corpus, capsys):
    from stepaudio.tokenizer.acoustic_mini import AcousticMiniTokenizer

    out = corpus / "acoustic.safetensors"
    command = ["train", "kmeans", "acoustic", "--manifest", str(corpus / "manifest.jsonl"), "--out", str(out),
               "--codes", "8", "--iterations", "3", "--utterance-mean"]  # fmt: skip
    assert main(command) == 0
    tokenizer = AcousticMiniTokenizer.load(out)
    assert tokenizer.config.utterance_mean and len(tokenizer.centroids) == 8
    assert json.loads(out.with_suffix(".report.json").read_text())["command"]["utterance_mean"] is True
    assert main(["train", "kmeans", "semantic", *command[3:]]) == 1
    assert "--utterance-mean is an option of the acoustic codebook" in capsys.readouterr().err


def test_new_acoustic_centroids_remake_the_mean_mel_per_code_of_a_fine_tuned_flow(corpus):
    from stepaudio.train.decoder_recipes import train_flow
    from stepaudio.train.loop import TrainOptions

    slotted = dataclasses.replace(FLOW, sampling_ratios=(), token_layout="time_aligned", slot_frames=4)
    for codebooks, remade in ((None, False), ((None, torch.randn(4096, 5)), True)):
        initial = FlowModel(slotted)
        torch.nn.init.zeros_(initial.code_mel.weight)
        out = corpus / f"run-{remade}"
        options = TrainOptions(out=out, steps=1, batch_size=2, lr=0.0)
        train_flow(corpus / "manifest.jsonl", options, slotted, codebooks=codebooks, initial=initial)
        code_mel = load_model(FlowModel, FlowConfig, out, "flow").code_mel.weight
        assert bool(code_mel.abs().sum() > 0) == remade


def test_acoustic_corruption_replaces_only_acoustic_tokens_at_up_to_its_rate(corpus, monkeypatch):
    from stepaudio.train import decoder_recipes
    from stepaudio.train.loop import TrainOptions

    torch.manual_seed(0)
    semantic, acoustic = torch.randint(0, 1024, (64, 400, 2)), torch.randint(1024, 5120, (64, 400, 3))
    tokens = torch.cat([semantic, acoustic], 2).reshape(64, -1)
    tokens[:, -50:] = 0  # padding
    corrupted = decoder_recipes.corrupt_acoustic(tokens, 0.5)
    changed = corrupted != tokens
    assert not changed[tokens < 1024].any() and bool((corrupted >= 1024).eq(tokens >= 1024).all())
    rates = changed.sum(1) / (tokens >= 1024).sum(1)  # each row its own rate, up to 0.5
    assert 0.4 < rates.max() <= 0.52 and rates.min() < 0.1 and 0.2 < rates.mean() < 0.3
    assert torch.equal(decoder_recipes.corrupt_acoustic(tokens, 0.0), tokens)

    objectives, seen = [], []  # the option reaches the tokens that the flow trains on
    monkeypatch.setattr(decoder_recipes, "train", lambda objective, *args: objectives.append(objective) or 0)
    options = TrainOptions(out=corpus / "run", steps=1, batch_size=2)
    decoder_recipes.train_flow(corpus / "manifest.jsonl", options, FLOW, acoustic_corruption=0.9)
    monkeypatch.setattr(objectives[0].flow, "loss", lambda tokens, *args, **kwargs: seen.append(tokens))
    objectives[0](dict.fromkeys(("token_lengths", "mel", "mel_lengths", "embedding")) | {"tokens": tokens})
    assert torch.equal(seen[0][tokens < 1024], tokens[tokens < 1024]) and (seen[0] != tokens).float().mean() > 0.2
