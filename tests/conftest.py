"""Shared fixtures: small models and tokenizers built inside the tests (no downloads)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

import io
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# A few hundred words of varied English: enough for SentencePiece to learn a small vocabulary.
_CORPUS = """
The store opens at nine in the morning and closes at six in the evening on weekdays.
On Saturdays we open at ten and close at four, and we are closed on Sundays and public holidays.
Returns are accepted within thirty days with the original receipt and packaging.
The blue kettle costs forty two dollars and the red toaster costs fifty five dollars.
Our support line answers questions about orders, deliveries, refunds and warranties.
Shipping is free for orders above fifty dollars; otherwise it costs seven dollars.
The warranty covers manufacturing defects for two years from the date of purchase.
Speak while thinking: the assistant starts answering at once and corrects course later.
A streaming recogniser hears the question word by word while the user is still talking.
Knowledge arrives from the back end as a candidate answer, one token every eighty milliseconds.
What time does the shop open tomorrow? How much is the kettle? Can I return a broken lamp?
Paris is the capital of France, and Berlin is the capital of Germany.
Seven plus five is twelve; nine times six is fifty four; the square root of eighty one is nine.
""".strip().splitlines()


def train_spm(path: Path, vocab_size: int = 150) -> Path:
    """Train a small SentencePiece model laid out like Moshi's (PAD is id 3)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        # Moshi's text vocabulary uses id 3 as PAD (and id 0 as end-of-padding in training data).
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    return path


@pytest.fixture(scope="session")
def spm_path(tmp_path_factory) -> Path:
    """A small (~150-piece) SentencePiece model trained here."""
    return train_spm(tmp_path_factory.mktemp("spm") / "tokenizer_test_200.model")


@pytest.fixture(scope="session")
def spm(spm_path):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
