"""KAME's training loss (docs/kame.md section 6), term by term.

Four cross-entropy terms, each over the positions `LMOutput` marks valid
(positions invalid because of the acoustic delays, and targets equal to the
zero token -1, e.g. padding between samples of different lengths, are
ignored):

- `text_non_pad`: the inner-monologue text token, targets other than PAD (3);
- `text_pad`: the same on PAD targets;
- `semantic`: audio codebook 0 of the modelled speaker;
- `acoustic`: audio codebooks 1 .. dep_q - 1 of the modelled speaker.

They combine as (S the summed cross-entropy and N the count of a term):

    text  = w_np * S_np / N_np + w_p * S_p / N_p                      (text_loss "sum_of_means")
          = (w_np * S_np + w_p * S_p) / (w_np * N_np + w_p * N_p)     (text_loss "weighted_mean")
    audio = (w_sem * S_sem + w_ac * S_ac) / (w_sem * N_sem + w_ac * N_ac)
    loss  = text_weight * text + audio_weight * audio

The published fine-tuning (kame_finetune `finetune.py` `forward`) computes the text term as
mean(non-PAD) + 0.5 x mean(PAD), the default here; a term without targets adds nothing. Its
audio term is the weighted mean above. `"weighted_mean"` is kamevoice's earlier text term
(KAME-tiny was trained with it). The denominators
are *global* (over every micro-batch and every rank of an optimiser step), so
that a step's gradient does not depend on how its batch is split: see
`objective`.

Defaults (`LossWeights`): PAD 0.5 against non-PAD 1 and semantic 100 against
acoustic 1 are the published fine-tuning recipe's. For the audio-to-text
ratio the sources differ: the paper reports audio weighted 1.5 x text, while
Moshi's fine-tuning code simply adds the two (1 : 1). We default to the
paper's 1.5 because it is the figure KAME reports for the model it
evaluates; `audio_weight = 1.0` gives the moshi-finetune sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from moshi.models.lm import LMOutput
from pydantic import Field

from kamevoice.section import Section

# Index of each term in the [4] tensors of `LossTerms` (and names in logs).
TERMS: tuple[str, ...] = ("text_non_pad", "text_pad", "semantic", "acoustic")
TEXT_NON_PAD, TEXT_PAD, SEMANTIC, ACOUSTIC = range(4)


class LossWeights(Section):
    """Weights of the loss terms; defaults are the published recipe (see module doc)."""

    text_non_pad: float = Field(1.0, ge=0, description="weight of a non-PAD text target in the text mean")
    text_pad: float = Field(0.5, ge=0, description="weight of a PAD text target (published: 0.5)")
    semantic: float = Field(100.0, ge=0, description="weight of a codebook-0 target (published: 100)")
    acoustic: float = Field(1.0, ge=0, description="weight of a target of codebooks 1.. (published: 1)")
    text_loss: Literal["sum_of_means", "weighted_mean"] = Field(
        "sum_of_means",
        description="text term: 'sum_of_means' = text_non_pad x mean(non-PAD) + text_pad x mean(PAD) "
        "(published); 'weighted_mean' = one mean with those weights per target",
    )
    text_weight: float = Field(1.0, ge=0, description="factor of the text term in the total")
    audio_weight: float = Field(
        1.5, ge=0, description="factor of the audio mean in the total (paper: 1.5; moshi-finetune: 1.0)"
    )


@dataclass
class LossTerms:
    """Per-term sums of one forward pass; every tensor is `[4]`, indexed as `TERMS`."""

    sums: torch.Tensor  # summed cross-entropy (carries the gradient)
    counts: torch.Tensor  # number of valid targets (float, no gradient)
    correct: torch.Tensor  # targets whose argmax prediction is right (float, no gradient)

    def detached(self) -> LossTerms:
        return LossTerms(self.sums.detach(), self.counts, self.correct)

    def __add__(self, other: LossTerms) -> LossTerms:
        return LossTerms(self.sums + other.sums, self.counts + other.counts, self.correct + other.correct)


def target_masks(codes: torch.Tensor, delays: list[int], dep_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid-target masks `LMOutput` will return, from `codes` alone (before the forward pass).

    Returns `text_mask [B, 1, T]` and `audio_mask [B, dep_q, T]`: a target is valid unless it is -1
    or its stream's delay pushes its prediction past the end of the sequence.
    """
    T = codes.shape[-1]
    masks = []
    for k in range(1 + dep_q):
        valid = codes[:, k] != -1  # [B, T]
        if delays[k] > 0:
            valid = valid.clone()
            valid[:, max(0, T - delays[k]) :] = False
        masks.append(valid)
    return masks[0][:, None], torch.stack(masks[1:], dim=1)


def term_counts(codes: torch.Tensor, delays: list[int], dep_q: int, pad_id: int) -> torch.Tensor:
    """Counts `[4]` of valid targets per term, as `loss_terms` would count them (float64)."""
    text_mask, audio_mask = target_masks(codes, delays, dep_q)
    is_pad = codes[:, :1] == pad_id
    return torch.tensor(
        [
            float((text_mask & ~is_pad).sum()),
            float((text_mask & is_pad).sum()),
            float(audio_mask[:, :1].sum()),
            float(audio_mask[:, 1:].sum()),
        ],
        dtype=torch.float64,
    )


