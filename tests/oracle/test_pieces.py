"""Incremental tokenisation: streamed text yields exactly the pieces of the whole text."""

from __future__ import annotations

import itertools
import random

from kamevoice.oracle.pieces import IncrementalTokenizer

TEXTS = [
    "The store opens at nine in the morning.",
    "Returns are accepted within thirty days, with the original receipt!",
    "  Seven plus five is twelve;   nine times six is fifty four.",
    "Paris",
    "",
    "What time does the shop open tomorrow? It opens at ten.",
]


def _chunks(text: str, rng: random.Random) -> list[str]:
    cuts = (
        sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 12))))
        if len(text) > 1
        else []
    )
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def test_any_chunking_gives_the_whole_text_tokenisation(spm):
    rng = random.Random(0)
    for text in TEXTS:
        for _ in range(30):
            inc = IncrementalTokenizer(spm)
            released, acc = [], ""
            for chunk in _chunks(text, rng):
                acc += chunk
                released += inc.update(acc)
            released += inc.finish()
            assert released == spm.encode(text), (text, acc)
            assert inc.revisions == 0


def test_a_word_is_released_only_once_whitespace_ends_it(spm):
    inc = IncrementalTokenizer(spm)
    assert inc.update("The sto") == spm.encode("The")
    # "sto" could still become "store" or "stop": nothing more until whitespace ends the word.
    assert inc.update("The store") == []
    assert inc.update("The store ") == spm.encode("The store")[len(spm.encode("The")) :]
    assert inc.update("The store o") == []


def test_fragment_tokenisation_differs_from_whole_text_which_is_why_this_exists(spm):
    # The published server tokenised each fragment on its own: pieces differ from training.
    fragments = ["The st", "ore op", "ens at ni", "ne"]
    naive = [t for f in fragments for t in spm.encode(f)]
    assert naive != spm.encode("".join(fragments))


def test_reset_forgets_the_previous_answer(spm):
    inc = IncrementalTokenizer(spm)
    inc.update("The store opens")
    inc.reset()
    assert inc.update("Paris is") == spm.encode("Paris")
    assert inc.finish() == spm.encode("Paris is")[len(spm.encode("Paris")) :]
