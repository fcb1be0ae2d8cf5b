"""Streaming equals the published KAME code, bit for bit (fixture: tests/fixtures/kame_stream).

Every scenario of the fixture is replayed through `BatchedGenerator`, alone and as one slot
of a 3-slot batch whose other slots run other scenarios, started at different steps (the
batch grows as they join and shrinks after they leave, `kamevoice.frontend.rows`). At every
step the oracle id the model read, the text token and the audio tokens must equal the
published code's, in fp32 and in bf16; fp32 text logits must agree within 1e-5.

The published API's oracle calls map onto ours as its server uses them: `reset` is a new
oracle (`begin_oracle`); `append` feeds tokens (`feed_oracle`), and an append before any
oracle starts one, as `update_oracle_tokens_streaming` does when it has none.

`KAMEVOICE_STREAM_FIXTURE` may name another directory in the same format (SOURCE.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kamevoice.frontend.checkpoint import build_lm
from kamevoice.frontend.generator import BatchedGenerator
from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.frontend.weights import load_weights, read_state_dict
from tests.conftest import FIXTURES

VENDORED = FIXTURES / "kame_stream"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LOGIT_ATOL = 1e-5  # fp32 text logits: the bound
# Start steps of the three slots of a batch: the second joins a batch of one (it grows to 2),
# the third joins late (3 rows), after the first two have left and the batch has been at most
# half full long enough to shrink (`SHRINK_AFTER_STEPS`) while the third still runs.
BATCH_STARTS = (0, 3, 30)


def fixture_dir() -> Path:
    """The fixture to replay: `KAMEVOICE_STREAM_FIXTURE` when it names a directory, else ours."""
    override = os.environ.get("KAMEVOICE_STREAM_FIXTURE")
    return Path(override) if override and Path(override).is_dir() else VENDORED


@dataclass(frozen=True)
class Fixture:
    lm_kwargs: dict
    steps: int
    scenarios: dict[str, dict[int, list]]  # name -> {step: [[action, ids], ...]}
    user_codes: torch.Tensor  # [steps, n_user]
    ref: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    root = fixture_dir()
    spec = json.loads((root / "scenarios.json").read_text(encoding="utf-8"))
    ref = load_file(str(root / "kame_stream_ref.safetensors"))
    scenarios = {
        name: {int(step): actions for step, actions in script.items()}
        for name, script in spec["scenarios"].items()
    }
    return Fixture(
        spec["lm_kwargs"],
        int(spec["steps"]),
        scenarios,
        ref["user_codes"],
        ref,
        read_state_dict(root / "kame_stream_model.safetensors"),
    )


@pytest.fixture(scope="module")
def models(fixture):
    """The fixture's LM in each dtype, loaded as a checkpoint is (published layout by default)."""
    out = {}
    for name, dtype in DTYPES.items():
        model = build_lm(fixture.lm_kwargs, device="meta", dtype=dtype)
        load_weights(model, fixture.weights, where="kame_stream_model.safetensors")
        assert model.oracle_layout.name == "kame"
        out[name] = model.eval()
    return out


class AudioRecorder(DecodingPolicy):
    """Keeps the audio tokens each slot drew at each step (what upstream's `on_audio_hook` sees)."""

    def __init__(self):
        self.audio: dict[int, list[list[int]]] = {}

    def reset(self, slot: int) -> None:
        self.audio[slot] = []

    def on_audio_tokens(self, tokens: torch.Tensor, slots) -> None:
        for row, slot in enumerate(slots):
            if slot >= 0:
                self.audio[slot].append(tokens[row].tolist())


@dataclass
class Run:
    oracle: list[int]
    text: list[int]
    audio: list[list[int]]
    logits: list[torch.Tensor]


class Driver:
    """Applies one scenario's published oracle calls to one generator slot."""

    def __init__(self, generator: BatchedGenerator, script: dict[int, list]):
        self.generator, self.script = generator, script
        self.handle = generator.start()
        self.step = 0
        self.begun = False
        self.run = Run([], [], [], [])

    def before_step(self) -> None:
        for action, ids in self.script.get(self.step, []):
            if action == "reset" or not self.begun:
                self.generator.begin_oracle(self.handle)
                self.begun = True
            if action == "append" and ids:
                self.generator.feed_oracle(self.handle, ids)
            elif action not in ("reset", "append"):
                raise ValueError(f"scenario action {action!r}")

    def after_step(self, out) -> None:
        slot = self.handle.slot
        self.run.oracle.append(int(out.oracle[slot]))
        self.run.text.append(int(out.text[slot]))
        self.run.logits.append(out.text_logits[slot].clone())
        self.step += 1


