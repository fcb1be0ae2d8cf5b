"""The tiny text vocabulary: a SentencePiece model trained on the generated QA and KB text.

Laid out like Moshi's (unk 0, bos 1, eos 2, PAD 3), so every part of kamevoice that
knows Moshi's special ids works with it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kamevoice.data import dialogues
from kamevoice.frontend.model import text_ids_for
from kamevoice.frontend.presets import TINY

# ~1000 pieces: whole words for the closed everyday vocabulary (numbers, units, templates) and
# pieces for the invented names; fits the tiny preset's text_card (1024) with room to spare.
VOCAB_SIZE = 1000
TOKENIZER_NAME = "tokenizer_tiny.model"


@dataclass(frozen=True)
class TokenizerOptions:
    """SentencePiece training settings."""

    vocab_size: int = VOCAB_SIZE


def corpus_lines(
    jsonl_files: Iterable[Path], fields: tuple[str, ...] = ("question", "answer")
) -> Iterator[str]:
    """Text lines of the given JSONL files (dialogue scripts' turns, or QA/KB records' `fields`),
    then the dialogue writer's fixed phrases."""
    for path in jsonl_files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    for turn in record.get("turns", ()):
                        yield turn["text"]
                    for name in fields:
                        if isinstance(record.get(name), str):
                            yield record[name]
    # The words the dialogue stage wraps around questions and answers.
    for template in dialogues.ASK_TEMPLATES + dialogues.ANSWER_TEXT_TEMPLATES:
        yield template.replace("{q}", "").replace("{text}", "").strip()
    yield from dialogues.THANKS_LINES + dialogues.WELCOME_LINES


def train_tokenizer(lines: Iterable[str], out_path: Path, options: TokenizerOptions) -> Path:
    """Train and write the model; a small corpus gets fewer pieces than asked (never more)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)),
        model_writer=model,
        vocab_size=options.vocab_size,
        # BPE, not Moshi's unigram: on this corpus (thousands of invented names) a 1000-piece
        # unigram model spelt everyday words letter by letter ("hundred" -> h u nd re d, five
        # frames of text stream); BPE's merges follow frequency and keep them whole.
        model_type="bpe",
        character_coverage=1.0,
        hard_vocab_limit=False,  # toy corpora cannot fill the vocabulary; take what they give
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=text_ids_for(TINY).pad,  # the model's PAD: its tokenizer never makes that piece
        num_threads=1,  # deterministic piece selection
        minloglevel=2,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_bytes(model.getvalue())
    tmp.replace(out_path)
    return out_path
