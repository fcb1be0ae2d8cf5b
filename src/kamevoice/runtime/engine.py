"""The frame engine: one model, one codec, every live conversation stepped together every 80 ms.

The engine owns the `BatchedGenerator` and two streaming codec instances
(one encodes user audio, one decodes model audio, so either can be reset per
row without touching the other). It runs on its own thread: network and
asyncio work never delay a frame, and a slow frame never blocks the event loop.

Conversations talk to it through an `EngineStream` (thread-safe: deques and
generation-stamped messages, no locks on the hot path):
- `push(pcm)` queues user audio (any length; it is cut into 80 ms frames),
- `begin_oracle()` / `feed_oracle(ids)` drive the conversation's oracle timeline,
- `set_silent(on)` silences the conversation's front-end from its next step until released
  (`SilenceOnDemand`, a decoding policy every engine runs first),
- results (`FrameResult`) arrive through the callback given to `open()`,
  called on the engine thread: hand them over to asyncio with
  `loop.call_soon_threadsafe`.

Pacing. `paced=True` (serving): a step every 80 ms of wall clock; a
conversation whose audio has not arrived gets a frame of silence (counted as an
input underrun), a step over budget is an overrun (counted). When a stall has
let user audio pile up beyond `MAX_BACKLOG_FRAMES`, extra steps run at once
until the backlog is drained (counted as catch-up steps), so a stall does not
add its delay to every later frame. `paced=False` (files, tests, benchmarks): a step
runs as soon as every live conversation has a frame queued (or has said its
input is over), so results are deterministic and as fast as the machine allows.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch

from kamevoice.errors import InputError
from kamevoice.frontend.codec import AudioCodec
from kamevoice.frontend.generator import BatchedGenerator, SlotHandle
from kamevoice.frontend.model import KameLM
from kamevoice.frontend.policies import DecodingPolicy
from kamevoice.frontend.policies.on_demand import SilenceOnDemand
from kamevoice.frontend.sampling import SamplingOptions
from kamevoice.runtime.clock import FRAME_SECONDS

# User frames a conversation may have queued before the paced loop steps early to catch up:
# two frames (160 ms) absorb ordinary network jitter without extra steps.
MAX_BACKLOG_FRAMES = 2
# How long the unpaced loop naps when no conversation has a frame ready (seconds).
IDLE_WAIT_S = 0.002


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs."""

    max_sessions: int = 4
    sampling: SamplingOptions = SamplingOptions()
    paced: bool = True  # True: wall-clock 80 ms ticks; False: step when every stream has input


@dataclass
class FrameResult:
    """What one step produced for one conversation."""

    step: int  # index of the step since the conversation joined
    text_id: int  # inner-monologue token sampled at this step
    oracle_id: int  # oracle id the model read at this step
    audio_frame: int  # index of the model audio frame in `pcm` (step - max_delay), -1 if none yet
    pcm: np.ndarray | None  # [frame_size] float32 model audio, None until the first complete frame
    step_ms: float  # duration of the batch step that produced it
    underrun: bool  # the user frame was missing and silence was used


