"""Batched streaming generation: equals the batch forward pass, slots are independent and reusable."""

from __future__ import annotations

import pytest
import torch

from kamevoice.errors import InputError
from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.oracle.layouts import LAYOUTS
from kamevoice.oracle.timeline import OracleEvent, layout_oracle
from tests.frontend.helpers import small_lm

GREEDY = SamplingOptions(greedy=True)


@pytest.fixture(scope="module")
def model():
    return small_lm()


def _user_codes(model, steps: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.card, (steps, model.n_q - model.dep_q), generator=g)


# Oracle script: step -> ("begin" | "feed", tokens). A reset mid-stream (second begin) included.
SCRIPT = {
    3: [("begin", None), ("feed", [10, 11])],
    5: [("feed", [12])],
    9: [("feed", [13, 14])],  # arrives late: its frames have passed
    11: [("begin", None)],  # the newest oracle wins, 13/14 may be cut short
    13: [("feed", [20, 21, 22])],
}


def _run(generator, handle, user, script, steps, slot_row, start_step=0, log=None):
    """Run `steps` steps; returns per-step dicts for `slot_row` and the recorded oracle events."""
    out, events, current = [], [], None
    for s in range(steps):
        for kind, tokens in script.get(s, []):
            tl = generator.timeline(handle)
            if kind == "begin":
                generator.begin_oracle(handle)
                current = {"frame": tl.frame, "tokens": [], "arrivals": []}
                events.append(current)
            else:
                generator.feed_oracle(handle, tokens)
                current["tokens"] += tokens
                current["arrivals"] += [tl.frame] * len(tokens)
        codes = torch.zeros(generator.batch_size, user.shape[1], dtype=torch.long)
        codes[slot_row] = user[s]
        step = generator.step(codes)
        out.append(
            {
                "text": int(step.text[slot_row]),
                "oracle": int(step.oracle[slot_row]),
                "frame": step.frame_tokens[slot_row].clone(),
                "valid": bool(step.frame_valid[slot_row]),
                "logits": step.text_logits[slot_row].clone(),
            }
        )
    # An oracle begun before step 0 starts at frame -1 in layouts whose step 0 reads the timeline:
    # no recorded (training) event can say that, so none is returned for it.
    return out, [OracleEvent(e["frame"], e["tokens"], e["arrivals"]) for e in events if e["frame"] >= 0]


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request, model):
    """Each oracle layout in turn, set on the module's model for one test."""
    before = model.oracle_layout
    model.oracle_layout = LAYOUTS[request.param]
    yield model.oracle_layout
    model.oracle_layout = before


