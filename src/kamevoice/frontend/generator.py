"""Batched streaming generation: N conversations share one model, each in a slot of its own.

A *slot* is a conversation's place for its whole life (slots 0..capacity-1); a
*row* is where the slot sits in Moshi's `LMGen` batch now. The batch has only
as many rows as the live conversations need (`kamevoice.frontend.rows`: a power
of two, at most the capacity), because moshi computes every row, live or not.
When a conversation joins a full batch it grows; when at most half the rows have
been live for a while it shrinks; either way each live row's streaming state is
carried into its new row and the conversation goes on exactly as before.
`on_resize(rows, moves)` tells the caller, whose codecs must follow the same moves.

Slots start, reset and stop on their own (masks: `reset_streaming(mask)`,
`set_exec_mask(mask)`), so a reset costs the other slots nothing, and a slot
reused after a reset behaves as a fresh one. Each slot owns its `OracleTimeline`;
starting a slot makes a new one, so no oracle of a finished conversation can
reach the next (the published code's defect 1).

Thread model: the engine thread calls `start`, `stop` and `step`; other threads
(the asyncio back-end) talk to a slot only through `begin_oracle` / `feed_oracle`,
which append to the slot's inbox (a deque: atomic append/popleft, no lock). Each
message carries the slot's *generation*; messages from a conversation that has
since stopped are stale and dropped (the cancel-scope pattern).

The oracle reaches the model through `LMGen`'s per-step sum condition, exactly as
`KameLM.forward` passes it in the batch pass, and follows the model's oracle layout
(`kamevoice.oracle.layouts`): what step 0 reads and where the embedding is summed. Decoding policies
(`kamevoice.frontend.policies`) run through one protocol at fixed points of each
step; this module is the only one that attaches to moshi's hooks. The caller's
policies run first (forcing ones), then oracle following when the sampling asks
for it. Recorded logits are the model's own, before any policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import Enum

import torch
from moshi.models.lm import LMGen

from kamevoice.errors import InputError
from kamevoice.frontend.model import KameLM
from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.policies.oracle_follow import OracleFollower
from kamevoice.frontend.rows import SHRINK_AFTER_STEPS, carry_rows, rows_for
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.oracle.timeline import LateTokens, OracleTimeline

# (old_row, new_row) of every live conversation across a resize.
RowMoves = list[tuple[int, int]]


class _Message(Enum):
    """What a slot's inbox holds: (generation, BEGIN, None) or (generation, FEED, tokens)."""

    BEGIN = "begin"
    FEED = "feed"


@dataclass(frozen=True)
class SlotHandle:
    """A conversation's claim on a slot; stale once the slot is stopped or restarted."""

    slot: int
    generation: int


@dataclass
class _Slot:
    timeline: OracleTimeline
    generation: int = 0
    row: int = -1  # its row in the batch; -1 while the slot is free
    steps: int = 0  # steps taken since start
    inbox: deque = field(default_factory=deque)

    @property
    def active(self) -> bool:
        return self.row >= 0


@dataclass
class StepOutput:
    """What one step produced, indexed by slot (`step`) or by row (`step_rows`); -1 where idle."""

    text: torch.Tensor  # [N] text token sampled at this step (inner monologue, no delay)
    oracle: torch.Tensor  # [N] oracle id the model read at this step
    frame_tokens: torch.Tensor  # [N, 1 + dep_q] text + audio tokens of one aligned frame, -2 if none yet
    frame_valid: torch.Tensor  # [N] bool: frame_tokens holds a complete frame
    steps: list[int]  # [N] index of this step since the slot started (-1 if idle)
    text_logits: torch.Tensor | None = None  # [N, text_card] when recording


