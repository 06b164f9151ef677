"""`stepaudio train tts` on a tiny corpus: the examples it builds, a few steps, an export that loads."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from stepaudio.cli import main
from stepaudio.lm.tokenizer import SentencePieceTokenizer
from stepaudio.train.data.manifest import Utterance, read_manifest, write_manifest
from stepaudio.train.tts_data import IGNORE, TTSDataset, speed_tag
from stepaudio.train.tts_vocab import train_vocabulary
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.text import normalize

UTTERANCES = [
    # (text, language, voice, speed, seconds)
    ("Hello there, friend.", "en", "espeak:en-us", 1.0, 1.2),
    ("It costs 5 dollars.", "en", "espeak:en-us", 1.18, 1.0),
    ("We walked home.", "en", "espeak:en-us", 0.86, 1.1),
    ("你好，今天天气很好。", "zh", "espeak:cmn", 1.0, 1.5),
    ("我们去图书馆。", "zh", "espeak:cmn", 1.1, 1.2),
    ("请在星期三来。", "yue", "espeak:yue", 1.0, 1.3),
    ("多谢你。", "yue", "espeak:yue", 0.9, 0.9),
]


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "tokens").mkdir()
    utterances = []
    for i, (text, language, voice, speed, seconds) in enumerate(UTTERANCES):
        np.save(tmp_path / "tokens" / f"{i}.npy", rng.integers(0, 5120, int(seconds * 125 / 3) // 5 * 5))
        utterances.append(
            Utterance(f"audio/{i}.flac", text, language, voice, speed, 1.0, seconds, "train", "test", f"tokens/{i}.npy")
        )
    utterances.append(Utterance("audio/x.flac", "untokenized", "en", "espeak:en-us", 1.0, 1.0, 1.0, "train", "test"))
    write_manifest(tmp_path / "manifest.jsonl", utterances)
    return tmp_path / "manifest.jsonl"


def test_speed_bands():
    assert [speed_tag(s) for s in (0.85, 0.9, 1.0, 1.1, 1.2)] == ["慢速2", "慢速1", None, "快速1", "快速2"]


def test_examples_score_only_the_speech_of_both_assistant_turns_and_locate_its_text(corpus, tmp_path):
    tokenizer_file = train_vocabulary([u[0] for u in UTTERANCES], tmp_path / "t.model", 700)
    tokenizer = SentencePieceTokenizer(tokenizer_file, audio_offset=700)
    dataset = TTSDataset(corpus, tokenizer)
    assert len(dataset) == 7  # the utterance without token files is left out
    for index, target in enumerate(dataset.targets):
        ids, labels, spans = dataset[index]
        ids, labels = ids.tolist(), labels.tolist()
        text = tokenizer.decode(ids)
        target_tokens = np.load(corpus.parent / target.tokens).tolist()
        assert ids[-len(target_tokens) - 1 : -1] == [700 + k for k in target_tokens] and ids[-1] == tokenizer.eos_id
        scored = [(i, label) for i, label in enumerate(labels) if label != IGNORE]
        assert all(ids[i] == label and (label >= 700 or label == tokenizer.eos_id) for i, label in scored)
        assert sum(label == tokenizer.eos_id for _, label in scored) == 2  # the end of each assistant turn
        prompt = text.split("<|BOT|>human\n")[1].split("<|EOT|>")[0]
        same_voice = [u.text for u in dataset.targets if u.voice == target.voice and u is not target]
        assert any(prompt.rstrip("。.") in t.replace("5", "five") for t in same_voice)  # another utterance, same voice
        request = text.split("<|BOT|>human\n")[2]
        (prompt_text, prompt_speech), (request_text, speech) = (
            (tokenizer.decode(ids[a:b]), ids[c:d]) for a, b, c, d, _ in spans
        )
        assert prompt_text == f"<|BOT|>human\n{prompt}<|EOT|>"
        assert request_text == f"<|BOT|>human\n{request.split('<|EOT|>')[0]}<|EOT|>"
        assert speech == [700 + k for k in target_tokens] and min(prompt_speech) >= 700
        assert ids[spans[0][3]] == tokenizer.eos_id  # the example turn's speech ends at its end of turn
        if target.language == "yue":
            assert request.startswith(("(粤语)", "(广东话)"))
        if speed_tag(target.speed):
            assert f"({speed_tag(target.speed)})" in request


def test_examples_of_aligned_utterances_say_which_text_token_each_speech_token_reads(corpus, tmp_path):
    utterances = read_manifest(corpus)
    text = normalize(utterances[0].text, "en")
    assert text.split() == ["Hello", "there,", "friend."]
    words = [["Hello", 0.1, 0.4], ["there,", 0.4, 0.7], ["friend.", 0.8, 1.1]]
    write_manifest(corpus, [dataclasses.replace(utterances[0], words=words), *utterances[1:]])
    tokenizer_file = train_vocabulary([u[0] for u in UTTERANCES], tmp_path / "t.model", 700)
    tokenizer = SentencePieceTokenizer(tokenizer_file, audio_offset=700)
    dataset = TTSDataset(corpus, tokenizer)
    assert dataset.targets[0].words == words
    for index, target in enumerate(dataset.targets):
        ids, _, spans = dataset[index]
        target_span = spans[1]
        if not target.words:
            assert target_span.reading is None
            continue
        turn, reading = ids[target_span.text_start : target_span.text_end].tolist(), target_span.reading
        speech_len = target_span.speech_end - target_span.speech_start
        assert reading.shape == (speech_len,) and (reading.diff() >= 0).all()
        seconds = (np.arange(speech_len) + 0.5) / speech_len * target.duration
        for word, start, end in words:
            read = {tokenizer.decode([turn[int(p)]]).strip() for p in reading[(seconds > start) & (seconds < end)]}
            assert read and all(piece and piece in word for piece in read), (word, read)
    even = TTSDataset(corpus, tokenizer, word_times=False)  # the pace the packaged weights were trained with
    assert all(span.reading is None for index in range(len(even)) for span in even[index][2])


def test_train_tts_exports_a_model_the_pipeline_loads(corpus, tmp_path):
    config = tmp_path / "sizes.json"
    config.write_text(
        json.dumps({"hidden_size": 32, "intermediate_size": 48, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1})
    )
    args = [
        "train",
        "tts",
        "--manifest",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--export",
        str(tmp_path / "tts"),
    ]
    args += ["--config", str(config), "--steps", "2", "--batch-size", "2", "--text-vocab", "700", "--log-every", "1"]
    assert main(args) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    assert all(0 <= r["guide"] <= 1 and r["loss"] == pytest.approx(r["cross_entropy"] + r["guide"]) for r in log)
    lm = SpeechLM.from_mini(tmp_path / "tts")
    assert lm.tokenizer.audio_offset == 700 and lm.model.config.vocab_size == 700 + 5120
    assert lm.model.config.position == "sqrt_alibi"
    resumed = [*args[:-6], "--steps", "3", "--text-vocab", "700", "--log-every", "1", "--guide-weight", "0"]
    assert main([*resumed, "--resume"]) == 0  # same vocabulary on resume
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["loss"] == pytest.approx(last["cross_entropy"]) and "guide" not in last


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_train_tts_on_the_gpu_with_loading_workers(corpus, tmp_path):
    config = tmp_path / "sizes.json"
    config.write_text(json.dumps({"hidden_size": 32, "intermediate_size": 48, "num_layers": 2, "num_heads": 2}))
    args = ["train", "tts", "--manifest", str(corpus), "--out", str(tmp_path / "run"), "--config", str(config),
            "--steps", "3", "--batch-size", "2", "--text-vocab", "700", "--log-every", "1", "--device", "cuda",
            "--workers", "2"]  # fmt: skip
    assert main(args) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    assert SpeechLM.from_mini(tmp_path / "run").model.config.num_layers == 2


def test_fine_tune_starts_from_an_export_and_keeps_its_vocabulary(corpus, tmp_path, capsys):
    config = tmp_path / "sizes.json"
    config.write_text(json.dumps({"hidden_size": 32, "intermediate_size": 48, "num_layers": 1, "num_heads": 2}))
    base = ["train", "tts", "--manifest", str(corpus), "--steps", "1", "--batch-size", "2"]
    assert main([*base, "--out", str(tmp_path / "base"), "--config", str(config), "--text-vocab", "700"]) == 0
    # at learning rate 0 the fine-tune exports its initial weights: they are the base model's
    tuned = [*base, "--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "base"), "--lr", "0"]
    assert main([*tuned, "--speech-corruption", "0.5"]) == 0
    first, second = SpeechLM.from_mini(tmp_path / "base"), SpeechLM.from_mini(tmp_path / "tuned")
    assert second.tokenizer.audio_offset == 700 and second.model.config == first.model.config
    assert (tmp_path / "tuned" / "tokenizer.model").read_bytes() == (tmp_path / "base" / "tokenizer.model").read_bytes()
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    assert main([*tuned, "--config", str(config)]) == 1  # its sizes are the initial model's
    assert "--config and --init exclude each other" in capsys.readouterr().err
    assert main([*tuned, "--text-vocab", "900"]) == 1  # and so is its vocabulary
    assert "--text-vocab and --init exclude each other" in capsys.readouterr().err


def test_speech_corruption_changes_only_input_speech_at_up_to_its_rate():
    from stepaudio.lm.model import Transformer
    from stepaudio.train.tts_recipe import TTSObjective, mini_config

    torch.manual_seed(0)
    model = Transformer(mini_config(700, hidden_size=32, intermediate_size=48, num_layers=1, num_heads=2))
    ids = torch.cat([torch.randint(0, 700, (64, 50)), torch.randint(700, 5820, (64, 1201))], 1)
    labels = torch.full_like(ids, IGNORE)
    labels[:, -1] = ids[:, -1]  # the head runs on one position only
    seen = []
    model.hidden_states = lambda inputs: seen.append(inputs) or torch.zeros(*inputs.shape, 32)
    objective = TTSObjective(model, guide_weight=0, speech_corruption=0.5)
    objective({"ids": ids, "labels": labels})
    inputs, changed = seen[0], seen[0] != ids[:, :-1]
    assert not changed[:, :50].any() and bool((inputs[:, 50:] >= 700).all())  # text untouched, speech stays speech
    rates = changed.sum(1) / 1200  # each row its own rate, up to 0.5
    assert 0.4 < rates.max() <= 0.53 and rates.min() < 0.1 and 0.2 < rates.mean() < 0.3
    TTSObjective(model, guide_weight=0)({"ids": ids, "labels": labels})
    assert torch.equal(seen[1], ids[:, :-1])  # no corruption by default
