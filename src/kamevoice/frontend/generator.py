"""Batched streaming generation: N conversations share one model as N slots.

Each slot is one row of Moshi's `LMGen` batch. Slots start, reset and stop on
their own (as masks: `reset_streaming(mask)`, `set_exec_mask(mask)`), so a
reset costs the other slots nothing, and a slot reused after a reset behaves
as a fresh one. Each slot owns its `OracleTimeline`; starting a slot makes a
new one, so no oracle of a finished conversation can reach the next (the
published code's defect 1).

Thread model: the engine thread calls `step()`; other threads (the asyncio
back-end) talk to a slot only through `begin_oracle` / `feed_oracle`, which
append to the slot's inbox (a deque: atomic append/popleft, no lock). Each
message carries the slot's *generation*; messages from a conversation that
has since stopped are stale and dropped (the cancel-scope pattern).

The oracle reaches the model through `LMGen`'s per-step sum condition,
exactly as `KameLM.forward` passes it in the batch pass.

Decoding policies (`kamevoice.frontend.policies`) run through one protocol at
fixed points of each step; this module is the only one that attaches to moshi's
hooks. The caller's policies run first (forcing ones), then oracle following when
the sampling asks for it (`SamplingOptions.oracle_follow_bias`). Recorded logits
are the model's own, before any policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from moshi.models.lm import LMGen

from kamevoice.errors import InputError
from kamevoice.frontend.model import KameLM
from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.policies.oracle_follow import OracleFollower
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.oracle.timeline import OracleTimeline

# Messages a slot's inbox can hold: (generation, "begin", None) or (generation, "feed", tokens).
_BEGIN, _FEED = "begin", "feed"


@dataclass(frozen=True)
class SlotHandle:
    """A conversation's claim on a slot; stale once the slot is stopped or restarted."""

    slot: int
    generation: int


@dataclass
class _Slot:
    timeline: OracleTimeline
    generation: int = 0
    active: bool = False
    steps: int = 0  # steps taken since start
    inbox: deque = field(default_factory=deque)


@dataclass
class StepOutput:
    """What one step produced, per slot (rows of inactive slots hold -1)."""

    text: torch.Tensor  # [B] text token sampled at this step (inner monologue, no delay)
    oracle: torch.Tensor  # [B] oracle id the model read at this step
    frame_tokens: torch.Tensor  # [B, 1 + dep_q] text + audio tokens of one aligned frame, -2 if none yet
    frame_valid: torch.Tensor  # [B] bool: frame_tokens holds a complete frame for this slot
    steps: list[int]  # per slot: index of this step since the slot started (-1 if inactive)
    text_logits: torch.Tensor | None = None  # [B, text_card] when recording