class BatchedGenerator:
    """Streams a `KameLM` for up to `batch_size` concurrent conversations.

    Use inside `with generator:`; then `start()` a slot per conversation,
    `step(user_codes)` once per 80 ms frame, `stop()` when a conversation ends.
    """

    def __init__(
        self,
        model: KameLM,
        batch_size: int,
        sampling: SamplingOptions = SamplingOptions(),
        record_text_logits: bool = False,
        policies: Sequence[DecodingPolicy] = (),
        on_resize: Callable[[int, RowMoves], None] | None = None,
    ):
        """`sampling.late_oracle` says what becomes of an oracle token that arrives after its
        frame (`kamevoice.oracle.timeline.LateTokens`); `sampling.lm_gen` holds further `LMGen`
        keywords of the checkpoint's `lm_gen_config` (`kamevoice.frontend.lm_gen`)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size  # the capacity: slots
        self.sampling = sampling
        self.record_text_logits = record_text_logits
        self.on_resize = on_resize
        self.oracle_ids = model.text_ids
        self.layout = model.oracle_layout
        self.late_oracle: LateTokens = sampling.late_oracle
        self.policies: list[DecodingPolicy] = list(policies)
        if sampling.oracle_follow_bias > 0:
            self.policies.append(OracleFollower(batch_size, sampling.oracle_follow_bias, self.oracle_ids))
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
            **dict(sampling.lm_gen),
        )
        self._slots = [_Slot(self._new_timeline()) for _ in range(batch_size)]
        self.row_slots: list[int] = []  # per row: the slot it serves, -1 for an idle row
        self.resizes = 0  # how often the batch was rebuilt (for the benchmarks)
        self._half_empty_steps = 0
        self._last_text: torch.Tensor | None = None
        self._last_text_logits: torch.Tensor | None = None
        self._exit = ExitStack()
        self._device = model.device

    # -- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> BatchedGenerator:
        self._exit.enter_context(self.lm_gen.streaming(1))
        self.row_slots = [-1]
        self._sync_exec_mask()
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    @property
    def rows(self) -> int:
        """Rows the batch steps now."""
        return len(self.row_slots)

    @property
    def live(self) -> int:
        """Conversations in progress."""
        return sum(s.active for s in self._slots)

    @property
    def free_slots(self) -> int:
        return self.batch_size - self.live

    def row_of(self, handle: SlotHandle) -> int:
        """The row `handle`'s conversation occupies now (-1 if it no longer owns its slot)."""
        return self._slots[handle.slot].row if self.is_current(handle) else -1

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
        if -1 not in self.row_slots:
            self._resize(rows_for(self.live + 1, self.batch_size))
        row = self.row_slots.index(-1)
        mask = self._row_mask([row])
        self.lm_gen.reset_streaming(mask)
        # Nothing of the previous conversation may be read back from the delay cache.
        self._lm_state().cache[mask] = self.model.ungenerated_token_id
        self.row_slots[row] = slot
        state.row = row
        state.generation += 1
        state.steps = 0
        state.timeline = self._new_timeline()
        state.inbox.clear()
        for policy in self.policies:
            policy.reset(slot)
        self._sync_exec_mask()
        return SlotHandle(slot, state.generation)

    def stop(self, handle: SlotHandle) -> None:
        """End a conversation; its row stops computing and its pending oracle is dropped."""
        state = self._slots[handle.slot]
        if state.generation != handle.generation or not state.active:
            return
        self.row_slots[state.row] = -1
        state.row = -1
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
        self._slots[handle.slot].inbox.append((handle.generation, _Message.BEGIN, None))

    def feed_oracle(self, handle: SlotHandle, tokens: Sequence[int]) -> None:
        """Tokens of the current oracle (text ids), in order, as they become final."""
        tokens = [int(t) for t in tokens]
        bad = [t for t in tokens if not 0 <= t < self.model.text_card]
        if bad:
            raise InputError(f"oracle token {bad[0]} out of range [0, {self.model.text_card})")
        self._slots[handle.slot].inbox.append((handle.generation, _Message.FEED, tokens))

    def timeline(self, handle: SlotHandle) -> OracleTimeline:
        """The slot's timeline (read its `stats`; only the engine thread should mutate it)."""
        return self._slots[handle.slot].timeline

    # -- the frame step (engine thread) ----------------------------------------------------

    @torch.no_grad()
    def step(self, user_codes: torch.Tensor) -> StepOutput:
        """One 80 ms step for every conversation, indexed by slot.

        Args:
            user_codes: `[batch_size, n_user]` or `[batch_size, n_user, 1]` int64, the user's
                audio tokens of this frame per slot (rows of free slots are ignored).
        """
        if user_codes.dim() == 2:
            user_codes = user_codes[:, :, None]
        expected = (self.batch_size, self.n_user, 1)
        if tuple(user_codes.shape) != expected:
            raise InputError(f"user_codes: expected shape {expected}, got {tuple(user_codes.shape)}")
        self.fit()
        rows = torch.tensor([max(s, 0) for s in self.row_slots])
        out = self.step_rows(user_codes[rows])
        return self._by_slot(out)

    def fit(self) -> None:
        """Shrink the batch when at most half its rows have been live for `SHRINK_AFTER_STEPS` steps."""
        target = rows_for(self.live, self.batch_size)
        self._half_empty_steps = self._half_empty_steps + 1 if target <= self.rows // 2 else 0
        if self._half_empty_steps >= SHRINK_AFTER_STEPS:
            self._resize(target)

    @torch.no_grad()
    def step_rows(self, user_codes: torch.Tensor) -> StepOutput:
        """One step of the batch as it is now: `user_codes` `[rows, n_user(, 1)]` per row (see
        `row_slots`); the output is per row."""
        if user_codes.dim() == 2:
            user_codes = user_codes[:, :, None]
        if tuple(user_codes.shape) != (self.rows, self.n_user, 1):
            raise InputError(
                f"user_codes: expected shape {(self.rows, self.n_user, 1)}, got {tuple(user_codes.shape)}"
            )
        user_codes = user_codes.to(self._device, torch.long)
        live = [slot >= 0 for slot in self.row_slots]
        checked = user_codes[live]
        if checked.numel() and (int(checked.min()) < 0 or int(checked.max()) >= self.model.card):
            raise InputError(f"user_codes: audio token ids must lie in [0, {self.model.card})")

        oracle = torch.full((self.rows,), self.oracle_ids.pad, dtype=torch.long)
        steps = [-1] * self.rows
        fixed_first = self.layout.fixed_step0_input(self.oracle_ids)
        for row, slot_id in enumerate(self.row_slots):
            if slot_id < 0:
                continue
            slot = self._slots[slot_id]
            self._drain_inbox(slot)
            # Step s reads the id of frame s - 1: step 0 reads frame -1 of the timeline, or the
            # start id in layouts that fix it (`kamevoice.oracle.layouts`).
            if slot.steps == 0 and fixed_first is not None:
                oracle[row] = fixed_first
            else:
                oracle[row] = slot.timeline.next_id()
            for policy in self.policies:
                policy.read_oracle(slot_id, slot.steps, int(oracle[row]))
            steps[row] = slot.steps
            slot.steps += 1

        state = self._lm_state()
        state.condition_sum = self.model.oracle_condition(oracle.to(self._device)[:, None])  # [rows, 1, dim]
        out = self.lm_gen.step(user_codes)
        assert out is not None and self._last_text is not None  # support_out_of_sync: always a tensor
        idle = torch.tensor([not x for x in live], device=self._last_text.device)
        text = self._last_text.clone()
        text[idle] = -1
        frame_tokens = out[:, :, 0]
        frame_valid = (frame_tokens >= 0).all(dim=1) & ~idle
        logits = None
        if self.record_text_logits and self._last_text_logits is not None:
            logits = self._last_text_logits[:, 0, 0].clone()
        return StepOutput(text, oracle, frame_tokens, frame_valid, steps, logits)

    # -- internals ---------------------------------------------------------------------------

    def _by_slot(self, out: StepOutput) -> StepOutput:
        """Per-row output laid out per slot (free slots: -1, PAD oracle, invalid frames)."""
        n = self.batch_size
        text = torch.full((n,), -1, dtype=out.text.dtype, device=out.text.device)
        oracle = torch.full((n,), self.oracle_ids.pad, dtype=torch.long)
        frames = torch.full(
            (n, out.frame_tokens.shape[1]), -2, dtype=out.frame_tokens.dtype, device=out.frame_tokens.device
        )
        valid = torch.zeros(n, dtype=torch.bool, device=out.frame_valid.device)
        steps = [-1] * n
        logits = None
        if out.text_logits is not None:
            logits = torch.zeros((n, out.text_logits.shape[-1]), dtype=out.text_logits.dtype)
        for row, slot in enumerate(self.row_slots):
            if slot < 0:
                continue
            text[slot], oracle[slot], frames[slot] = out.text[row], out.oracle[row], out.frame_tokens[row]
            valid[slot], steps[slot] = out.frame_valid[row], out.steps[row]
            if logits is not None:
                logits[slot] = out.text_logits[row]
        return StepOutput(text, oracle, frames, valid, steps, logits)

    def _resize(self, rows: int) -> None:
        """Rebuild the batch with `rows` rows, the live ones first, in their order."""
        live = [(row, slot) for row, slot in enumerate(self.row_slots) if slot >= 0]
        moves = [(row, new_row) for new_row, (row, _) in enumerate(live)]
        before = self._streaming_states()
        self._exit.close()
        self._exit = ExitStack()
        self._exit.enter_context(self.lm_gen.streaming(rows))
        carry_rows(before, self._streaming_states(), moves)
        self.row_slots = [-1] * rows
        for new_row, (_, slot) in enumerate(live):
            self.row_slots[new_row] = slot
            self._slots[slot].row = new_row
        self._half_empty_steps = 0
        self.resizes += 1
        self._sync_exec_mask()
        if self.on_resize is not None:
            self.on_resize(rows, moves)

    def _new_timeline(self) -> OracleTimeline:
        return self.layout.timeline(self.oracle_ids, late=self.late_oracle)

    def _streaming_states(self) -> dict:
        # LMGen streams its model as a detached child: the model's state is not in LMGen's.
        return {"lm_gen": self.lm_gen.get_streaming_state(), "model": self.model.get_streaming_state()}

    def _lm_state(self):
        # moshi keeps the per-step sum condition and the delay cache in LMGen's streaming state.
        state = self.lm_gen._streaming_state
        if state is None:
            raise RuntimeError("use the generator inside `with generator:`")
        return state

    def _drain_inbox(self, slot: _Slot) -> None:
        while slot.inbox:
            generation, kind, tokens = slot.inbox.popleft()
            if generation != slot.generation:
                continue  # from a conversation that no longer owns this slot
            if kind is _Message.BEGIN:
                slot.timeline.begin()
            else:
                slot.timeline.feed(tokens)

    def _on_text(self, text: torch.Tensor) -> None:
        """The drawn text tokens `[rows]`: the policies may overwrite them, then they are kept."""
        for policy in self.policies:
            policy.on_text_tokens(text, self.row_slots)
        self._last_text = text

    def _on_text_logits(self, logits: torch.Tensor) -> None:
        """Before the text token is drawn: keep the model's own logits, then let the policies act
        on them in place ([rows, 1, 1, card])."""
        if self.record_text_logits:
            self._last_text_logits = logits.float().clone()  # the model's own, before the policies
        for policy in self.policies:
            policy.on_text_logits(logits[:, 0, 0], self.row_slots)

    def _on_audio(self, audio: torch.Tensor) -> None:
        """The drawn audio tokens `[rows, dep_q]`, before they enter the context."""
        for policy in self.policies:
            policy.on_audio_tokens(audio, self.row_slots)

    def _row_mask(self, rows: Sequence[int]) -> torch.Tensor:
        mask = torch.zeros(self.rows, dtype=torch.bool, device=self._device)
        mask[list(rows)] = True
        return mask

    def _sync_exec_mask(self) -> None:
        if self.lm_gen.is_streaming:
            self.lm_gen.set_exec_mask(self._row_mask([r for r, s in enumerate(self.row_slots) if s >= 0]))