def replay(model, fixture: Fixture, names: list[str], starts: list[int], late: str = "drop") -> list[Run]:
    """Scenarios `names`, each in a slot of its own starting at global step `starts[i]`, run for
    the fixture's step count each; returns their runs."""
    recorder = AudioRecorder()
    sampling = SamplingOptions(greedy=True, late_oracle=late)
    n_user = model.n_q - model.dep_q
    drivers: dict[int, Driver] = {}  # every scenario's driver, by its index in `names`
    with BatchedGenerator(model, len(names), sampling, record_text_logits=True, policies=[recorder]) as gen:
        for step in range(max(starts) + fixture.steps):
            for i, start in enumerate(starts):
                if step == start:
                    drivers[i] = Driver(gen, fixture.scenarios[names[i]])
            live = [d for d in drivers.values() if d.step < fixture.steps]
            codes = torch.zeros(len(names), n_user, dtype=torch.long)
            for driver in live:
                driver.before_step()
                codes[driver.handle.slot] = fixture.user_codes[driver.step]
            out = gen.step(codes)
            for driver in live:
                driver.after_step(out)
                if driver.step == fixture.steps:
                    driver.run.audio = recorder.audio[driver.handle.slot]
                    gen.stop(driver.handle)
        if len(names) > 1 and fixture.steps >= max(BATCH_STARTS) + 10:
            # Grown at the second and third joins, shrunk once only the third was left.
            assert gen.resizes >= 3, "the batch should have grown twice and shrunk"
    return [drivers[i].run for i in range(len(names))]


def check(run: Run, fixture: Fixture, dtype: str, name: str) -> None:
    key = f"{dtype}.{name}"
    assert run.oracle == fixture.ref[f"{key}.oracle_read"].tolist(), f"{key}: oracle ids read"
    assert run.text == fixture.ref[f"{key}.text"].tolist(), f"{key}: text tokens"
    assert run.audio == fixture.ref[f"{key}.audio"].tolist(), f"{key}: audio tokens"
    if dtype == "fp32":
        got = torch.stack(run.logits)
        torch.testing.assert_close(got, fixture.ref[f"{key}.text_logits"], rtol=0, atol=LOGIT_ATOL, msg=key)


def published_reads(script: dict[int, list], steps: int, ids_pad: int, start_id: int) -> list[int]:
    """The oracle id the published `LMGen` reads at each step (its rule, restated): a reset before
    step s puts the start id at step s and token i at step s + 1 + i if it arrived by then."""
    tokens: list[int] | None = None
    injected = 0
    reads = []
    for step in range(steps):
        for action, ids in script.get(step, []):
            if action == "reset" or tokens is None:
                tokens, injected = [start_id], step
            if action == "append":
                tokens += list(ids)
        rel = step - injected
        reads.append(tokens[rel] if tokens is not None and 0 <= rel < len(tokens) else ids_pad)
    return reads


def is_on_time(script: dict[int, list], steps: int) -> bool:
    """No token arrives after the step that should read it."""
    tokens, injected = None, 0
    for step in sorted(script):
        for action, ids in script[step]:
            if action == "reset" or tokens is None:
                tokens, injected = 0, step
            if action == "append":
                for i in range(len(ids)):
                    due = injected + 1 + tokens + i
                    if due < step and due < steps:
                        return False
                tokens += len(ids)
    return True


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_each_scenario_alone_equals_the_published_stream(fixture, models, dtype):
    for name in fixture.scenarios:
        (run,) = replay(models[dtype], fixture, [name], [0], late="drop")
        check(run, fixture, dtype, name)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_each_scenario_as_one_slot_of_a_resizing_batch_equals_the_published_stream(fixture, models, dtype):
    names = sorted(fixture.scenarios)
    for i in range(len(names)):
        trio = [names[(i + k) % len(names)] for k in range(3)]
        runs = replay(models[dtype], fixture, trio, list(BATCH_STARTS), late="drop")
        for name, run in zip(trio, runs, strict=True):
            check(run, fixture, dtype, name)


def test_the_published_rule_restated_gives_the_fixtures_oracle_reads(fixture, models):
    ids = models["fp32"].text_ids
    for name, script in fixture.scenarios.items():
        want = fixture.ref[f"fp32.{name}.oracle_read"].tolist()
        assert published_reads(script, fixture.steps, ids.pad, ids.start) == want, name


def test_on_time_scenarios_agree_under_both_late_token_rules(fixture, models):
    """kamevoice places a late token at the next free frame, the published code drops it: on every
    scenario where nothing is late the two are the same stream, bit for bit."""
    on_time = [n for n, s in fixture.scenarios.items() if is_on_time(s, fixture.steps)]
    assert on_time
    for name in on_time:
        (ours,) = replay(models["fp32"], fixture, [name], [0], late="next_free")
        (published,) = replay(models["fp32"], fixture, [name], [0], late="drop")
        assert ours.oracle == published.oracle and ours.text == published.text
        assert ours.audio == published.audio
        check(ours, fixture, "fp32", name)


def test_a_late_token_is_placed_by_kamevoice_and_dropped_by_the_published_rule(fixture, models):
    script = {5: [["reset", []], ["append", [14]]], 8: [["append", [15, 16]]]}  # 15 was due at step 7
    ids = models["fp32"].text_ids
    assert not is_on_time(script, fixture.steps)
    fixture_late = Fixture(fixture.lm_kwargs, fixture.steps, {"late": script}, fixture.user_codes, {}, {})
    (ours,) = replay(models["fp32"], fixture_late, ["late"], [0], late="next_free")
    (published,) = replay(models["fp32"], fixture_late, ["late"], [0], late="drop")
    assert published.oracle == published_reads(script, fixture.steps, ids.pad, ids.start)
    assert published.oracle[5:10] == [ids.start, 14, ids.pad, 16, ids.pad]  # 15 never read
    assert ours.oracle[5:10] == [ids.start, 14, ids.pad, 15, 16]  # 15 one step late, 16 after it
