"""Scores that need no judge, and summaries of per-turn numbers.

Knowledge-word metric (used when no judge is configured, and reported always):
the share of the *target's* content words that also occur in the reply,
in [0, 1]. Content words are lower-cased alphanumeric tokens that are not in
`STOPWORDS` and have at least `MIN_WORD_CHARS` characters (any number counts),
compared after a crude normalisation (number words as digits, a final
plural 's' dropped), so "opens at ten" matches "open at 10".
The target is the reference answer of the turn when the question has one
(FastChat's GPT-4 answers: reasoning), else the back-end's final oracle of that
turn in the KAME session: "did the knowledge the back-end had reach the reply?"
(none when that oracle is the offline knowledge base's fallback reply, which holds no knowledge).
It measures knowledge transfer, not quality: a reply that lists the right
words in a wrong sentence scores high, and for the back-end's own text against
its own oracle it is 1 by construction (results.json names the target of every cell).
"""

from __future__ import annotations

import re
import statistics

# Function words that carry no knowledge; a small hand-made English list.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    let me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours yourself yourselves yes okay well oh um uh like
    really sure think know get got one thing things say said there's it's that's i'm you're we're
    they're don't can't won't
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# Shorter tokens (other than numbers) are mostly fragments and particles.
MIN_WORD_CHARS = 3
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of `text`."""
    return _TOKEN.findall(text.lower())


def is_content_word(word: str) -> bool:
    """A word that can carry knowledge (see module doc)."""
    w = word.lower()
    return w.isdigit() or (len(w) >= MIN_WORD_CHARS and w not in STOPWORDS)


# Spoken replies say numbers in words, written answers in digits: compare them as digits.
_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split())} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
}


def normalize(word: str) -> str:
    """A crude stem: number words as digits, a plural or third-person 's' dropped ('opens' -> 'open')."""
    w = _NUMBER_WORDS.get(word, word)
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    return w


def content_words(text: str) -> set[str]:
    """The set of content words of `text`, normalised (see `normalize`)."""
    return {normalize(w) for w in words(text) if is_content_word(w) or w in _NUMBER_WORDS}


def knowledge_word_score(reply: str, target: str) -> float | None:
    """Share of `target`'s content words found in `reply`; None when the target has none."""
    want = content_words(target)
    if not want:
        return None
    return len(want & content_words(reply)) / len(want)


def describe(values: list[float]) -> dict:
    """Mean, spread and extremes of a list of numbers (None entries are dropped)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(vals),
        "mean": statistics.fmean(vals),
        "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
    }


def latency_summary(values: list[float | None]) -> dict:
    """Median and raw distribution of per-turn latencies; turns without a reply are counted apart."""
    vals = sorted(v for v in values if v is not None)
    return {
        "median_s": statistics.median(vals) if vals else None,
        "turns": len(values),
        "replied": len(vals),
        "negative": sum(v < 0 for v in vals),
        "values_s": vals,
    }
