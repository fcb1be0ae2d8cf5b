"""Character n-gram retrieval: finds the entry even when the recogniser spelled its words wrong.

Invented product and shop names ("the tasko kettle", "Velmora Market") are not
in any recogniser's vocabulary, so they come back respelled ("tasco"), split
("task o") or as look-alike English ("roof you get" for "rufugi"). Whole-word
retrieval (BM25, sentence embeddings) then has nothing to match; letter
sequences still overlap. Text is folded towards how it sounds (ph -> f,
c -> k or s, doubled letters once, ...), cut into n-grams of 2 to 4 letters,
both inside each word (with its boundaries, so "ta" at a word's start differs
from "ta" inside one) and across the words joined without spaces (so a name
split into two words, or two words run together, still matches), and ranked
by TF-IDF cosine similarity (a score in [0, 1]).

Measured on a 6000-fact invented-names knowledge base with questions spoken by
espeak-ng and transcribed by Whisper tiny.en (`kamevoice kb eval-spoken`): top-1
on the final transcripts 0.26 against 0.02 for BM25 and 0.03 for MiniLM (figures
and thresholds in `KnowledgeSettings`, details in `backend/stt/README.md`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from kamevoice.backend.llm.bm25 import Hit

# N-gram lengths: 2 catches short names' few letters, 4 keeps common English words apart.
DEFAULT_SIZES = (2, 3, 4)
# Spelling folded towards sound, applied in order to lower-case words (regular expressions).
_FOLDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(a), b)
    for a, b in (
        (r"ph", "f"),
        (r"ck", "k"),
        (r"q", "k"),
        (r"x", "ks"),
        (r"c(?=[eiy])", "s"),
        (r"c", "k"),
        (r"(?<=\w)(y|ie)\b", "i"),
        (r"ee", "i"),
        (r"oo", "u"),
        (r"(\w)\1+", r"\1"),
    )
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
# Marks n-grams taken across word boundaries, so they never equal one taken inside a word.
_JOINED = "#"


def sound_words(text: str) -> list[str]:
    """Lower-case words of `text`, spelled closer to how they sound ("Sophie" -> "sofi")."""
    folded = _NOT_WORD.sub(" ", text.lower().replace("'", ""))
    for pattern, replacement in _FOLDS:
        folded = pattern.sub(replacement, folded)
    return folded.split()


def chargrams(text: str, sizes: Sequence[int] = DEFAULT_SIZES) -> list[str]:
    """The n-grams of `text` that are indexed: within words (boundaries as spaces) and across them."""
    words = sound_words(text)
    grams: list[str] = []
    for word in words:
        padded = f" {word} "
        for n in sizes:
            grams += [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
    joined = "".join(words)
    for n in sizes:
        grams += [_JOINED + joined[i : i + n] for i in range(len(joined) - n + 1)]
    return grams


class CharGramIndex:
    """TF-IDF cosine ranking of a fixed list of documents over their character n-grams."""

    def __init__(self, documents: Sequence[str], *, sizes: Sequence[int] = DEFAULT_SIZES):
        if not documents:
            raise ValueError("a character n-gram index needs at least one document")
        self.sizes = tuple(sizes)
        self._vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for i, doc in enumerate(documents):
            for gram, count in Counter(chargrams(doc, self.sizes)).items():
                rows.append(i)
                cols.append(self._vocab.setdefault(gram, len(self._vocab)))
                values.append(1.0 + math.log(count))  # sublinear: a repeated gram is not 3x the evidence
        n_docs, n_terms = len(documents), max(1, len(self._vocab))
        counts = sparse.csr_matrix((values, (rows, cols)), shape=(n_docs, n_terms), dtype=np.float64)
        df = np.bincount(counts.indices, minlength=n_terms)
        self._idf = np.log((n_docs + 1.0) / (df + 1.0)) + 1.0  # smoothed: never zero
        weighted = counts.multiply(self._idf).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        self._docs = (sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted).tocsr()

    def vector(self, text: str) -> np.ndarray:
        """`text` as a unit TF-IDF vector over the index's n-grams (zeros when none is known)."""
        v = np.zeros(self._docs.shape[1])
        for gram, count in Counter(chargrams(text, self.sizes)).items():
            j = self._vocab.get(gram)
            if j is not None:
                v[j] = (1.0 + math.log(count)) * self._idf[j]
        norm = float(np.linalg.norm(v))
        return v / norm if norm else v

    def search(self, query: str, top_k: int = 3) -> list[Hit]:
        """The `top_k` most similar documents, best first; scores are cosines in [0, 1]."""
        sims = self._docs @ self.vector(query)
        k = min(top_k, len(sims))
        best = np.argpartition(-sims, k - 1)[:k]
        best = best[np.argsort(-sims[best], kind="stable")]
        return [Hit(int(i), float(sims[i])) for i in best]
