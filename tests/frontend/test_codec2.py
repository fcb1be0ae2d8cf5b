"""Codec 2 as the CPU codec: shapes, streaming = batch, per-row reset, bad input, intelligibility, engine."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("pycodec2")

from kamevoice.errors import CheckpointError, ConfigError, InputError
from kamevoice.frontend.codec2 import MODE_FIELDS, Codec2Codec, Codec2Options

FRAME = 1920
# PocketSphinx word accuracy (task LM) of 1200-mode round-trips of the 5 sentences below, measured
# 2026-11-22: flite 0.947, espeak-ng 1.000 (originals: 1.000, 0.658). The bound leaves ~6 words of margin.
MIN_WORD_ACCURACY = 0.8


@pytest.fixture(scope="module")
def codec():
    return Codec2Codec()


def _speechlike(seed: int, frames: int) -> np.ndarray:
    """A voiced buzz with a moving pitch, syllable-like bursts and a little noise (float32, 24 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames * FRAME) / 24_000
    pitch = 110 + 30 * seed + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 24_000
    buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + seed) * t)
    return (0.15 * buzz * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_shapes_rate_and_token_range(codec):
    assert (codec.sample_rate, codec.frame_size) == (24_000, FRAME)
    assert (codec.num_codebooks, codec.cardinality) == (11, 512)
    assert codec.bitrate == pytest.approx(94 * 12.5)
    pcm = torch.from_numpy(np.stack([_speechlike(0, 5)[:-100], _speechlike(1, 5)[:-100]]))[:, None]
    codes = codec.encode(pcm)  # a partial last frame is zero-padded
    assert codes.shape == (2, 11, 5) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 512
    audio = codec.decode(codes)
    assert audio.shape == (2, 1, 5 * FRAME) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and float(audio.abs().max()) > 0.01


@pytest.mark.parametrize("mode", sorted(MODE_FIELDS))
def test_every_mode_round_trips_its_bits(mode):
    """tokens -> codec-2 bits -> tokens is the identity; every used bit lands in exactly one token."""
    codec = Codec2Codec(Codec2Options(mode=mode))
    layout = codec.layout
    assert sorted(layout.order.tolist()) == sorted(set(layout.order.tolist()))  # a permutation
    tokens = np.random.default_rng(mode).integers(0, codec.cardinality, (3, codec.num_codebooks))
    if layout.pad:  # padding bits are not carried: keep them 0
        tokens[:, -1] &= ~((1 << layout.pad) - 1)
    assert np.array_equal(layout.to_tokens(layout.from_tokens(tokens)), tokens)
    pcm = torch.from_numpy(_speechlike(2, 3))[None, None]
    assert codec.decode(codec.encode(pcm)).shape == (1, 1, 3 * FRAME)


def test_first_codebook_is_the_coarse_envelope():
    """The documented layout: 1200's codebook 0 is the first LSP VQ stage; 1300's the top bits."""
    assert Codec2Codec().layout_table()[0] == [f"lspvq1[{j}]@0" for j in range(9)]
    first = set(Codec2Codec(Codec2Options(mode=1300)).layout_table()[0])
    assert first == {f"{n}[0]@{t}" for n in ("energy", "v4", "lsp1", "lsp2") for t in (0, 1)}


def test_streaming_equals_batch(codec):
    # libcodec2's random phases are per stream with the pinned build: decoding is reproducible.
    assert codec._phase_random.available
    pcm = torch.from_numpy(np.stack([_speechlike(0, 6), _speechlike(3, 6)]))[:, None]
    codes = codec.encode(pcm)
    audio = codec.decode(codes)
    with codec.streaming(2):
        for f in range(6):
            frame_codes = codec.encode_frame(pcm[:, :, f * FRAME : (f + 1) * FRAME])
            assert torch.equal(frame_codes, codes[:, :, f])
            out = codec.decode_frame(frame_codes)
            assert torch.equal(out, audio[:, :, f * FRAME : (f + 1) * FRAME])


def test_reset_renews_only_the_masked_rows(codec):
    a, b = _speechlike(0, 8), _speechlike(4, 8)
    alone_a = codec.encode(torch.from_numpy(a)[None, None])
    fresh_b = codec.encode(torch.from_numpy(b[4 * FRAME :])[None, None])  # b from frame 4, fresh state
    decoded_a = codec.decode(alone_a)
    with codec.streaming(2):
        for f in range(8):
            if f == 4:
                codec.reset(torch.tensor([False, True]))
            frame = torch.from_numpy(np.stack([a, b])[:, f * FRAME : (f + 1) * FRAME])[:, None]
            codes = codec.encode_frame(frame)
            out = codec.decode_frame(codes)
            assert torch.equal(codes[0], alone_a[0, :, f])
            assert torch.equal(out[0], decoded_a[0, :, f * FRAME : (f + 1) * FRAME])
            if f >= 4:
                assert torch.equal(codes[1], fresh_b[0, :, f - 4])


def test_copies_stream_independently(codec):
    """The engine deep-copies the codec for its decoder: the copy has its own state."""
    import copy

    other = copy.deepcopy(codec)
    assert other.options == codec.options and other.num_codebooks == codec.num_codebooks
    with codec.streaming(1), other.streaming(1):
        frame = torch.from_numpy(_speechlike(0, 1))[None, None]
        assert torch.equal(codec.encode_frame(frame), other.encode_frame(frame))


def test_fewer_codebooks_decode_with_filled_refinements():
    codec = Codec2Codec(Codec2Options(mode=1300))
    codes = codec.encode(torch.from_numpy(_speechlike(1, 4))[None, None])
    for k in (1, 6, 12):
        audio = codec.decode(codes[:, :k])
        assert audio.shape == (1, 1, 4 * FRAME) and torch.isfinite(audio).all()
    with codec.streaming(1):
        assert codec.decode_frame(codes[:, :4, 0]).shape == (1, 1, FRAME)


def test_bad_input_is_refused(codec):
    frame = torch.zeros(1, 1, FRAME)
    with pytest.raises(InputError, match="streaming"):
        codec.encode_frame(frame)
    with codec.streaming(2):
        with pytest.raises(InputError, match=r"expected \[2, 1, 1920\]"):
            codec.encode_frame(torch.zeros(2, 1, 1000))
        with pytest.raises(InputError, match=r"expected \[2, 1, 1920\]"):
            codec.encode_frame(frame)  # batch 1 in a batch-2 stream
        with pytest.raises(InputError, match="float"):
            codec.encode_frame(torch.zeros(2, 1, FRAME, dtype=torch.int16))
        with pytest.raises(InputError, match="NaN"):
            codec.encode_frame(torch.full((2, 1, FRAME), float("nan")))
        with pytest.raises(InputError, match=r"token ids must lie in \[0, 512\)"):
            codec.decode_frame(torch.full((2, 11), 512))
        with pytest.raises(InputError, match="k <= 11"):
            codec.decode_frame(torch.zeros(2, 12, dtype=torch.int64))
        with pytest.raises(InputError, match="integer"):
            codec.decode_frame(torch.zeros(2, 11))
        with pytest.raises(InputError, match="mask"):
            codec.reset(torch.tensor([True]))
        with pytest.raises(InputError, match="already streaming"), codec.streaming(1):
            pass
    with pytest.raises(InputError, match=r"\[B, 1, T\]"):
        codec.encode(torch.zeros(1, FRAME))
    with pytest.raises(InputError, match=r"\[B, k <= 11, frames\]"):
        codec.decode(torch.zeros(1, 11, dtype=torch.int64))
    with pytest.raises(ConfigError, match="mode 2400: not supported"):
        Codec2Codec(Codec2Options(mode=2400))
    with pytest.raises(ConfigError, match="integers"):
        Codec2Codec.load({"codec": "codec2", "codec_mode": "fast"})


@pytest.mark.skipif(
    not (shutil.which("flite") and shutil.which("espeak-ng")), reason="needs flite and espeak-ng"
)
def test_round_trips_stay_intelligible_to_pocketsphinx(codec, tmp_path):
    from kamevoice.bench.codec import SphinxScorer, make_speech, round_trip
    from kamevoice.eval.stt import DOMAIN_TEXT, SENTENCES

    samples = make_speech(SENTENCES[:5], ["flite", "espeak"], codec.sample_rate, tmp_path)
    scorer = SphinxScorer("task", DOMAIN_TEXT, codec.sample_rate)
    for voice in ("flite", "espeak"):
        chosen = [s for s in samples if s.voice == voice]
        accuracy = scorer.accuracy(chosen, lambda a: round_trip(codec, a))
        assert accuracy >= MIN_WORD_ACCURACY, (voice, accuracy)
    flite = [s for s in samples if s.voice == "flite"]
    assert scorer.accuracy(flite, lambda a: a) >= MIN_WORD_ACCURACY  # the scorer itself works


def _codec2_lm_kwargs(codec: Codec2Codec) -> dict:
    from tests.frontend.helpers import SMALL_TEST_LM

    k = codec.num_codebooks
    return dict(
        SMALL_TEST_LM, n_q=2 * k, dep_q=k, card=codec.cardinality, delays=[0] + ([0] + [1] * (k - 1)) * 2
    )


def _run_engine(model, codec, sessions: int) -> dict[int, list]:
    from kamevoice.frontend.sampling import SamplingOptions
    from kamevoice.runtime.engine import Engine, EngineOptions

    results = {i: [] for i in range(sessions)}
    options = EngineOptions(max_sessions=2, sampling=SamplingOptions(greedy=True), paced=False)
    with Engine(model, codec, options) as engine:
        streams = [engine.open(results[i].append) for i in range(sessions)]
        engine.admit()
        for i, s in enumerate(streams):
            s.push(_speechlike(i, 6))
            s.end_input()
        while engine.ready():
            engine.step()
    return results


def test_engine_runs_with_codec2(codec):
    from kamevoice.frontend.checkpoint import build_lm

    torch.manual_seed(0)
    model = build_lm(_codec2_lm_kwargs(codec)).eval()
    together = _run_engine(model, codec, sessions=2)
    for got in together.values():
        assert len(got) == 6
        pcms = [r.pcm for r in got if r.pcm is not None]
        assert len(pcms) == 6 - max(model.delays)
        assert all(p.shape == (FRAME,) and p.dtype == np.float32 and np.isfinite(p).all() for p in pcms)
    alone = _run_engine(model, codec, sessions=1)[
        0
    ]  # a conversation's audio does not depend on its neighbour
    assert [r.text_id for r in alone] == [r.text_id for r in together[0]]
    for x, y in zip(alone, together[0], strict=True):
        assert (x.pcm is None and y.pcm is None) or np.array_equal(x.pcm, y.pcm)


def test_checkpoint_names_codec2(tmp_path, spm_path, codec):
    from kamevoice.frontend.checkpoint import build_lm, save_checkpoint
    from kamevoice.frontend.loading import load_checkpoint_codec, load_frontend
    from kamevoice.frontend.resolve import resolve_checkpoint

    kwargs = _codec2_lm_kwargs(codec)
    out = save_checkpoint(
        tmp_path / "ok",
        build_lm(kwargs),
        kwargs,
        tokenizer=spm_path,
        extra={"codec": "codec2", "codec_mode": 1200},
    )
    loaded = load_frontend(out, device="cpu").codec
    assert isinstance(loaded, Codec2Codec) and loaded.options == codec.options

    bad = dict(kwargs, card=256)  # 1200's tokens have 512 values
    out = save_checkpoint(tmp_path / "bad", build_lm(bad), bad, tokenizer=spm_path, extra={"codec": "codec2"})
    with pytest.raises(CheckpointError, match="codebooks of 256 tokens"):
        load_checkpoint_codec(resolve_checkpoint(out))
    out = save_checkpoint(
        tmp_path / "odd", build_lm(kwargs), kwargs, tokenizer=spm_path, extra={"codec": "opus"}
    )
    with pytest.raises(CheckpointError, match="unknown codec 'opus'"):
        load_checkpoint_codec(resolve_checkpoint(out))


@pytest.mark.skipif(not shutil.which("flite"), reason="needs flite")
def test_bench_codec_writes_json(tmp_path, capsys):
    import json

    from kamevoice.cli import main

    out = tmp_path / "codec.json"
    argv = ["bench", "codec", "--modes", "1300", "--voices", "flite", "--sentences", "1", "--keep", "4"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    assert names == [
        "original (24 kHz)",
        "8 kHz band limit only",
        "codec2-1300",
        "codec2-1300, first 4 codebooks",
    ]
    codec = report["results"][2]
    assert codec["bitrate"] == 1300 and codec["num_codebooks"] == 13 and codec["cardinality"] == 256
    assert 0 < codec["frame_median_ms"] <= codec["frame_p99_ms"] and codec["frames_timed"] > 10
    assert set(codec["word_accuracy"]) == {"task/flite"}
    assert "codec2-1300" in capsys.readouterr().out
