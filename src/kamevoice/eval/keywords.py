"""Key-word scoring of spoken answers: does a reply hold every key word of the expected answer?

Key words are the fact's short spoken answer ("forty two dollars", "B M five five
seven"), lower-cased, punctuation stripped, counted with multiplicity (a code with
two fives needs two fives). A reply's words are read the same way; an STT
transcript writes digits, money and spelled letters, so it is also read in its
spoken forms (`reply_readings`) and the best reading counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+")
_DOLLARS_CENTS = re.compile(r"\$\s?(\d+)\.(\d\d)\b")
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_SPELLED = re.compile(r"\b(?:[A-Z]\.){2,}|\b[A-Z]{2,3}\b")  # "B.M." / "BM": letters said one by one
_DIGIT = re.compile(r"\d")


def reply_readings(text: str) -> list[list[str]]:
    """The reply's words, lower-cased, in each plausible reading of what an STT may write.

    Text streams say numbers in words already; transcripts write digits, money and
    spelled letters ("$357.75", "BM557"). Reading one says numbers as numbers
    ("three hundred fifty seven"), reading two digit by digit ("five five seven",
    how product codes are spoken); for text without digits both are the same.
    """
    from kamevoice.data.spoken import spoken

    text = _DOLLARS_CENTS.sub(lambda m: f"{m[1]} dollars and {int(m[2])} cents", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _SPELLED.sub(lambda m: " ".join(c for c in m[0] if c.isalpha()), text)
    readings = [spoken(text)]
    if _DIGIT.search(text):
        readings.append(spoken(_DIGIT.sub(lambda m: f" {m[0]} ", text)))
    return [_WORD.findall(r.lower()) for r in readings]


@dataclass(frozen=True)
class KeywordScore:
    """How many of a fact's key words (with multiplicity) a reply holds."""

    found: int
    total: int

    @property
    def answered(self) -> bool:
        return self.total > 0 and self.found == self.total

    def as_dict(self) -> dict:
        return {"found": self.found, "total": self.total, "answered": self.answered}


def score_keywords(reply: str, key_words: Sequence[str]) -> KeywordScore:
    """Key words of the answer found in `reply` (see module doc), in the reply's best reading."""
    want = Counter(w for k in key_words for w in _WORD.findall(k.lower()))
    total = sum(want.values())
    best = 0
    for reading in reply_readings(reply):
        have = Counter(reading)
        best = max(best, sum(min(n, have[w]) for w, n in want.items()))
    return KeywordScore(best, total)