def _ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy (fp32) and number of argmax hits of `logits [N, C]` against `targets [N]`."""
    if targets.numel() == 0:
        return logits.sum() * 0.0, torch.zeros((), dtype=torch.float64)
    ce = F.cross_entropy(logits.float(), targets, reduction="sum")
    hits = (logits.detach().argmax(-1) == targets).sum().double()
    return ce, hits


def loss_terms(output: LMOutput, codes: torch.Tensor, pad_id: int) -> LossTerms:
    """Per-term cross-entropy sums of a teacher-forced forward pass.

    Args:
        output: `KameLM.forward(codes, oracle=...)`: logits `[B, dep_q, T, card]` with mask
            `[B, dep_q, T]`, text_logits `[B, 1, T, text_card]` with text_mask `[B, 1, T]`.
            Invalid positions hold NaN logits; they are selected out, never multiplied by 0.
        codes: the `[B, K, T]` input, whose streams are also the targets.
        pad_id: the text PAD id (Moshi: 3).
    """
    dep_q = output.logits.shape[1]
    text_targets = codes[:, :1]  # [B, 1, T]
    text_mask = output.text_mask
    is_pad = text_targets == pad_id
    audio_targets = codes[:, 1 : 1 + dep_q]  # [B, dep_q, T]
    audio_mask = output.mask
    selections = [
        (output.text_logits, text_targets, text_mask & ~is_pad),
        (output.text_logits, text_targets, text_mask & is_pad),
        (output.logits[:, :1], audio_targets[:, :1], audio_mask[:, :1]),
        (output.logits[:, 1:], audio_targets[:, 1:], audio_mask[:, 1:]),
    ]
    sums, counts, correct = [], [], []
    for logits, targets, mask in selections:
        ce, hits = _ce_sum(logits[mask], targets[mask])
        sums.append(ce)
        counts.append(float(mask.sum()))
        correct.append(hits)
    return LossTerms(
        torch.stack(sums),
        torch.tensor(counts, dtype=torch.float64),
        torch.stack(correct).to(torch.float64),
    )


def denominators(counts: torch.Tensor, weights: LossWeights) -> tuple[float, float]:
    """The weighted-mean denominators of the text (`"weighted_mean"`) and audio terms for term
    counts `[4]` (0 becomes 1: no target)."""
    text = weights.text_non_pad * float(counts[TEXT_NON_PAD]) + weights.text_pad * float(counts[TEXT_PAD])
    audio = weights.semantic * float(counts[SEMANTIC]) + weights.acoustic * float(counts[ACOUSTIC])
    return (text or 1.0), (audio or 1.0)


def text_term(sums: torch.Tensor, total_counts: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """The text term for term sums `[4]`, normalised by the whole batch's counts (see module doc)."""
    if weights.text_loss == "weighted_mean":
        text_den, _ = denominators(total_counts, weights)
        return (weights.text_non_pad * sums[TEXT_NON_PAD] + weights.text_pad * sums[TEXT_PAD]) / text_den
    non_pad, pad = float(total_counts[TEXT_NON_PAD]) or 1.0, float(total_counts[TEXT_PAD]) or 1.0
    return weights.text_non_pad * sums[TEXT_NON_PAD] / non_pad + weights.text_pad * sums[TEXT_PAD] / pad


def objective(sums: torch.Tensor, total_counts: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """The scalar loss for term sums `[4]` of (part of) a batch, normalised by the whole batch's counts.

    With `total_counts` the counts of the whole optimiser step (all micro-batches, all ranks), the
    objectives of the parts add up to the objective of the whole: splitting a batch changes nothing.
    """
    _, audio_den = denominators(total_counts, weights)
    text = text_term(sums, total_counts, weights)
    audio = (weights.semantic * sums[SEMANTIC] + weights.acoustic * sums[ACOUSTIC]) / audio_den
    return weights.text_weight * text + weights.audio_weight * audio


def kame_loss(output: LMOutput, codes: torch.Tensor, pad_id: int, weights: LossWeights) -> torch.Tensor:
    """The KAME loss of one batch on its own (convenience: `objective` with the batch's own counts)."""
    terms = loss_terms(output, codes, pad_id)
    return objective(terms.sums, terms.counts, weights)


def summarize(terms: LossTerms, weights: LossWeights) -> dict[str, float]:
    """Loggable figures: mean loss and accuracy per term, and the total, for accumulated `terms`."""
    out: dict[str, float] = {}
    sums = terms.sums.detach().double()
    for i, name in enumerate(TERMS):
        n = float(terms.counts[i])
        out[f"loss/{name}"] = float(sums[i]) / n if n else float("nan")
        out[f"acc/{name}"] = float(terms.correct[i]) / n if n else float("nan")
    out["loss"] = float(objective(sums, terms.counts, weights))
    return out
