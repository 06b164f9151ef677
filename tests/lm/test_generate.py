import threading

import pytest
import torch
from lm_fixtures import tiny_model

from stepaudio.lm.generate import Session, stream_text
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.speculative import SpeculativeDecoder, verify


def plain_greedy(model, prompt, count):
    """Greedy decoding with no cache at all: the whole sequence through the model every step."""
    tokens = list(prompt)
    for _ in range(count):
        tokens.append(int(model(torch.tensor([tokens]), model.new_cache()).argmax()))
    return tokens[len(prompt) :]


@pytest.mark.parametrize("position", ["rope", "sqrt_alibi"])
def test_greedy_session_equals_uncached_greedy(position):
    model = tiny_model(position=position)
    with torch.no_grad():
        assert Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=12))[0] == plain_greedy(
            model, [3, 4, 5], 12
        )


def test_stop_ids_and_max_tokens():
    model = tiny_model()
    with torch.no_grad():
        free = Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=10))[0]
        stop = free[4]
        stopped = Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=10, stop_ids=(stop,)))[0]
        assert stopped == free[: free.index(stop)]
        assert Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=3))[0] == free[:3]
        assert Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=0))[0] == []
        floored = Session(model).generate([[3, 4, 5]], Sampling(max_new_tokens=10, min_new_tokens=6, stop_ids=(stop,)))
        assert len(floored[0]) >= 6 and stop not in floored[0][:6]


def test_batch_generation_equals_each_row_alone():
    model = tiny_model()
    prompts = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    with torch.no_grad():
        rows = Session(model, batch_size=3).generate(prompts, Sampling(max_new_tokens=8))
        assert rows == [Session(model).generate([p], Sampling(max_new_tokens=8))[0] for p in prompts]
        free = rows[1]
        rows = Session(model, batch_size=3).generate(prompts, Sampling(max_new_tokens=8, stop_ids=(free[2],)))
        assert rows[1] == free[: free.index(free[2])]  # row 1 stopped; the others went on


def test_seeded_sampling_is_reproducible_and_varies_with_the_seed():
    model = tiny_model()
    with torch.no_grad():
        runs = [
            Session(model).generate([[1, 2]], Sampling(temperature=1.0, max_new_tokens=15, seed=s))[0]
            for s in (1, 1, 2)
        ]
    assert runs[0] == runs[1] != runs[2]


def test_next_turn_reuses_the_cached_prefix_and_matches_a_fresh_session():
    model = tiny_model()
    turn1 = [3, 4, 5, 6]
    with torch.no_grad():
        session = Session(model)
        answer = session.generate([turn1], Sampling(max_new_tokens=5))[0]
        assert session.tokens() == turn1 + answer[:-1]  # the last token was chosen, never run
        turn2 = turn1 + answer + [7, 8]
        runs = []
        original = session.append

        def counting_append(tokens, all_logits=False):
            runs.append(tokens.shape[1])
            return original(tokens, all_logits)

        session.append = counting_append
        logits = session.feed([turn2])
        assert runs == [3]  # only the last answer token and the two new ones ran
        torch.testing.assert_close(logits, Session(model).feed([turn2]), atol=1e-5, rtol=0)
        # A different history: the cache is cut back to the common prefix (here 2 tokens).
        other = [3, 4, 9, 9, 9]
        torch.testing.assert_close(session.feed([other]), Session(model).feed([other]), atol=1e-5, rtol=0)
        assert runs[-1] == 3 and session.tokens() == other


def test_truncate_then_regenerate_is_deterministic():
    model = tiny_model()
    with torch.no_grad():
        session = Session(model)
        first = session.generate([[1, 2, 3]], Sampling(max_new_tokens=6))[0]
        session.truncate(2)
        assert session.tokens() == [1, 2] and session.length == 2
        assert session.generate([[1, 2, 3]], Sampling(max_new_tokens=6))[0] == first
        with pytest.raises(ValueError):
            session.truncate(50)