@dataclass
class EngineStats:
    """Counters of the engine thread (read them from any thread)."""

    steps: int = 0
    overruns: int = 0  # paced steps that took longer than one frame
    underruns: int = 0  # user frames that had not arrived in time
    catch_up_steps: int = 0  # paced steps run early because user audio had piled up
    step_ms: deque = field(default_factory=lambda: deque(maxlen=2000))  # recent step durations
    rows: int = 0  # rows the last step computed (follows the live conversations)

    def percentile(self, q: float) -> float:
        values = sorted(self.step_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class _Request(Enum):
    """What a conversation asks of the engine thread."""

    JOIN = "join"
    LEAVE = "leave"


class EngineStream:
    """One conversation's connection to the engine."""

    def __init__(self, engine: Engine, on_frame: Callable[[FrameResult], None]):
        self._engine = engine
        self.on_frame = on_frame
        self.handle: SlotHandle | None = None  # set by the engine thread when the slot is claimed
        self.joined = threading.Event()
        self.closed = False
        self.input_done = False
        self.frames: deque[np.ndarray] = deque()
        self._partial = np.zeros(0, dtype=np.float32)
        self.steps = 0

    def push(self, pcm: np.ndarray) -> None:
        """Queue user audio (float32 mono at the codec's rate, any length)."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1 or not np.issubdtype(pcm.dtype, np.floating):
            raise InputError(f"user audio: expected 1-D float samples, got {pcm.dtype} {pcm.shape}")
        if not np.isfinite(pcm).all():
            raise InputError("user audio: contains NaN or infinite samples")
        size = self._engine.frame_size
        data = np.concatenate([self._partial, pcm.astype(np.float32)])
        whole = len(data) // size * size
        for start in range(0, whole, size):
            self.frames.append(data[start : start + size])
        self._partial = data[whole:]

    def end_input(self) -> None:
        """No more audio will come: pad the last partial frame and let unpaced steps proceed without it."""
        if len(self._partial):
            frame = np.zeros(self._engine.frame_size, dtype=np.float32)
            frame[: len(self._partial)] = self._partial
            self.frames.append(frame)
            self._partial = np.zeros(0, dtype=np.float32)
        self.input_done = True

    def begin_oracle(self) -> None:
        """A new oracle starts at this conversation's next frame."""
        if self.handle is not None:
            self._engine.generator.begin_oracle(self.handle)

    def feed_oracle(self, tokens: list[int]) -> None:
        """Stable oracle tokens, in order."""
        if self.handle is not None and tokens:
            self._engine.generator.feed_oracle(self.handle, tokens)

    def set_silent(self, silent: bool) -> None:
        """Silence this conversation's front-end from its next step on, or release it (any thread;
        ignored before the slot is granted and after `close`)."""
        if self.handle is not None and not self.closed:
            self._engine.silencer.set(self.handle.slot, silent)

    @property
    def silent(self) -> bool:
        """Whether the front-end is silenced now (`set_silent`)."""
        return self.handle is not None and self._engine.silencer.is_silent(self.handle.slot)

    def close(self) -> None:
        """Leave the engine; the slot is freed at the next step."""
        if not self.closed:
            self.closed = True
            self._engine.leave(self)


class Engine:
    """Runs the frame loop for up to `options.max_sessions` conversations."""

    def __init__(
        self,
        model: KameLM,
        codec: AudioCodec,
        options: EngineOptions = EngineOptions(),
        policies: Sequence[DecodingPolicy] = (),
    ):
        """`policies`: decoding policies of every slot, run by the generator before its own
        (e.g. `SilenceForcer` for the evaluation's forced delay), after `silencer` (the
        `SilenceOnDemand` behind `EngineStream.set_silent`)."""
        self.model = model
        self.options = options
        self.encoder = codec
        self.silencer = SilenceOnDemand.for_model(model, codec)  # before streaming: encodes silence once
        self.decoder = copy.deepcopy(codec)  # separate streaming state: rows reset independently
        self.frame_size = codec.frame_size
        self.generator = BatchedGenerator(
            model,
            options.max_sessions,
            options.sampling,
            policies=[self.silencer, *policies],
            on_resize=self._resize_codecs,
        )
        self.max_delay = max(model.delays)
        self.stats = EngineStats()
        self._requests: deque[tuple[_Request, EngineStream]] = deque()  # handled on the engine thread
        self._streams: dict[int, EngineStream] = {}  # slot -> stream
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._entered = False
        self._codec_ctx: list = []
        self.error: BaseException | None = None

    # -- lifetime ------------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self._enter_streaming()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._exit_streaming()

    def start(self) -> None:
        """Run the frame loop on a background thread."""
        self._enter_streaming()
        self._thread = threading.Thread(target=self._run, name="kamevoice-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def open(self, on_frame: Callable[[FrameResult], None]) -> EngineStream:
        """A new conversation; it joins at the next step (`stream.joined` is set then)."""
        stream = EngineStream(self, on_frame)
        self._requests.append((_Request.JOIN, stream))
        return stream

    def leave(self, stream: EngineStream) -> None:
        """`stream`'s conversation is over; its slot is freed at the next step (any thread)."""
        self._requests.append((_Request.LEAVE, stream))

    @property
    def thread_id(self) -> int | None:
        """The operating system's id of the frame-loop thread (for CPU accounting), None before `start`."""
        return self._thread.native_id if self._thread is not None else None

    @property
    def free_slots(self) -> int:
        """Slots not yet claimed (approximate while requests are pending)."""
        return (
            self.options.max_sessions
            - len(self._streams)
            - sum(1 for kind, _ in self._requests if kind is _Request.JOIN)
        )

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.options.paced:
                    behind = self._behind()
                    delay = next_tick - time.monotonic()
                    if delay > 0 and not behind:
                        self._stop.wait(min(delay, FRAME_SECONDS))
                        continue
                    if not self._streams and not self._requests:  # nobody to serve: leave the CPU idle
                        next_tick += FRAME_SECONDS
                        continue
                    took = self.step()
                    if behind:
                        self.stats.catch_up_steps += 1  # an extra step between ticks drains the backlog
                    else:
                        next_tick += FRAME_SECONDS
                    if took > FRAME_SECONDS:
                        self.stats.overruns += 1
                        next_tick = max(next_tick, time.monotonic())
                elif not self.ready():
                    self.admit()
                    self._stop.wait(IDLE_WAIT_S)
                else:
                    self.step()
        except BaseException as exc:  # surfaced to the server, which reports and ends sessions
            self.error = exc
            raise

    def _behind(self) -> bool:
        """Paced mode: every live conversation has queued more user audio than the jitter allowance.

        After a slow step frames pile up for everyone; stepping again at once drains them, so one
        stall does not add its delay to every later frame. Only when *all* are behind: an extra
        step feeds silence to a conversation that is not, shifting its audio.
        """
        live = [s for s in self._streams.values() if not s.closed]
        return bool(live) and all(len(s.frames) > MAX_BACKLOG_FRAMES for s in live)

    def ready(self) -> bool:
        """Unpaced mode: every live conversation has a frame queued or has ended its input."""
        live = [s for s in self._streams.values() if not s.closed]
        if not live:
            return False
        return all(s.frames or s.input_done for s in live) and any(s.frames for s in live)

    @torch.no_grad()
    def step(self) -> float:
        """One frame for every live conversation; returns its duration in seconds.

        Only the batch's rows are computed (`generator.rows`: what the live conversations need,
        not `max_sessions`), codecs included.
        """
        self.admit()
        gen = self.generator
        gen.fit()
        start = time.perf_counter()
        rows = gen.row_slots
        pcm = np.zeros((len(rows), 1, self.frame_size), dtype=np.float32)
        underrun = [False] * len(rows)
        for row, slot in enumerate(rows):
            stream = self._streams.get(slot)
            if stream is None:
                continue
            if stream.frames:
                pcm[row, 0] = stream.frames.popleft()
            else:
                underrun[row] = True
                self.stats.underruns += 1
        codes = self.encoder.encode_frame(torch.from_numpy(pcm))  # [rows, K]
        out = gen.step_rows(codes[:, : gen.n_user])
        audio = out.frame_tokens[:, 1:].clamp(min=0)  # [rows, dep_q]; invalid rows decoded, then reset
        decoded = self.decoder.decode_frame(audio).cpu().numpy()[:, 0]  # [rows, frame_size]
        not_valid = ~out.frame_valid
        if bool(not_valid.any()):
            self.decoder.reset(not_valid)  # the next real frame starts from a clean decoder state
        took = time.perf_counter() - start
        self.stats.steps += 1
        self.stats.step_ms.append(took * 1e3)
        self.stats.rows = len(rows)
        for row, slot in enumerate(rows):
            stream = self._streams.get(slot)
            if stream is None:
                continue
            valid = bool(out.frame_valid[row])
            result = FrameResult(
                step=stream.steps,
                text_id=int(out.text[row]),
                oracle_id=int(out.oracle[row]),
                audio_frame=stream.steps - self.max_delay if valid else -1,
                pcm=decoded[row].copy() if valid else None,
                step_ms=took * 1e3,
                underrun=underrun[row],
            )
            stream.steps += 1
            try:
                stream.on_frame(result)
            except Exception:  # a broken consumer ends its own conversation only
                stream.close()
        return took

    def admit(self) -> None:
        """Apply pending joins and leaves now (every step does; an unpaced caller that steps the
        engine itself calls it to let a new conversation in before its first frame)."""
        while self._requests:
            kind, stream = self._requests.popleft()
            if kind is _Request.JOIN:
                if stream.closed:
                    continue
                if self.generator.free_slots == 0:
                    self._requests.appendleft((kind, stream))  # wait for a slot to free up
                    break
                handle = self.generator.start()  # may grow the batch (and the codecs with it)
                mask = torch.zeros(self.generator.rows, dtype=torch.bool)
                mask[self.generator.row_of(handle)] = True
                self.encoder.reset(mask)
                self.decoder.reset(mask)
                stream.handle = handle
                self._streams[handle.slot] = stream
                stream.joined.set()
            elif stream.handle is not None and self._streams.get(stream.handle.slot) is stream:
                self.generator.stop(stream.handle)
                del self._streams[stream.handle.slot]

    def _enter_streaming(self) -> None:
        if self._entered:
            return
        self._entered = True
        self.generator.__enter__()
        self._codec_ctx = [
            self.encoder.streaming(self.generator.rows),
            self.decoder.streaming(self.generator.rows),
        ]
        for ctx in self._codec_ctx:
            ctx.__enter__()

    def _resize_codecs(self, rows: int, moves: list[tuple[int, int]]) -> None:
        """The generator rebuilt its batch: the codecs' streaming state follows the same rows."""
        if self._entered and self._codec_ctx:
            self.encoder.resize(rows, moves)
            self.decoder.resize(rows, moves)

    def _exit_streaming(self) -> None:
        if not self._entered:
            return
        for ctx in reversed(self._codec_ctx):
            ctx.__exit__(None, None, None)
        self.generator.__exit__(None, None, None)
        self._entered = False
        self._codec_ctx: list = []
