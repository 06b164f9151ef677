import threading

import pytest
import torch
from lm_fixtures import tiny_model

from stepaudio.errors import OptionError
from stepaudio.lm.backends.local import LocalBackend
from stepaudio.lm.conversation import Conversation
from stepaudio.lm.loaders import LanguageModel
from stepaudio.lm.prompts import CHATML
from stepaudio.lm.sampling import Sampling


class CharTokenizer:
    """One token per printable character (ids 1..94); id 95 is the end-of-turn marker."""

    bos_id, eos_id, vocab_size = None, 95, 96

    def encode(self, text, bos=None):
        return [95 if piece == "<|im_end|>" else ord(c) - 31 for piece in [text] for c in piece if 32 <= ord(c) < 126]

    def decode(self, ids):
        return "".join(chr(i + 31) for i in ids if 0 < i < 95)

    def token_id(self, piece):
        return 95


def test_conversation_keeps_history_and_reuses_the_cache():
    lm = LanguageModel(LocalBackend(tiny_model(max_seq_len=512)), CharTokenizer(), CHATML, "tiny")
    conversation = Conversation(lm, Sampling(max_new_tokens=6), system="sys")
    with torch.no_grad():
        first = "".join(conversation.reply("hi"))
        assert conversation.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": first}]
        session = conversation.decoder
        cached_after_first = session.tokens()
        second = "".join(conversation.reply("again"))
    assert conversation.messages()[0] == {"role": "system", "content": "sys"}
    assert len(conversation.history) == 4 and conversation.history[3]["content"] == second
    # The second turn extended the first one's cache instead of starting over.
    assert session.tokens()[: len(cached_after_first)] == cached_after_first


def test_cancelled_reply_is_kept_as_far_as_it_went():
    lm = LanguageModel(LocalBackend(tiny_model(max_seq_len=512)), CharTokenizer(), CHATML, "tiny")
    conversation = Conversation(lm, Sampling(max_new_tokens=30))
    cancel = threading.Event()
    pieces = []
    with torch.no_grad():
        for piece in conversation.reply("hello", cancel):
            pieces.append(piece)
            cancel.set()
    assert len(pieces) == 1 and conversation.history[-1]["content"] == pieces[0]
    conversation.reset()
    assert conversation.history == []


def test_long_conversations_forget_their_oldest_turns():
    lm = LanguageModel(LocalBackend(tiny_model(max_seq_len=512)), CharTokenizer(), CHATML, "tiny")
    conversation = Conversation(lm, Sampling(max_new_tokens=20), max_len=320)
    with torch.no_grad():
        for turn in range(8):  # each exchange is ~60 tokens: 8 of them overflow a 320-token cache
            "".join(conversation.reply(f"message number {turn}, a longish one"))
    contents = [message["content"] for message in conversation.history]
    assert "message number 7, a longish one" in contents and "message number 0, a longish one" not in contents
    with pytest.raises(OptionError, match="send a shorter one"), torch.no_grad():
        "".join(conversation.reply("x" * 800))
    with pytest.raises(OptionError, match="empty message"):
        "".join(conversation.reply("  "))


def test_a_long_history_drops_the_fewest_exchanges_in_few_encodings():
    lm = LanguageModel(LocalBackend(tiny_model(max_seq_len=512)), CharTokenizer(), CHATML, "tiny")
    conversation = Conversation(lm, Sampling(max_new_tokens=4), max_len=400)
    pairs = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(2000)]
    history = [message for pair in pairs for message in pair] + [{"role": "user", "content": "last"}]
    conversation.history = list(history)
    encodings = []
    encode = lm.chat.encode
    lm.chat = type("Counting", (), {"encode": lambda self, *a: encodings.append(1) or encode(*a)})()
    prompt = conversation._prompt_that_fits()
    kept = len(conversation.history)
    assert conversation.history == history[-kept:] and len(prompt) + 4 <= 400
    assert len(encode(lm.tokenizer, history[-kept - 2 :])) + 4 > 400  # one exchange more would not fit
    assert len(encodings) <= 15  # bisection: log2(2000) + 2, where dropping one by one took 1000
