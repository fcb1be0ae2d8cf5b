"""Invented facts for KAME-tiny: a knowledge base only the back-end can know.

Shops and products get invented two-word names ("Quiet Harbor Market", "the
amber falcon kettle") and random prices, codes, stock levels and opening
hours, so no pretrained model, and no tiny model trained on a few thousand
dialogues, can guess them: a right answer has to come through the oracle
stream.

Two outputs from one seeded fact list:

- the knowledge base (JSONL, `question` / `answer`, read by
  `kamevoice.backend.llm.knowledge.KnowledgeProvider`): one entry per fact,
  the answer a full spoken sentence (what the oracle streams);
- QA JSONL for `kamevoice data dialogues` (plain preset, answer style
  `reply`: `id`, `question`, `answer`): several paraphrased questions per
  fact, the answer the assistant's whole reply ("Let me check. The amber
  falcon kettle costs forty two dollars."), numbers always as words.

Facts are split into training facts (asked in training dialogues) and
held-out facts (never heard in training; for evaluating knowledge injection).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kamevoice.data.spoken import cardinal

# Names are two everyday words ("the amber falcon kettle", "Quiet Harbor Market"): speech
# recognisers spell them right, so the back-end can find the fact from what it hears (names of
# random syllables came back respelt, "rufugi" -> "roof you get", and retrieval found 1 in 3),
# while prices, codes, stock and hours stay random: nothing a model could guess or memorise.
# 80 x 80 = 6,400 pairs, each used once, ample for a few thousand facts.
NAME_FIRST = (
    "amber", "autumn", "bold", "brave", "bright", "calm", "clever", "copper", "cosy", "crimson",
    "dusty", "early", "eastern", "famous", "fancy", "frosty", "gentle", "giant", "golden", "grand",
    "green", "happy", "hidden", "honest", "humble", "icy", "jolly", "lazy", "little", "lively",
    "lucky", "magic", "merry", "misty", "modern", "noble", "northern", "ocean", "orange", "patient",
    "pink", "plain", "polar", "proud", "purple", "quiet", "rapid", "royal", "rusty", "sandy",
    "secret", "silent", "silver", "simple", "sleepy", "smooth", "snowy", "solar", "southern", "spring",
    "steady", "stormy", "sturdy", "summer", "sunny", "sweet", "swift", "tiny", "velvet", "violet",
    "warm", "western", "wild", "windy", "winter", "wise", "wooden", "yellow", "young", "zesty",
)  # fmt: skip
NAME_SECOND = (
    "anchor", "apple", "arrow", "badger", "bamboo", "beacon", "bear", "bison", "bridge", "brook",
    "butter", "cactus", "canyon", "castle", "cedar", "cherry", "cliff", "clover", "comet", "coral",
    "cotton", "daisy", "desert", "dolphin", "dragon", "eagle", "falcon", "feather", "forest", "fox",
    "garden", "ginger", "glacier", "harbor", "hawk", "hazel", "heron", "hill", "island", "jungle",
    "lagoon", "lemon", "lion", "lotus", "maple", "meadow", "meteor", "moon", "mountain", "oak",
    "otter", "owl", "panda", "parrot", "peach", "pebble", "pepper", "pine", "planet", "pony",
    "rabbit", "raven", "river", "robin", "rocket", "saddle", "salmon", "shadow", "spruce", "squirrel",
    "star", "thunder", "tiger", "tulip", "valley", "walnut", "willow", "wolf", "zebra", "lantern",
)  # fmt: skip
SHOP_KINDS = ("Market", "Store", "Bazaar", "Outlet", "Emporium", "Depot", "Gallery", "Corner")
PRODUCT_KINDS = ("lamp", "kettle", "jacket", "chair", "blender", "backpack", "clock", "umbrella",
                 "teapot", "scarf", "radio", "basket", "candle", "mirror", "pillow", "toaster")  # fmt: skip
# Products per shop: each shop gives one opening-hours fact and three facts per product,
# so a shop holds 1 + 3 x 5 = 16 facts.
PRODUCTS_PER_SHOP = 5
# Names one shop's facts use: the shop's and its products'.
NAMES_PER_SHOP = 1 + PRODUCTS_PER_SHOP
# Share of facts held out of the training dialogues (asked only at evaluation).
HELD_OUT_SHARE = 0.1
# Letters of product codes: ones espeak-ng says distinctly as letter names.
CODE_LETTERS = "BDFKLMRTVZ"
CODE_DIGITS = 3

# Paraphrased questions per kind; `{p}` a product, `{s}` a shop. Template 0, the knowledge-base
# question, gathers the words of all the others (BM25 matches words, and the facts of one product
# share its name: the kind's words must decide); templates 1.. are what callers ask in dialogues.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "price": (
        "What is the price of the {p}, how much does it cost, what do you charge for it?",
        "What is the price of the {p}?",
        "How much does the {p} cost?",
        "Can you tell me the price of the {p}?",
        "What do you charge for the {p}?",
    ),
    "code": (
        "What is the product code of the {p}, which item code does it have?",
        "What is the product code of the {p}?",
        "What's the code for the {p}?",
        "Which product code does the {p} have?",
        "Can you give me the item code of the {p}?",
    ),
    "stock": (
        "How many of the {p} are in stock, what is the stock level, how many units are left?",
        "How many of the {p} are in stock?",
        "What is the stock level of the {p}?",
        "How many units of the {p} are left in stock?",
        "Is the {p} in stock, how many are there?",
    ),
    "hours": (
        "What are the opening hours of {s}, when is it open, what time does it open and close?",
        "When is {s} open?",
        "What are the opening hours of {s}?",
        "What time does {s} open and close?",
    ),
}


@dataclass(frozen=True)
class Fact:
    """One invented fact: what it is about, the short reply, the KB sentence, its key words."""

    id: str
    kind: str
    subject: str  # the product ("amber falcon kettle", without "the") or the shop
    short: str  # spoken reply phrase, e.g. "forty two dollars"
    sentence: str  # the knowledge-base answer, a full spoken sentence
    held_out: bool

    @property
    def key_words(self) -> tuple[str, ...]:
        """The words an answer must contain to be right (the reply phrase's words)."""
        return tuple(self.short.replace(",", "").split())

    def question(self, template: int = 0) -> str:
        """The fact's question in paraphrase `template`."""
        return QUESTIONS[self.kind][template].format(p=self.subject, s=self.subject)


@dataclass(frozen=True)
class KnowledgeOptions:
    """How many facts, and the seed of every choice."""

    facts: int = 3000
    seed: int = 0
    held_out_share: float = HELD_OUT_SHARE


class _Names:
    """Fresh two-word names, never the same pair twice in one knowledge base."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def fresh(self) -> str:
        if len(self.used) == len(NAME_FIRST) * len(NAME_SECOND):
            raise ValueError("out of names: raise the name lists or ask for fewer facts")
        while True:
            name = f"{self.rng.choice(NAME_FIRST)} {self.rng.choice(NAME_SECOND)}"
            if name not in self.used:
                self.used.add(name)
                return name


def _hour(h: int) -> str:
    """24-hour clock -> spoken: 9 -> 'nine in the morning', 18 -> 'six in the evening'."""
    if h < 12:
        return f"{cardinal(h)} in the morning"
    if h == 12:
        return "noon"
    return f"{cardinal(h - 12)} in the {'afternoon' if h < 17 else 'evening'}"


def _price(rng: random.Random) -> str:
    dollars, cents = rng.randint(2, 399), rng.choice((0, 0, 25, 50, 75, 99))
    text = f"{cardinal(dollars)} dollars"
    return text + (f" and {cardinal(cents)} cents" if cents else "")


def _code(rng: random.Random) -> str:
    letters = " ".join(rng.choice(CODE_LETTERS) for _ in range(2))
    digits = " ".join(cardinal(rng.randint(0, 9)) for _ in range(CODE_DIGITS))
    return f"{letters} {digits}"


def _shop_facts(index: int, rng: random.Random, names: _Names) -> Iterator[Fact]:
    shop = f"{names.fresh().title()} {rng.choice(SHOP_KINDS)}"
    opens, closes = rng.randint(6, 11), rng.randint(13, 22)
    hours = f"from {_hour(opens)} to {_hour(closes)}"
    yield Fact(f"s{index:04d}-hours", "hours", shop, hours, f"{shop} is open {hours}.", False)
    for j in range(PRODUCTS_PER_SHOP):
        product = f"{names.fresh()} {rng.choice(PRODUCT_KINDS)}"
        base = f"s{index:04d}-p{j}"
        price = _price(rng)
        yield Fact(f"{base}-price", "price", product, price, f"The {product} costs {price}.", False)
        code = _code(rng)
        yield Fact(
            f"{base}-code", "code", product, code, f"The product code of the {product} is {code}.", False
        )
        count = rng.randint(0, 120)
        stock = f"{cardinal(count)} in stock"
        yield Fact(f"{base}-stock", "stock", product, stock, f"There are {stock} of the {product}.", False)


def generate_facts(options: KnowledgeOptions) -> list[Fact]:
    """`options.facts` invented facts, the same list for the same options."""
    rng = random.Random(f"kame-tiny-facts:{options.seed}")
    names = _Names(rng)
    facts: list[Fact] = []
    shop = 0
    while len(facts) < options.facts:
        facts.extend(_shop_facts(shop, rng, names))
        shop += 1
    facts = facts[: options.facts]
    # At least one fact on each side: validation asks held-out facts, training the rest.
    count = min(len(facts) - 1, max(1, round(len(facts) * options.held_out_share)))
    held = set(random.Random(f"kame-tiny-held-out:{options.seed}").sample(range(len(facts)), count))
    return [Fact(f.id, f.kind, f.subject, f.short, f.sentence, i in held) for i, f in enumerate(facts)]


# Replies open with a few words that need no knowledge, then state the fact. In speech the
# opener buys ~1 s, in which the oracle (laid out one token per 80 ms frame from when the back-end
# answers) gets ahead of the words the front-end must copy from it; without it the answer words
# arrived only just in time, or after (docs/results.md, "Why the defaults").
REPLY_OPENERS = ("Let me check.", "One moment.", "Let me see.", "Sure, let me look.")
# What the back-end streams while nothing in the catalogue matches what it heard: like the
# offline simulator's level-0 predictions (`kamevoice.data.oracles`), which the model saw while
# a question was still unclear, and unlike a reply opener.
NO_MATCH_REPLY = "Okay, I am following you so far, go on and tell me the rest."
# How the knowledge base words its answers: a training reply (opener + the fact's sentence), so
# that the live oracle reads like the true replies the front-end saw as oracles in training.
KB_ANSWER = "{opener} {sentence}"


def reply_text(fact: Fact, opener: str = REPLY_OPENERS[0]) -> str:
    """The assistant's spoken reply stating `fact`: an opener, then the fact's sentence."""
    return KB_ANSWER.format(opener=opener, sentence=fact.sentence)


def _kb_file_records(kb_path: Path) -> Iterator[dict]:
    """The records of a `kb.jsonl` (blank lines skipped)."""
    for line in Path(kb_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def fact_replies(kb_path: Path, held_out: bool) -> list[str]:
    """Every reply, with every opener, to the held-out (or the training) facts of a `kb.jsonl`:
    the texts oracle copy episodes are built from."""
    return [
        KB_ANSWER.format(opener=o, sentence=r["sentence"])
        for r in _kb_file_records(kb_path)
        if bool(r.get("held_out")) == held_out
        for o in REPLY_OPENERS
    ]


def catalogue_names(kb_path: Path) -> set[str]:
    """The two-word names (lower case, "amber falcon") that a `kb.jsonl`'s sentences use."""
    first, second = set(NAME_FIRST), set(NAME_SECOND)
    names = set()
    for record in _kb_file_records(kb_path):
        words = record["sentence"].lower().replace(".", "").split()
        names |= {f"{a} {b}" for a, b in itertools.pairwise(words) if a in first and b in second}
    return names


def novel_fact_replies(kb_path: Path, facts: int, seed: int) -> list[str]:
    """Replies, each with a seeded opener, stating `facts` invented facts about names the
    knowledge base at `kb_path` never uses: for oracle copy episodes only.

    A tiny model can memorise the training facts' names well enough to say them without looking
    at the oracle, and then, on a held-out fact, says a name it knows (the shipped model of
    session 3 said 7% of the held-out answers' name words). On names no knowledge base fact
    uses, paired with random values, copying from the oracle is the only way to be right.
    """
    rng = random.Random(f"kame-tiny-novel:{seed}")
    taken = catalogue_names(kb_path)
    names = _Names(rng)
    replies: list[str] = []
    shop = 0
    while len(replies) < facts:
        if len(names.used | taken) + NAMES_PER_SHOP > len(NAME_FIRST) * len(NAME_SECOND):
            names = _Names(rng)  # every free name was used once: deal them again, with new facts
        names.used |= taken
        for fact in _shop_facts(shop, rng, names):
            replies.append(reply_text(fact, rng.choice(REPLY_OPENERS)))
        shop += 1
    return replies[:facts]


def kb_records(facts: Iterable[Fact]) -> Iterator[dict]:
    """Knowledge-base JSONL records: the KB provider reads `question` and `answer`.

    `sentence` keeps the fact as a full sentence, for people reading the file.
    """
    for f in facts:
        yield {"id": f.id, "question": f.question(0), "answer": reply_text(f),
               "sentence": f.sentence, "kind": f.kind, "key_words": list(f.key_words),
               "held_out": f.held_out}  # fmt: skip


def qa_records(facts: list[Fact], dialogues: int, seed: int, held_out: bool = False) -> Iterator[dict]:
    """`dialogues` QA records (plain preset) over the training (or held-out) facts.

    Facts and paraphrases are dealt round-robin from a seeded shuffle, so every fact is asked
    before any is asked twice, each time in a different paraphrase where it can be.
    """
    pool = [f for f in facts if f.held_out == held_out]
    if not pool or dialogues <= 0:
        return
    rng = random.Random(f"kame-tiny-qa:{seed}:{held_out}")
    order = pool[:]
    rng.shuffle(order)
    for n in range(dialogues):
        fact = order[n % len(order)]
        rounds = n // len(order)
        asked = len(QUESTIONS[fact.kind]) - 1  # the paraphrases, template 0 excluded
        template = 1 + (rounds + rng.randrange(asked)) % asked
        reply = reply_text(fact, rng.choice(REPLY_OPENERS))
        yield {"id": f"{fact.id}-q{n:05d}", "question": fact.question(template), "answer": reply,
               "fact": fact.id, "key_words": list(fact.key_words)}  # fmt: skip


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records one per line (atomically: a temporary file, then renamed); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


@dataclass(frozen=True)
class KnowledgeFiles:
    """Where `write_knowledge` put its files, and how many records each holds."""

    kb: Path
    qa_train: Path
    qa_held_out: Path
    facts: int
    train_dialogues: int
    held_out_questions: int


def write_knowledge(out_dir: Path, options: KnowledgeOptions, dialogues: int) -> KnowledgeFiles:
    """Write `kb.jsonl`, `qa_train.jsonl` (`dialogues` items), `qa_held_out.jsonl` (one a held-out fact)."""
    facts = generate_facts(options)
    kb = out_dir / "kb.jsonl"
    qa_train, qa_held = out_dir / "qa_train.jsonl", out_dir / "qa_held_out.jsonl"
    n_kb = write_jsonl(kb, kb_records(facts))
    n_train = write_jsonl(qa_train, qa_records(facts, dialogues, options.seed))
    n_held = sum(f.held_out for f in facts)
    n_held = write_jsonl(qa_held, qa_records(facts, n_held, options.seed, held_out=True))
    return KnowledgeFiles(kb, qa_train, qa_held, n_kb, n_train, n_held)
