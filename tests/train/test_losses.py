"""Each loss term on tiny logits computed by hand, masking of ignored positions, batch-split invariance."""

from __future__ import annotations

import math

import pytest
import torch
from moshi.models.lm import LMOutput

from kamevoice.train.losses import (
    ACOUSTIC,
    SEMANTIC,
    TEXT_NON_PAD,
    TEXT_PAD,
    LossWeights,
    kame_loss,
    loss_terms,
    objective,
    summarize,
    target_masks,
    term_counts,
)
from tests.frontend.helpers import small_lm

PAD = 3
LN2, LN3 = math.log(2), math.log(3)


def _hand_output():
    """B=1, T=3, text_card 4, dep_q 3 (semantic + 2 acoustic), card 2.

    Text logits: frame 0 one-hot-ish [0, 0, 0, 0] (uniform over 4: CE = ln 4 whatever the target);
    frame 1 [ln 3, 0, 0, 0] (p(0) = 3/6 = 1/2: CE of target 0 = ln 2); frame 2 invalid (NaN, masked).
    Audio logits over 2 classes: [0, 0] gives CE ln 2; [ln 3, 0] gives p(0) = 3/4, CE(0) = ln 4/3,
    CE(1) = ln 4.
    """
    nan = float("nan")
    text_logits = torch.tensor([[[[0.0, 0, 0, 0], [LN3, 0, 0, 0], [nan] * 4]]])  # [1, 1, 3, 4]
    text_mask = torch.tensor([[[True, True, False]]])
    logits = torch.tensor(
        [
            [
                [[0.0, 0], [LN3, 0], [LN3, 0]],  # semantic: CE ln2, ln(4/3), ln(4/3) for targets 0,0,0
                [[LN3, 0], [0, 0], [nan, nan]],  # acoustic 1: targets 1, 0; frame 2 invalid (delay)
                [[0, 0], [LN3, 0], [nan, nan]],  # acoustic 2: target -1 at frame 0 (ignored), 1
            ]
        ]
    )  # [1, 3, 3, 2]
    mask = torch.tensor([[[True, True, True], [True, True, False], [False, True, False]]])
    codes = torch.tensor(
        [
            [
                [PAD, 0, 1],  # text: frame 0 PAD, frame 1 end-of-padding (non-PAD), frame 2 masked
                [0, 0, 0],
                [1, 0, 1],
                [-1, 1, 0],
            ]
        ]
    )
    return LMOutput(logits, mask, text_logits, text_mask), codes


def test_terms_by_hand():
    out, codes = _hand_output()
    terms = loss_terms(out, codes, PAD)
    s, n = terms.sums.tolist(), terms.counts.tolist()
    assert n == [1, 1, 3, 3]
    assert s[TEXT_PAD] == pytest.approx(math.log(4))  # uniform over 4
    assert s[TEXT_NON_PAD] == pytest.approx(LN2)  # target 0 at p = 1/2
    assert s[SEMANTIC] == pytest.approx(LN2 + 2 * math.log(4 / 3))
    # acoustic: [ln3,0] target 1 -> ln 4; [0,0] target 0 -> ln 2; [ln3,0] target 1 -> ln 4.
    assert s[ACOUSTIC] == pytest.approx(2 * math.log(4) + LN2)
    # Accuracies: text non-PAD target 0 is the argmax; the PAD frame's argmax is 0, not 3.
    assert terms.correct.tolist() == [1, 0, 3, 1]  # acoustic frame 1: tie [0, 0] -> class 0, right


def test_weighted_total_by_hand():
    out, codes = _hand_output()
    w = LossWeights()  # 1, 0.5, 100, 1, text 1, audio 1.5; text: the published sum of means
    # kame_finetune: mean(non-PAD CE) + 0.5 x mean(PAD CE); here one target of each.
    text = 1 * LN2 / 1 + 0.5 * math.log(4) / 1
    audio = (100 * (LN2 + 2 * math.log(4 / 3)) + 1 * (2 * math.log(4) + LN2)) / (100 * 3 + 3)
    assert float(kame_loss(out, codes, PAD, w)) == pytest.approx(text + 1.5 * audio)
    mean = LossWeights(text_loss="weighted_mean")  # kamevoice's earlier text term (KAME-tiny's)
    text_mean = (1 * LN2 + 0.5 * math.log(4)) / (1 + 0.5)
    assert float(kame_loss(out, codes, PAD, mean)) == pytest.approx(text_mean + 1.5 * audio)
    only_text = LossWeights(audio_weight=0.0, text_pad=0.0)
    assert float(kame_loss(out, codes, PAD, only_text)) == pytest.approx(LN2)
    summary = summarize(loss_terms(out, codes, PAD), w)
    assert summary["loss/acoustic"] == pytest.approx((2 * math.log(4) + LN2) / 3)
    assert summary["acc/semantic"] == 1.0 and summary["acc/text_pad"] == 0.0