def test_streaming_can_be_cancelled_mid_way_and_the_session_stays_usable():
    model = tiny_model()
    cancel = threading.Event()
    got = []
    with torch.no_grad():
        session = Session(model)
        for token in session.stream([1, 2, 3], Sampling(max_new_tokens=50), cancel=cancel):
            got.append(token)
            if len(got) == 4:
                cancel.set()
        assert len(got) == 4
        assert session.tokens() == [1, 2, 3] + got[:3]
        # Closing the generator early works the same way.
        stream = session.stream([1, 2, 3], Sampling(max_new_tokens=50))
        assert [next(stream) for _ in range(4)] == got
        stream.close()
        assert session.generate([[1, 2, 3]], Sampling(max_new_tokens=6))[0] == got + plain_greedy(
            model, [1, 2, 3] + got, 2
        )


def test_prompt_that_does_not_fit_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="does not fit"):
        Session(model, max_len=8).feed([list(range(9))])
    with pytest.raises(ValueError, match="non-empty"):
        Session(model).feed([[]])


class ByteTokenizer:
    """UTF-8 bytes as tokens: a multi-byte character takes several tokens."""

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


def test_stream_text_never_splits_a_character():
    ids = list("héllo, 世界!".encode())
    pieces = list(stream_text(iter(ids), ByteTokenizer()))
    assert "".join(pieces) == "héllo, 世界!" and all("\ufffd" not in piece for piece in pieces)
    assert "世" in pieces


# --- speculative decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("draft_layers", [1, 2, 3])
def test_speculative_greedy_output_is_identical_to_plain_greedy(draft_layers):
    model = tiny_model(num_layers=3)
    with torch.no_grad():
        plain = Session(model).generate([[5, 6, 7]], Sampling(max_new_tokens=20))[0]
        decoder = SpeculativeDecoder(model, model.truncated(draft_layers), lookahead=3)
        assert decoder.generate([5, 6, 7], Sampling(max_new_tokens=20)) == plain
    assert decoder.stats.proposed > 0
    if draft_layers == 3:
        assert decoder.stats.acceptance_rate == 1.0


def test_speculative_greedy_with_an_unrelated_draft_and_stop_ids():
    model, stranger = tiny_model(seed=0, position="sqrt_alibi"), tiny_model(seed=9, position="sqrt_alibi")
    with torch.no_grad():
        plain = Session(model).generate([[5, 6, 7]], Sampling(max_new_tokens=16))[0]
        decoder = SpeculativeDecoder(model, stranger, lookahead=4)
        assert decoder.generate([5, 6, 7], Sampling(max_new_tokens=16)) == plain
        stop = Sampling(max_new_tokens=16, stop_ids=(plain[6],))
        assert decoder.generate([5, 6, 7], stop) == plain[: plain.index(plain[6])]  # cache reused across calls
        assert (
            decoder.generate([5, 6, 7], Sampling(max_new_tokens=16, repetition_window=4))
            == Session(model).generate([[5, 6, 7]], Sampling(max_new_tokens=16, repetition_window=4))[0]
        )
    assert decoder.stats.acceptance_rate < 1


def test_rejection_sampling_gives_the_target_distribution():
    """The first emitted token of a round must follow p0 whatever the draft's q0."""
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    trials = 20000
    for _ in range(trials):
        drafted = int(torch.multinomial(q[0], 1, generator=generator))
        kept, following = verify(p, q, [drafted], greedy=False, generator=generator)
        counts[drafted if kept else following] += 1
    torch.testing.assert_close(counts / trials, p[0], atol=0.015, rtol=0)


def test_speculative_sampling_is_seeded_and_cancellable():
    model = tiny_model(num_layers=3)
    sampling = Sampling(temperature=0.8, top_k=20, max_new_tokens=12, seed=3)
    with torch.no_grad():
        one = SpeculativeDecoder(model, model.truncated(1)).generate([1, 2], sampling)
        two = SpeculativeDecoder(model, model.truncated(1)).generate([1, 2], sampling)
        assert one == two and len(one) == 12
        cancel = threading.Event()
        got = []
        for token in SpeculativeDecoder(model, model.truncated(1)).stream([1, 2], sampling, cancel):
            got.append(token)
            cancel.set()
        assert len(got) == 1
