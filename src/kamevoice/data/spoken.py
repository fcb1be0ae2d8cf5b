"""Written text -> text as it is spoken: numbers and symbols become words.

The front-end's text stream, the TTS and the word timings must all agree on
the same words, so dialogue scripts hold only what is said out loud:
`"$1,250 (about 12.5%)"` becomes `"one thousand two hundred fifty dollars
about twelve point five percent"`. English only.
"""

from __future__ import annotations

import re

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
# Numbers past this are read digit by digit (a phone number, an id): nobody says "four quadrillion ...".
MAX_CARDINAL = 10**15 - 1
# Decimal places read out before the rest is dropped: "3.14159265" -> "three point one four one five".
MAX_DECIMALS = 4
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}  # fmt: skip


def cardinal(n: int) -> str:
    """English words for a whole number: 1250 -> 'one thousand two hundred fifty'."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + cardinal(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return cardinal(high) + " " + name + (" " + cardinal(rest) if rest else "")
    raise AssertionError(n)  # pragma: no cover


def ordinal(n: int) -> str:
    """English ordinal words: 21 -> 'twenty first'."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def number_words(text: str) -> str:
    """Words for a number written with optional sign, thousands commas and decimals."""
    text = text.replace(",", "")
    sign = ""
    if text.startswith(("-", "−")):
        sign, text = "minus ", text[1:]
    whole, _, frac = text.partition(".")
    words = cardinal(int(whole)) if whole else "zero"
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac[:MAX_DECIMALS])
    return sign + words


_LATEX_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_SQRT = re.compile(r"\\sqrt\{([^{}]*)\}")
_LATEX_CMD = re.compile(r"\\([a-zA-Z]+)")
_CURRENCY = re.compile(r"([$€£])\s?(\d[\d,]*(?:\.\d+)?)(\s?(?:million|billion|thousand))?")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_FRACTION = re.compile(r"\b(\d+)\s?/\s?(\d+)\b")
_POWER = re.compile(r"(\w)\s?\^\s?\(?(-?\d+|\w)\)?")
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-−]?\d+(?:\.\d+)?")
_MINUS_BETWEEN = re.compile(r"(?<=\d)\s*[-−]\s*(?=\d)")
# Calculator annotations of GSM8K-style solutions: "<<16-3-4=9>>" is not said.
_ANNOTATION = re.compile(r"<<[^<>]*>>")
_CURRENCY_NAMES = {"$": "dollars", "€": "euros", "£": "pounds"}
_LATEX_NAMES = {"pi": "pi", "times": "times", "cdot": "times", "div": "divided by", "pm": "plus or minus",
                "leq": "less than or equal to", "geq": "greater than or equal to", "neq": "not equal to",
                "approx": "approximately", "infty": "infinity", "alpha": "alpha", "beta": "beta",
                "theta": "theta", "lambda": "lambda", "mu": "mu", "sigma": "sigma", "Delta": "delta",
                "delta": "delta", "omega": "omega", "circ": "degrees"}  # fmt: skip
_SYMBOLS = {"+": " plus ", "×": " times ", "*": " times ", "÷": " divided by ", "=": " equals ",
            "≈": " approximately ", "<": " less than ", ">": " greater than ", "≤": " at most ",
            "≥": " at least ", "&": " and ", "°": " degrees ", "π": " pi ", "√": " square root of ",
            "@": " at ", "#": " number ", "~": " about ", "±": " plus or minus ",
            "∞": " infinity "}  # fmt: skip
# Characters nobody pronounces; they become spaces (sentence punctuation . , ? ! ; : ' stays for prosody).
_UNSPOKEN = re.compile(r"[\"“”‘’()\[\]{}|_\\`^$€£/<>*–—…•]")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,?!;:])")
_LONE_PUNCT = re.compile(r"(?<!\S)[.,?!;:'-]+(?!\S)")


def _power(m: re.Match) -> str:
    base, exp = m.group(1), m.group(2)
    if exp == "2":
        return f"{base} squared"
    if exp == "3":
        return f"{base} cubed"
    return f"{base} to the power of {exp}"


def spoken(text: str) -> str:
    """Rewrite `text` the way it is read aloud: numbers, currencies, percentages and symbols as words.

    The result contains only words and sentence punctuation, so each whitespace
    token is one or more spoken words.
    """
    text = text.replace("’", "'")
    text = _ANNOTATION.sub("", text)
    text = _LATEX_FRAC.sub(r" \1 over \2 ", text)
    text = _LATEX_SQRT.sub(r" square root of \1 ", text)
    text = _LATEX_CMD.sub(lambda m: " " + _LATEX_NAMES.get(m.group(1), "") + " ", text)
    text = _CURRENCY.sub(lambda m: f"{m.group(2)}{m.group(3) or ''} {_CURRENCY_NAMES[m.group(1)]}", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _ORDINAL.sub(lambda m: ordinal(int(m.group(1))), text)
    text = _FRACTION.sub(r"\1 over \2", text)
    text = _POWER.sub(_power, text)
    text = _MINUS_BETWEEN.sub(" minus ", text)
    text = _NUMBER.sub(lambda m: " " + number_words(m.group()) + " ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = _UNSPOKEN.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _LONE_PUNCT.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