class BatchedGenerator:
    """Streams a `KameLM` for up to `batch_size` concurrent conversations.

    Use inside `with generator:`; then `start()` a slot per conversation,
    `step(user_codes)` once per 80 ms frame for the whole batch, `stop()` when
    a conversation ends.
    """

    def __init__(
        self,
        model: KameLM,
        batch_size: int,
        sampling: SamplingOptions = SamplingOptions(),
        record_text_logits: bool = False,
        policies: Sequence[DecodingPolicy] = (),
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.sampling = sampling
        self.record_text_logits = record_text_logits
        self._last_text_logits: torch.Tensor | None = None
        self.oracle_ids = model.text_ids
        self.policies: list[DecodingPolicy] = list(policies)
        if sampling.oracle_follow_bias > 0:
            self.policies.append(OracleFollower(batch_size, sampling.oracle_follow_bias, self.oracle_ids))
        self._active: list[int] = []  # slots stepped by the step in progress
        self.n_user = model.n_q - model.dep_q  # user audio codebooks read per step
        self.lm_gen = LMGen(
            model,
            use_sampling=not sampling.greedy,
            temp=sampling.temperature,
            temp_text=sampling.text_temperature,
            top_k=sampling.top_k,
            top_k_text=sampling.text_top_k,
            support_out_of_sync=True,  # slots start at different frames
            on_text_hook=self._on_text,
            on_text_logits_hook=self._on_text_logits if self.policies or record_text_logits else None,
            on_audio_hook=self._on_audio if self.policies else None,
        )
        self._last_text: torch.Tensor | None = None
        self._slots = [_Slot(OracleTimeline(self.oracle_ids)) for _ in range(batch_size)]
        self._exit = ExitStack()
        self._device = model.device

    # -- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> BatchedGenerator:
        self._exit.enter_context(self.lm_gen.streaming(self.batch_size))
        self._sync_exec_mask()
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    @property
    def free_slots(self) -> int:
        return sum(not s.active for s in self._slots)

    def start(self, slot: int | None = None) -> SlotHandle:
        """Claim a free slot (or the given one) for a new conversation, reset to a fresh state."""
        if slot is None:
            free = [i for i, s in enumerate(self._slots) if not s.active]
            if not free:
                raise RuntimeError(f"all {self.batch_size} slots are busy")
            slot = free[0]
        if not 0 <= slot < self.batch_size:
            raise ValueError(f"slot {slot} out of range [0, {self.batch_size})")
        state = self._slots[slot]
        if state.active:
            raise RuntimeError(f"slot {slot} is busy")
        mask = self._mask([slot])
        self.lm_gen.reset_streaming(mask)
        lm_state = self.lm_gen._streaming_state
        assert lm_state is not None
        # Nothing of the previous conversation may be read back from the delay cache.
        lm_state.cache[mask] = self.model.ungenerated_token_id
        state.generation += 1
        state.active = True
        state.steps = 0
        state.timeline = OracleTimeline(self.oracle_ids)
        state.inbox.clear()
        for policy in self.policies:
            policy.reset(slot)
        self._sync_exec_mask()
        return SlotHandle(slot, state.generation)

    def stop(self, handle: SlotHandle) -> None:
        """End a conversation; its slot stops computing and its pending oracle is dropped."""
        state = self._slots[handle.slot]
        if state.generation != handle.generation or not state.active:
            return
        state.active = False
        state.generation += 1
        state.inbox.clear()
        self._sync_exec_mask()

    def is_current(self, handle: SlotHandle) -> bool:
        """Whether `handle` still owns its slot."""
        state = self._slots[handle.slot]
        return state.active and state.generation == handle.generation

    # -- oracle input (any thread) ---------------------------------------------------------

    def begin_oracle(self, handle: SlotHandle) -> None:
        """A new oracle starts for this conversation at its next frame."""
        self._slots[handle.slot].inbox.append((handle.generation, _BEGIN, None))

    def feed_oracle(self, handle: SlotHandle, tokens: Sequence[int]) -> None:
        """Tokens of the current oracle (text ids), in order, as they become final."""
        tokens = [int(t) for t in tokens]
        bad = [t for t in tokens if not 0 <= t < self.model.text_card]
        if bad:
            raise InputError(f"oracle token {bad[0]} out of range [0, {self.model.text_card})")
        self._slots[handle.slot].inbox.append((handle.generation, _FEED, tokens))

    def timeline(self, handle: SlotHandle) -> OracleTimeline:
        """The slot's timeline (read its `stats`; only the engine thread should mutate it)."""
        return self._slots[handle.slot].timeline

    # -- the frame step (engine thread) ----------------------------------------------------

    @torch.no_grad()
    def step(self, user_codes: torch.Tensor) -> StepOutput:
        """One 80 ms step for every slot.

        Args:
            user_codes: `[B, n_user]` or `[B, n_user, 1]` int64, the user's audio tokens of
                this frame per slot (rows of inactive slots are ignored).
        """
        if user_codes.dim() == 2:
            user_codes = user_codes[:, :, None]
        expected = (self.batch_size, self.n_user, 1)
        if tuple(user_codes.shape) != expected:
            raise InputError(f"user_codes: expected shape {expected}, got {tuple(user_codes.shape)}")
        user_codes = user_codes.to(self._device, torch.long)
        active = [s.active for s in self._slots]
        if (
            any(active)
            and user_codes.numel()
            and (int(user_codes[active].min()) < 0 or int(user_codes[active].max()) >= self.model.card)
        ):
            raise InputError(f"user_codes: audio token ids must lie in [0, {self.model.card})")

        oracle = torch.full((self.batch_size,), -1, dtype=torch.long)
        steps = []
        for i, slot in enumerate(self._slots):
            if not slot.active:
                oracle[i] = self.oracle_ids.pad
                steps.append(-1)
                continue
            self._drain_inbox(slot)
            # Step 0 reads the start id, as text does; step s reads the id of frame s - 1.
            oracle[i] = self.oracle_ids.start if slot.steps == 0 else slot.timeline.next_id()
            for policy in self.policies:
                policy.read_oracle(i, slot.steps, int(oracle[i]))
            steps.append(slot.steps)
            slot.steps += 1

        lm_state = self.lm_gen._streaming_state
        if lm_state is None:
            raise RuntimeError("use the generator inside `with generator:`")
        lm_state.condition_sum = self.model.oracle_condition(oracle.to(self._device)[:, None])  # [B, 1, dim]
        self._active = [i for i, a in enumerate(active) if a]
        out = self.lm_gen.step(user_codes)
        assert out is not None and self._last_text is not None  # support_out_of_sync: always a tensor
        text = self._last_text.clone()
        inactive = torch.tensor([not a for a in active], device=text.device)
        text[inactive] = -1
        frame_tokens = out[:, :, 0]
        frame_valid = (frame_tokens >= 0).all(dim=1) & ~inactive
        logits = None
        if self.record_text_logits and self._last_text_logits is not None:
            logits = self._last_text_logits[:, 0, 0].clone()
        return StepOutput(text, oracle, frame_tokens, frame_valid, steps, logits)

    # -- internals ---------------------------------------------------------------------------

    def _drain_inbox(self, slot: _Slot) -> None:
        while slot.inbox:
            generation, kind, tokens = slot.inbox.popleft()
            if generation != slot.generation:
                continue  # from a conversation that no longer owns this slot
            if kind == _BEGIN:
                slot.timeline.begin()
            else:
                slot.timeline.feed(tokens)

    def _on_text(self, text: torch.Tensor) -> None:
        """The drawn text tokens `[B]`: the policies may overwrite them, then they are kept."""
        for policy in self.policies:
            policy.on_text_tokens(text, self._active)
        self._last_text = text

    def _on_text_logits(self, logits: torch.Tensor) -> None:
        """Before the text token is drawn: keep the model's own logits, then let the policies act
        on them in place ([B, 1, 1, card])."""
        if self.record_text_logits:
            self._last_text_logits = logits.float().clone()  # the model's own, before the policies
        for policy in self.policies:
            policy.on_text_logits(logits[:, 0, 0], self._active)

    def _on_audio(self, audio: torch.Tensor) -> None:
        """The drawn audio tokens `[B, dep_q]`, before they enter the context."""
        for policy in self.policies:
            policy.on_audio_tokens(audio, self._active)

    def _mask(self, slots: Sequence[int]) -> torch.Tensor:
        mask = torch.zeros(self.batch_size, dtype=torch.bool, device=self._device)
        mask[list(slots)] = True
        return mask

    def _sync_exec_mask(self) -> None:
        if self.lm_gen._streaming_state is not None:
            self.lm_gen.set_exec_mask(self._mask([i for i, s in enumerate(self._slots) if s.active]))
