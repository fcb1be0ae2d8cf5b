"""The frame engine: batched conversations equal solo runs, join/leave freely, run off the caller's thread."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.runtime.engine import Engine, EngineOptions
from tests.frontend.helpers import make_test_codec, small_lm

GREEDY = SamplingOptions(greedy=True)


@pytest.fixture(scope="module")
def parts():
    codec, _ = make_test_codec(num_codebooks=2, bins=32)
    return small_lm(), codec


def _speech(seed: int, frames: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(frames * 1920) / 24000
    return (0.2 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _collect(results: list):
    return lambda r: results.append(r)


def _run_unpaced(parts, plan, max_sessions):
    """plan: name -> (join_step, frames, oracle script {local step: tokens}); returns name -> results."""
    model, codec = parts
    out = {name: [] for name in plan}
    engine = Engine(model, codec, EngineOptions(max_sessions=max_sessions, sampling=GREEDY, paced=False))
    streams = {}
    with engine:
        total = max(j + n for j, n, _ in plan.values())
        for g in range(total):
            for name, (join, frames, _script) in plan.items():
                if g == join:
                    streams[name] = engine.open(_collect(out[name]))
                    streams[name].push(_speech(hash(name) % 7, frames))
                    streams[name].end_input()
            engine.admit()
            for name, (join, frames, script) in plan.items():
                local = g - join
                if name in streams and local in script:
                    streams[name].begin_oracle()
                    streams[name].feed_oracle(script[local])
                if name in streams and local == frames:
                    streams[name].close()
            if engine.ready():
                engine.step()
    return out


def test_batched_conversations_equal_solo_runs_with_joins_and_leaves(parts):
    plan = {
        "a": (0, 14, {3: [10, 11, 12]}),
        "b": (2, 8, {1: [20, 21]}),  # leaves at global step 10 while a and c go on
        "c": (5, 10, {0: [30], 4: [31, 32]}),
    }
    together = _run_unpaced(parts, plan, max_sessions=3)
    for name, spec in plan.items():
        alone = _run_unpaced(parts, {name: (0, spec[1], spec[2])}, max_sessions=3)[name]
        got = together[name]
        assert len(got) == len(alone) == spec[1]
        assert [r.text_id for r in got] == [r.text_id for r in alone]
        assert [r.oracle_id for r in got] == [r.oracle_id for r in alone]
        assert [r.audio_frame for r in got] == [r.audio_frame for r in alone]
        for x, y in zip(got, alone, strict=True):
            if y.pcm is None:
                assert x.pcm is None
            else:
                np.testing.assert_allclose(x.pcm, y.pcm, atol=1e-4)
    # The oracle really entered: a start id at the frame after it was sent.
    assert together["a"][3].oracle_id == parts[0].text_ids.start


def test_paced_engine_runs_on_its_own_thread_and_counts_underruns(parts):
    model, codec = parts
    engine = Engine(model, codec, EngineOptions(max_sessions=2, sampling=GREEDY, paced=True))
    got, threads = [], set()

    def on_frame(r):
        got.append(r)
        threads.add(threading.get_ident())

    engine.start()
    try:
        stream = engine.open(on_frame)
        stream.push(_speech(1, 3))  # 3 frames of audio, then nothing: later frames are underruns
        assert stream.joined.wait(5)
        deadline = time.monotonic() + 20
        while len(got) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        stream.close()
    finally:
        engine.stop()
        engine._exit_streaming()
    assert len(got) >= 8
    assert threading.get_ident() not in threads  # results come from the engine thread
    assert [r.underrun for r in got[:3]] == [False, False, False]
    assert all(r.underrun for r in got[3:8])
    assert engine.stats.underruns >= 5 and engine.stats.steps >= 8
    assert got[0].pcm is None and got[2].pcm is not None and got[2].pcm.shape == (1920,)


def test_bad_audio_is_rejected_without_touching_the_engine(parts):
    model, codec = parts
    with Engine(model, codec, EngineOptions(max_sessions=1, paced=False)) as engine:
        stream = engine.open(lambda r: None)
        from kamevoice.errors import InputError

        with pytest.raises(InputError, match="1-D float"):
            stream.push(np.zeros((2, 100), dtype=np.float32))
        with pytest.raises(InputError, match="NaN"):
            stream.push(np.array([0.0, np.nan], dtype=np.float32))
        stream.push(np.zeros(1920, dtype=np.float32))
        engine.step()
        assert stream.steps == 1


def test_paced_engine_catches_up_when_user_audio_piles_up(parts):
    model, codec = parts
    engine = Engine(model, codec, EngineOptions(max_sessions=1, sampling=GREEDY, paced=True))
    stamps = []
    engine.start()
    try:
        stream = engine.open(lambda r: stamps.append(time.monotonic()))
        assert stream.joined.wait(5)
        time.sleep(0.2)
        stream.push(_speech(2, 12))  # 960 ms of audio arrives at once (e.g. after a network stall)
        deadline = time.monotonic() + 20
        while stream.frames and time.monotonic() < deadline:
            time.sleep(0.01)
        stream.close()
    finally:
        engine.stop()
        engine._exit_streaming()
    assert engine.stats.catch_up_steps >= 5
    # Catch-up steps follow each other as fast as they compute, not one per 80 ms tick.
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) < 0.07


def test_a_stream_silenced_on_demand_is_silent_from_its_next_step_and_alone(parts):
    """`EngineStream.set_silent`: PAD text from the next step until released, for that stream
    only (its neighbour's frames equal its solo run), and nothing once the stream has left."""
    model, codec = parts
    pad = model.text_ids.pad
    seeds = {"a": 3, "b": 4}

    def run(names, silence_at=None, release_at=None):
        engine = Engine(model, codec, EngineOptions(max_sessions=2, sampling=GREEDY, paced=False))
        out = {name: [] for name in names}
        with engine:
            streams = {name: engine.open(_collect(out[name])) for name in names}
            engine.admit()
            for name, stream in streams.items():
                stream.push(_speech(seeds[name], 14))
            for step in range(14):
                if step == silence_at:
                    streams["a"].set_silent(True)
                    assert streams["a"].silent and not streams["b"].silent
                if step == release_at:
                    streams["a"].set_silent(False)
                    assert not streams["a"].silent
                engine.step()
            for stream in streams.values():
                stream.close()
                stream.set_silent(True)  # after leaving: ignored
                assert not stream.silent
        return out, engine.silencer.forced_steps

    together, forced = run(["a", "b"], silence_at=4, release_at=9)
    alone_a, _ = run(["a"])
    alone_b, _ = run(["b"])
    assert forced == 5
    assert [r.text_id for r in together["a"][4:9]] == [pad] * 5
    assert [r.text_id for r in together["a"][:4]] == [r.text_id for r in alone_a["a"][:4]]
    assert [r.text_id for r in together["b"]] == [r.text_id for r in alone_b["b"]]
