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
by TF-IDF cosine similarity (a score in [0, 1]). Words in CMUdict also add
n-grams of their pronunciation (within words and across runs of them), so an
English name heard as other English words that sound alike ("plain salmon" ->
"plane Sam and") still matches.

Measured on a 6000-fact invented-names knowledge base with questions spoken by
espeak-ng and transcribed by Whisper tiny.en (`kamevoice kb eval-spoken`): top-1
on the final transcripts 0.26 against 0.02 for BM25 and 0.03 for MiniLM (figures
and thresholds in `KnowledgeSettings`, details in `backend/stt/README.md`). On the
KAME-tiny catalogue of English-word names, top-1 on 200 Whisper finals: letters
0.72, letters and pronunciations 0.77.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from kamevoice.knowledge.bm25 import Hit

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
# Marks n-grams of pronunciations (inside a word / across words), apart from the letters' ones.
_PHONES, _PHONES_JOINED = "&", "%"
_DICT_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_STRESS = re.compile(r"\d")


def sound_words(text: str) -> list[str]:
    """Lower-case words of `text`, spelled closer to how they sound ("Sophie" -> "sofi")."""
    folded = _NOT_WORD.sub(" ", text.lower().replace("'", ""))
    for pattern, replacement in _FOLDS:
        folded = pattern.sub(replacement, folded)
    return folded.split()


@functools.cache
def pronunciations() -> dict[str, str]:
    """CMUdict's first pronunciation of each word, one character per phone, stress dropped
    ("salmon" -> the characters of S AE M AH N); empty when PocketSphinx's dictionary is missing.

    Read once per process (126,000 words, ~0.5 s) and never changed.
    """
    from kamevoice.backend.stt.sphinx import default_dictionary

    phones: dict[str, str] = {}
    table: dict[str, str] = {}
    try:
        with open(default_dictionary(), encoding="utf-8") as f:
            for line in f:
                word, *symbols = line.split()
                if symbols and "(" not in word:
                    phones[word] = "".join(
                        table.setdefault(_STRESS.sub("", p), chr(0x100 + len(table))) for p in symbols
                    )
    except (OSError, ImportError):
        return {}
    return phones


# Words recur across a catalogue's entries and a conversation's partials: their grams are kept.
WORD_GRAMS_CACHE = 65536


@functools.lru_cache(maxsize=WORD_GRAMS_CACHE)
def _word_grams(word: str, sizes: tuple[int, ...], mark: str = "") -> tuple[str, ...]:
    """N-grams of one word with its boundaries (spaces); a word shorter than n gives itself."""
    padded = f" {word} "
    return tuple(mark + padded[i : i + n] for n in sizes for i in range(max(1, len(padded) - n + 1)))


def _run_grams(joined: str, sizes: Sequence[int], mark: str) -> list[str]:
    """N-grams of words run together (none of a length the run is too short for)."""
    return [mark + joined[i : i + n] for n in sizes for i in range(len(joined) - n + 1)]


def chargrams(text: str, sizes: Sequence[int] = DEFAULT_SIZES, *, phones: bool = True) -> list[str]:
    """The n-grams of `text` that are indexed: of its letters within words (boundaries as
    spaces) and across them, and (`phones`) of its dictionary words' pronunciations, within
    words and across runs of dictionary words ("plane Sam and" sounds like "plain salmon")."""
    sizes = tuple(sizes)
    words = sound_words(text)
    grams: list[str] = []
    for word in words:
        grams += _word_grams(word, sizes)
    grams += _run_grams("".join(words), sizes, _JOINED)
    if phones and (lexicon := pronunciations()):
        run: list[str] = []
        for word in [*_DICT_WORD.findall(text.lower()), ""]:
            said = lexicon.get(word)
            if said:
                grams += _word_grams(said, sizes, _PHONES)
                run.append(said)
            elif run:  # a word the dictionary lacks (or the end) breaks the run
                grams += _run_grams("".join(run), sizes, _PHONES_JOINED)
                run = []
    return grams


class CharGramIndex:
    """TF-IDF cosine ranking of a fixed list of documents over their character n-grams."""

    def __init__(
        self, documents: Sequence[str], *, sizes: Sequence[int] = DEFAULT_SIZES, phones: bool = True
    ):
        if not documents:
            raise ValueError("a character n-gram index needs at least one document")
        self.sizes, self.phones = tuple(sizes), phones
        self._vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for i, doc in enumerate(documents):
            for gram, count in Counter(chargrams(doc, self.sizes, phones=phones)).items():
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
        for gram, count in Counter(chargrams(text, self.sizes, phones=self.phones)).items():
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