@torch.no_grad()
def test_streaming_equals_batch_forward_with_oracle_reset(model, layout):
    T = 20
    steps = T + max(model.delays)
    user = _user_codes(model, steps, seed=1)
    with BatchedGenerator(model, 1, GREEDY, record_text_logits=True) as gen:
        h = gen.start()
        out, events = _run(gen, h, user, SCRIPT, steps, 0)

    # The ids the model read, in frame coordinates (step s reads frame s - 1), are the timeline's layout.
    assert out[0]["oracle"] == layout.initial_input(model.text_ids)
    streamed = [o["oracle"] for o in out[1 : T + 1]]
    laid_out = layout_oracle(events, T, gen.oracle_ids)
    assert streamed == laid_out.tolist()
    assert streamed.count(model.text_ids.start) == 2 and 13 in streamed and 20 in streamed

    # Rebuild the full token grid the generator produced, and teacher-force it through forward().
    delay = max(model.delays)
    codes = torch.zeros(1, model.num_codebooks, T, dtype=torch.long)
    for t in range(T):
        codes[0, 0, t] = out[t]["text"]
        frame = out[t + delay]["frame"]  # step t + max_delay emits frame t
        assert out[t + delay]["valid"]
        assert int(frame[0]) == out[t]["text"]
        codes[0, 1 : 1 + model.dep_q, t] = frame[1:]
        # Moshi's LMGen reads the user tokens given at step s together with its own tokens of
        # frame s - 1 (the user tokens of step 0 fall on the initial position): frame t = step t + 1.
        codes[0, 1 + model.dep_q :, t] = user[t + 1]
    result = model(codes, oracle=torch.from_numpy(laid_out)[None])

    streamed_logits = torch.stack([o["logits"] for o in out[:T]])  # [T, text_card]
    batch_logits = result.text_logits[0, 0]  # [T, text_card]
    torch.testing.assert_close(streamed_logits, batch_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(batch_logits.argmax(-1), codes[0, 0])  # greedy text == argmax of batch logits
    # Greedy audio: every valid audio position's token is the argmax of the batch pass's logits.
    audio_argmax = result.logits[0].argmax(-1)  # [dep_q, T]
    mask = result.mask[0]
    assert mask.any()
    assert torch.equal(audio_argmax[mask], codes[0, 1 : 1 + model.dep_q][mask])

    # Without the oracle the batch pass disagrees: the oracle really is an input.
    plain = model(codes).text_logits[0, 0]
    assert not torch.allclose(plain[4:], batch_logits[4:], atol=1e-3)


@torch.no_grad()
def test_three_slots_started_at_different_frames_equal_independent_runs(model):
    steps = 16
    starts = {0: 0, 1: 2, 2: 5}
    users = {slot: _user_codes(model, steps, seed=10 + slot) for slot in starts}
    scripts = {
        0: SCRIPT,
        1: {1: [("begin", None), ("feed", [30, 31, 32])]},
        2: {0: [("begin", None)], 4: [("feed", [40, 41])], 6: [("begin", None), ("feed", [42])]},
    }
    # Independent single-slot runs.
    alone = {}
    for slot, start in starts.items():
        with BatchedGenerator(model, 1, GREEDY, record_text_logits=True) as gen:
            h = gen.start()
            alone[slot], _ = _run(gen, h, users[slot], scripts[slot], steps - start, 0)

    # One batch of 3; slot k starts at global step starts[k].
    together = {slot: [] for slot in starts}
    with BatchedGenerator(model, 3, GREEDY, record_text_logits=True) as gen:
        handles = {}
        for g_step in range(steps):
            for slot, start in starts.items():
                if g_step == start:
                    handles[slot] = gen.start(slot)
            codes = torch.zeros(3, model.n_q - model.dep_q, dtype=torch.long)
            for slot, h in handles.items():
                local = g_step - starts[slot]
                for kind, tokens in scripts[slot].get(local, []):
                    gen.begin_oracle(h) if kind == "begin" else gen.feed_oracle(h, tokens)
                codes[slot] = users[slot][local]
            step = gen.step(codes)
            for slot in handles:
                together[slot].append(
                    (
                        int(step.text[slot]),
                        int(step.oracle[slot]),
                        step.frame_tokens[slot].clone(),
                        step.text_logits[slot].clone(),
                    )
                )
            for slot in starts:
                if slot not in handles:
                    assert int(step.text[slot]) == -1 and not bool(step.frame_valid[slot])
    for slot in starts:
        assert len(together[slot]) == len(alone[slot])
        for (text, oracle, frame, logits), ref in zip(together[slot], alone[slot], strict=True):
            assert text == ref["text"] and oracle == ref["oracle"]
            assert torch.equal(frame, ref["frame"])
            torch.testing.assert_close(logits, ref["logits"], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_reused_slot_is_fresh_and_stale_handles_are_ignored(model):
    steps = 10
    user_a, user_b = _user_codes(model, steps, 21), _user_codes(model, steps, 22)
    script_b = {2: [("begin", None), ("feed", [50, 51])]}
    with BatchedGenerator(model, 2, GREEDY, record_text_logits=True) as gen:
        fresh = gen.start(1)
        reference, _ = _run(gen, fresh, user_b, script_b, steps, 1)

    with BatchedGenerator(model, 2, GREEDY, record_text_logits=True) as gen:
        old = gen.start(1)
        _run(gen, old, user_a, {1: [("begin", None), ("feed", [60, 61, 62, 63, 64, 65])]}, 4, 1)
        assert gen.timeline(old).pending > 0  # an oracle still in flight when the conversation ends
        gen.stop(old)
        new = gen.start(1)
        assert new.generation != old.generation and not gen.is_current(old)
        gen.begin_oracle(old)  # a late message from the old conversation's back-end
        gen.feed_oracle(old, [70, 71])
        reused, _ = _run(gen, new, user_b, script_b, steps, 1)
    for got, want in zip(reused, reference, strict=True):
        assert got["text"] == want["text"] and got["oracle"] == want["oracle"]
        assert torch.equal(got["frame"], want["frame"])
        torch.testing.assert_close(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named(model):
    with BatchedGenerator(model, 2, GREEDY) as gen:
        h = gen.start()
        with pytest.raises(InputError, match="user_codes: expected shape"):
            gen.step(torch.zeros(3, 2, dtype=torch.long))
        with pytest.raises(InputError, match="audio token ids"):
            gen.step(torch.full((2, 2), model.card, dtype=torch.long))
        with pytest.raises(InputError, match="oracle token"):
            gen.feed_oracle(h, [model.text_card + 5])
        gen.start()
        with pytest.raises(RuntimeError, match="busy"):
            gen.start()


def test_sampling_reads_the_checkpoint_unless_the_settings_chose(monkeypatch):
    from kamevoice.config import Settings
    from kamevoice.frontend.settings import FrontendSettings

    tiny = {"temp_text": 0.0, "top_k_text": 5}
    plain = SamplingOptions.from_settings(FrontendSettings())
    assert plain == SamplingOptions()  # no lm_gen_config: the settings' defaults (docs/kame.md section 2)
    from_checkpoint = SamplingOptions.from_settings(FrontendSettings(), tiny)
    assert (from_checkpoint.text_temperature, from_checkpoint.text_top_k) == (0.0, 5)
    assert (from_checkpoint.temperature, from_checkpoint.top_k, from_checkpoint.greedy) == (0.8, 250, False)
    monkeypatch.setenv("KAMEVOICE_FRONTEND__TEXT_TEMPERATURE", "0.9")  # a user's choice wins
    chosen = SamplingOptions.from_settings(Settings().frontend, tiny)
    assert (chosen.text_temperature, chosen.text_top_k) == (0.9, 5)
    greedy = SamplingOptions.from_settings(FrontendSettings(top_k=10), {"use_sampling": False, "top_k": 3})
    assert greedy.greedy and (greedy.temperature, greedy.text_temperature, greedy.top_k) == (0.0, 0.0, 10)


def test_oracle_following_reads_the_checkpoints_section_unless_the_settings_chose(monkeypatch):
    from kamevoice.config import Settings
    from kamevoice.errors import ConfigError
    from kamevoice.frontend.settings import FrontendSettings

    assert SamplingOptions.from_settings(FrontendSettings()).oracle_follow_bias == 0.0  # off by default
    tiny = {"codec": "codec2", "oracle_follow_bias": 4}
    assert SamplingOptions.from_settings(FrontendSettings(), {}, tiny).oracle_follow_bias == 4.0
    monkeypatch.setenv("KAMEVOICE_FRONTEND__ORACLE_FOLLOW_BIAS", "0")  # a user's choice wins: off
    assert SamplingOptions.from_settings(Settings().frontend, {}, tiny).oracle_follow_bias == 0.0
    for bad in ("4", -1, True):
        with pytest.raises(ConfigError, match="oracle_follow_bias"):
            SamplingOptions.from_settings(FrontendSettings(), {}, {"oracle_follow_bias": bad})
