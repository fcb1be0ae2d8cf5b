"""Teacher-forced accuracy on the answer's value tokens, with the oracle and without.

Validation's text accuracy counts every text token, most of which (openers, templates, the
question's kind) a model predicts without the oracle; knowledge transfer shows in the tokens
that carry the facts: number words and code letters. This scores the front-end's greedy text
prediction on those tokens of recorded dialogues (validation shards: held-out facts), once with
their oracle stream and once with every frame PAD, as training's validation does.

    kamevoice tiny value-tokens CHECKPOINT SHARDS_DIR [--samples 48]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kamevoice.data.spoken import cardinal
from kamevoice.tiny.knowledge import CODE_LETTERS

# Number words up to 99 (and "hundred") cover every price, stock count, hour and code digit.
NUMBER_LIMIT = 100
# Validation samples per pass: ~190 value tokens at 48 tiny dialogues.
DEFAULT_SAMPLES = 48
BATCH = 8


@dataclass(frozen=True)
class ValueTokenAccuracy:
    """Greedy text accuracy on value tokens (and on all non-PAD tokens) with and without the oracle."""

    with_oracle: float
    without_oracle: float
    value_tokens: int
    all_with_oracle: float
    all_without_oracle: float

    def as_dict(self) -> dict:
        return {
            "value_token_accuracy_oracle": self.with_oracle,
            "value_token_accuracy_no_oracle": self.without_oracle,
            "value_tokens": self.value_tokens,
            "text_accuracy_oracle": self.all_with_oracle,
            "text_accuracy_no_oracle": self.all_without_oracle,
        }


def value_token_ids(tokenizer) -> set[int]:
    """Ids of the pieces that are a whole number word (lower case: "One moment" is an opener) or a
    code letter (upper case: codes are spelt in capitals)."""
    words = {w for n in range(NUMBER_LIMIT) for w in cardinal(n).replace("-", " ").split()}
    words |= {"hundred", *CODE_LETTERS}
    pieces = (tokenizer.id_to_piece(i).replace("\u2581", "") for i in range(tokenizer.vocab_size()))
    return {i for i, piece in enumerate(pieces) if piece in words}


def measure(checkpoint: str | Path, shards: str | Path, samples: int = DEFAULT_SAMPLES) -> ValueTokenAccuracy:
    """Score `checkpoint` on the first `samples` dialogues of `shards` (see module doc)."""
    import torch

    from kamevoice.frontend.loading import load_frontend
    from kamevoice.oracle.timeline import OracleIds
    from kamevoice.train.batches import ShardMix, collate, sample_options

    frontend = load_frontend(checkpoint, device="cpu", load_codec=False)
    model = frontend.model.float().eval()
    values = torch.tensor(sorted(value_token_ids(frontend.tokenizer)))
    ids = OracleIds(start=model.oracle_start_id, pad=model.oracle_pad_id)
    mix = ShardMix([shards], ids, sample_options(None, model.dep_q, False, 0), 0)
    delays = [model.delays[0], *model.delays[1 : 1 + model.dep_q]]
    count = min(samples, len(mix))
    hits = {"on": [0, 0], "off": [0, 0]}  # value hits, all-token hits
    totals = [0, 0]
    with torch.no_grad():
        for start in range(0, count, BATCH):
            codes, oracle = collate([mix.sample(i, 0) for i in range(start, min(start + BATCH, count))],
                                    ids.pad, delays)  # fmt: skip
            target = codes[:, 0]
            for mode in hits:
                fed = oracle if mode == "on" else torch.full_like(oracle, ids.pad)
                out = model(codes, oracle=fed)
                right = out.text_logits[:, 0].argmax(-1) == target
                text = out.text_mask[:, 0] & (target != model.existing_text_padding_id) & (target >= 0)
                value = text & torch.isin(target, values)
                hits[mode][0] += int((right & value).sum())
                hits[mode][1] += int((right & text).sum())
                if mode == "on":
                    totals[0] += int(value.sum())
                    totals[1] += int(text.sum())
    n_value, n_text = max(1, totals[0]), max(1, totals[1])
    return ValueTokenAccuracy(hits["on"][0] / n_value, hits["off"][0] / n_value, totals[0],
                              hits["on"][1] / n_text, hits["off"][1] / n_text)  # fmt: skip
