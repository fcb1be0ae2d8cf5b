"""Teacher-forced accuracy on the answer's value tokens, with the oracle and without.

Validation's text accuracy counts every text token, most of which (openers, templates, the
question's kind) a model predicts without the oracle; knowledge transfer shows in the tokens
that carry the facts: number words and code letters. This scores the front-end's greedy text
prediction on those tokens, once with the oracle stream and once with every frame PAD, as
training's validation does, on either

- recorded dialogues (`measure`: a build's validation shards, held-out facts), or
- oracle copy episodes over the held-out facts' replies (`measure_copy`: text only, built from
  a knowledge base alone, so it runs on the embedded catalogue without a build).

    kamevoice tiny value-tokens CHECKPOINT SHARDS_DIR [--samples 48]
    kamevoice tiny value-tokens CHECKPOINT [--kb KB.jsonl] [--samples 24]
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
# Copy episodes per pass: 24 x 256 frames hold ~70 replies, ~400 value tokens.
DEFAULT_COPY_SAMPLES = 24
# Seed of the scored copy episodes (training's episodes use the run's data seed, 0 by default).
COPY_SEED = 99
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


def _score(model, batches, values, pad_id: int, text_only: bool) -> ValueTokenAccuracy:
    """Greedy text accuracy over `batches` of `(codes, oracle)`, oracle on and all-PAD."""
    import torch

    hits = {"on": [0, 0], "off": [0, 0]}  # value hits, all-token hits
    totals = [0, 0]
    with torch.no_grad():
        for codes, oracle in batches:
            target = codes[:, 0]
            for mode in hits:
                fed = oracle if mode == "on" else torch.full_like(oracle, pad_id)
                out = model(codes, oracle=fed, text_only=text_only)
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


def _load(checkpoint: str | Path):
    """The front-end's model (fp32, eval mode), tokenizer, oracle ids and value-token ids."""
    import torch

    from kamevoice.frontend.loading import load_frontend

    frontend = load_frontend(checkpoint, device="cpu", load_codec=False)
    model = frontend.model.float().eval()
    ids = model.text_ids
    values = torch.tensor(sorted(value_token_ids(frontend.tokenizer)))
    return model, frontend.tokenizer, ids, values


def measure(checkpoint: str | Path, shards: str | Path, samples: int = DEFAULT_SAMPLES) -> ValueTokenAccuracy:
    """Score `checkpoint` on the first `samples` dialogues of `shards` (see module doc)."""
    from kamevoice.train.batches import ShardMix, collate, sample_options

    model, _, ids, values = _load(checkpoint)
    mix = ShardMix([shards], ids, sample_options(None, model.dep_q, False, 0), 0)
    delays = [model.delays[0], *model.delays[1 : 1 + model.dep_q]]
    count = min(samples, len(mix))
    batches = (
        collate([mix.sample(i, 0) for i in range(start, min(start + BATCH, count))], ids.pad, delays)
        for start in range(0, count, BATCH)
    )
    return _score(model, batches, values, ids.pad, text_only=False)


def measure_copy(
    checkpoint: str | Path, kb: str | Path, samples: int = DEFAULT_COPY_SAMPLES, seed: int = COPY_SEED
) -> ValueTokenAccuracy:
    """Score `checkpoint` on copy episodes over the held-out facts of knowledge base `kb` (a
    KAME-tiny `kb.jsonl`), every reply with every opener (see module doc)."""
    from kamevoice.data.copy_episodes import CopyEpisodeOptions, CopyEpisodes
    from kamevoice.errors import InputError
    from kamevoice.tiny.knowledge import fact_replies
    from kamevoice.train.batches import collate

    replies = fact_replies(Path(kb), held_out=True)
    if not replies:
        raise InputError(f"{kb}: no held-out facts to build copy episodes from")
    model, tokenizer, ids, values = _load(checkpoint)
    episodes = CopyEpisodes(replies, tokenizer, ids, model.n_q, CopyEpisodeOptions(seed=seed))
    batch = collate([episodes.sample(i) for i in range(samples)], ids.pad, [0] * (1 + model.dep_q))
    return _score(model, [batch], values, ids.pad, text_only=True)
