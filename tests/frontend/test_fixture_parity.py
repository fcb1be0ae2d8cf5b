"""Bit-for-bit compatibility with the upstream tiny-LM fixture (moshi's and KAME's test assets).

The figures come from the published `LMModel.forward` (SakanaAI/kame `lm.py`), whose oracle input at
position 0 is the start id: the `kame-forward` layout. The published fine-tuning and inference read
PAD there instead (the default `kame` layout, docs/kame.md section 3); the last test shows that the
two differ only by that input.
"""

from __future__ import annotations

import pytest
import torch
from moshi.utils.utils import cross_entropy
from safetensors.torch import load_file

from kamevoice.frontend.checkpoint import build_lm
from kamevoice.frontend.presets import preset
from kamevoice.frontend.weights import load_weights, read_state_dict
from kamevoice.oracle.layouts import KAME, KAME_FORWARD
from tests.conftest import FIXTURES

ASSETS = FIXTURES / "kame_lm"
REL_TOL = 1e-6


@pytest.fixture(scope="module")
def fixture_lm():
    torch.manual_seed(1234)
    model = build_lm(preset("fixture"), dtype=torch.float32)
    load_weights(model, read_state_dict(ASSETS / "test_lm_model.safetensors"), where="fixture")
    model.oracle_layout = KAME_FORWARD  # the convention of the code that made the figures
    return model.eval()


@pytest.fixture(scope="module")
def codes():
    return load_file(ASSETS / "test_lm_codes.safetensors")["codes"]


@pytest.fixture(scope="module")
def reference():
    return load_file(ASSETS / "test_lm_out.safetensors")


def _mean_ce(logits, targets, mask):
    return cross_entropy(logits, targets, mask).mean(dim=(0, 2))


def _assert_close(got: torch.Tensor, want: list[float]) -> None:
    want_t = torch.tensor(want, dtype=got.dtype)
    rel = ((got - want_t).abs() / want_t).amax().item()
    # The published figures carry 7 significant digits; 2e-6 covers that rounding.
    assert rel <= 2e-6, (got.tolist(), want)


@torch.no_grad()
def test_legacy_checkpoint_matches_reference_without_oracle(fixture_lm, codes, reference):
    out = fixture_lm(codes)
    assert (reference["mask"] == out.mask).all()
    assert (reference["text_mask"] == out.text_mask).all()
    ce = _mean_ce(out.logits, codes[:, 1:], out.mask)
    ce_ref = _mean_ce(reference["logits"], codes[:, 1:], out.mask)
    assert ((ce - ce_ref).abs() / ce_ref).amax() <= REL_TOL
    tce = _mean_ce(out.text_logits, codes[:, :1], out.text_mask)
    tce_ref = _mean_ce(reference["text_logits"], codes[:, :1], out.text_mask)
    assert ((tce - tce_ref).abs() / tce_ref).amax() <= REL_TOL
    _assert_close(ce, [2.973440, 2.547856, 1.511409])
    _assert_close(tce, [3.965057])


@torch.no_grad()
def test_all_pad_oracle_gives_published_figures(fixture_lm, codes, reference):
    # A legacy checkpoint has no oracle_emb: it must have been copied from text_emb.
    assert torch.equal(fixture_lm.oracle_emb.weight, fixture_lm.text_emb.weight)
    pad = torch.full((codes.shape[0], codes.shape[2]), fixture_lm.text_ids.pad, dtype=torch.long)
    out = fixture_lm(codes, oracle=pad)
    assert (reference["mask"] == out.mask).all()
    assert (reference["text_mask"] == out.text_mask).all()
    _assert_close(_mean_ce(out.logits, codes[:, 1:], out.mask), [2.955057, 2.506882, 1.506510])
    _assert_close(_mean_ce(out.text_logits, codes[:, :1], out.text_mask), [3.911907])


@torch.no_grad()
def test_oracle_changes_the_output(fixture_lm, codes):
    """The oracle must reach the transformer: different ids, different logits."""
    pad = torch.full((3, 7), fixture_lm.text_ids.pad, dtype=torch.long)
    other = pad.clone()
    other[:, 2] = 17
    a = fixture_lm(codes, oracle=pad).text_logits
    b = fixture_lm(codes, oracle=other).text_logits
    # Frame 2's oracle is read at step 3: steps 0-2 are unchanged, step 3 differs.
    assert torch.equal(a[:, :, :3], b[:, :, :3])
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])


@torch.no_grad()
def test_published_training_layout_differs_from_the_forward_pass_only_at_position_0(fixture_lm, codes):
    """`kame` (training, inference) reads PAD at position 0 where `kame-forward` reads the start id:
    the same pass, with the start id's oracle embedding replaced by PAD's at step 0."""
    pad = torch.full((codes.shape[0], codes.shape[2]), fixture_lm.text_ids.pad, dtype=torch.long)
    forward = fixture_lm(codes, oracle=pad)
    fixture_lm.oracle_layout = KAME
    try:
        published = fixture_lm(codes, oracle=pad)
        table, ids = fixture_lm.oracle_emb.weight, fixture_lm.text_ids
        start_row = table[ids.start].clone()
        # Make the start id embed as PAD does: the forward pass's position 0 becomes the published one.
        table[ids.start] = table[ids.pad]
        fixture_lm.oracle_layout = KAME_FORWARD
        patched = fixture_lm(codes, oracle=pad)
        table[ids.start] = start_row
    finally:
        fixture_lm.oracle_layout = KAME_FORWARD
    assert not torch.allclose(published.text_logits[:, :, 0], forward.text_logits[:, :, 0])
    torch.testing.assert_close(published.text_logits, patched.text_logits, rtol=0, atol=0, equal_nan=True)