def test_the_published_text_term_with_unequal_counts():
    """mean(non-PAD) + 0.5 x mean(PAD): each mean over its own targets, whatever their numbers."""
    w = LossWeights(audio_weight=0.0)
    sums = torch.tensor([6.0, 10.0, 0.0, 0.0])
    counts = torch.tensor([2.0, 5.0, 0.0, 0.0], dtype=torch.float64)
    assert float(objective(sums, counts, w)) == pytest.approx(6 / 2 + 0.5 * 10 / 5)
    no_pad = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # a term without targets adds 0
    assert float(objective(torch.tensor([6.0, 0.0, 0.0, 0.0]), no_pad, w)) == pytest.approx(3.0)
    mean = LossWeights(audio_weight=0.0, text_loss="weighted_mean")
    assert float(objective(sums, counts, mean)) == pytest.approx((6 + 0.5 * 10) / (2 + 0.5 * 5))


def test_masked_positions_never_reach_the_loss_or_its_gradient():
    out, codes = _hand_output()
    logits = out.logits.clone().requires_grad_(True)
    text_logits = out.text_logits.clone().requires_grad_(True)
    loss = kame_loss(LMOutput(logits, out.mask, text_logits, out.text_mask), codes, PAD, LossWeights())
    loss.backward()
    assert torch.isfinite(loss)  # NaN logits at invalid positions are selected out, not multiplied by 0
    assert torch.all(logits.grad[~out.mask] == 0) and torch.all(text_logits.grad[0, 0, 2] == 0)
    assert torch.isfinite(logits.grad).all()
    # Changing a masked logit or a -1 target's logit changes nothing.
    changed = out.logits.clone()
    changed[0, 2, 0] = torch.tensor([50.0, -50.0])
    assert float(
        kame_loss(LMOutput(changed, out.mask, out.text_logits, out.text_mask), codes, PAD, LossWeights())
    ) == (pytest.approx(float(loss.detach())))


def test_counts_from_codes_match_the_model_masks():
    model = small_lm()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, model.card, (2, model.num_codebooks, 9), generator=g)
    codes[:, 0] = torch.randint(0, 6, (2, 9), generator=g)  # PAD (3) among them
    codes[1, :, 6:] = -1  # a shorter second sample, padded with the zero token
    with torch.no_grad():
        out = model(codes, oracle=torch.full((2, 9), 3))
    text_mask, audio_mask = target_masks(codes, list(model.delays), model.dep_q)
    assert torch.equal(text_mask, out.text_mask) and torch.equal(audio_mask, out.mask)
    assert torch.equal(
        term_counts(codes, list(model.delays), model.dep_q, PAD), loss_terms(out, codes, PAD).counts
    )


def test_split_batches_add_up_to_the_whole():
    """With global counts, the objectives of two halves sum to the objective of the whole batch."""
    model = small_lm()
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, model.card, (4, model.num_codebooks, 7), generator=g)
    codes[:, 0] = torch.randint(0, 6, (4, 7), generator=g)
    oracle = torch.randint(0, model.text_card, (4, 7), generator=g)
    w = LossWeights()
    with torch.no_grad():
        whole = kame_loss(model(codes, oracle=oracle), codes, PAD, w)
        counts = term_counts(codes, list(model.delays), model.dep_q, PAD)
        parts = sum(
            objective(
                loss_terms(model(codes[i : i + 2], oracle=oracle[i : i + 2]), codes[i : i + 2], PAD).sums,
                counts,
                w,
            )
            for i in (0, 2)
        )
    assert float(parts) == pytest.approx(float(whole), rel=1e-6)
