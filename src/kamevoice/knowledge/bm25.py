"""Okapi BM25 over a small in-memory corpus, with the text normalisation it needs.

Spoken partial questions ("so what time do you open on sund") are short and
noisy, so normalisation matters more than the ranking formula: lower-case,
drop stop words, fold a few English suffixes so "opening"/"opens"/"open" meet.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# Robertson/Sparck Jones defaults: term-frequency saturation and length normalisation.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# Words that say nothing about which entry is meant (question scaffolding included).
STOP_WORDS = frozenset(
    """a about am an and any are as at be been but by can could do does did for from get got had has
    have how i i'd i'm if in is it it's its just like me my of on or our please so than that the their
    them then there these they this those to too um uh us was we what when where which who why will
    with would you your you're yours hi hello hey well okay ok yes no not much many some want
    know tell need there's what's""".split()  # noqa: SIM905 - a word list reads better as prose
)

# Suffixes folded away, longest first; the stem must keep at least 3 letters.
_SUFFIXES = ("ing", "ies", "ied", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    """A deliberately crude English stemmer: enough for plurals and verb forms."""
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                word += "y"
            break
    return word


def terms(text: str) -> list[str]:
    """Normalised index terms of a text."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


@dataclass(frozen=True)
class Hit:
    """One ranked document: its index in the corpus and its BM25 score."""

    index: int
    score: float


class BM25Index:
    """BM25 ranking of a fixed list of documents."""

    def __init__(self, documents: Sequence[str], *, k1: float = DEFAULT_K1, b: float = DEFAULT_B):
        if not documents:
            raise ValueError("a BM25 index needs at least one document")
        self.k1, self.b = k1, b
        self._docs = [Counter(terms(d)) for d in documents]
        self._lengths = [sum(c.values()) for c in self._docs]
        self._avg_len = max(sum(self._lengths) / len(self._docs), 1e-9)
        df: Counter[str] = Counter()
        for counts in self._docs:
            df.update(counts.keys())
        n = len(self._docs)
        # The "+1" form of IDF stays positive even for terms in most documents.
        self._idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def search(self, query: str, top_k: int = 3) -> list[Hit]:
        """The `top_k` best documents for `query`, best first (score 0 when nothing matches)."""
        q = set(terms(query))
        scores = []
        for i, counts in enumerate(self._docs):
            norm = self.k1 * (1.0 - self.b + self.b * self._lengths[i] / self._avg_len)
            score = 0.0
            for t in q:
                f = counts.get(t)
                if f:
                    score += self._idf[t] * f * (self.k1 + 1.0) / (f + norm)
            scores.append(Hit(i, score))
        scores.sort(key=lambda h: h.score, reverse=True)
        return scores[:top_k]
