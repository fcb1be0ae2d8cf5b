"""Oracle copy episodes: text-only training samples that teach a front-end to read its oracle.

A KAME front-end gets its knowledge by saying what the oracle stream says, but
in spoken dialogues that lesson is thin: one reply per dialogue, most of whose
words (openers, templates) are predictable without the oracle, among audio
targets that take most of the gradient. Measured on KAME-tiny (7M parameters,
2-core CPU): 2077 steps on dialogues left the answers' number words at 0.24
teacher-forced accuracy with the oracle against 0.23 without.

A copy episode keeps the two streams that matter and drops the audio:

- the oracle stream gets reply after reply, laid out exactly as in training
  and streaming (`layout_oracle`: start id, then one token a frame), some of
  them superseded by a newer oracle before they are said;
- the inner-monologue text stream says the latest oracle's reply word by word,
  with the layout of aligned speech (end-of-padding id on the frame before a
  word, its pieces on consecutive frames, PAD gaps between words), starting a
  little before or after the oracle begins, as speech does against a late or
  early back-end;
- every audio token is the zero token (-1): no audio input, no audio target,
  so the depth transformer can be skipped (`KameLM.forward(text_only=True)`),
  which makes a step about 5x cheaper on KAME-tiny.

The replies are text lines (for KAME-tiny: the training facts' replies, never
the held-out ones). Sample i of epoch e is a pure function of (seed, e, i).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kamevoice.errors import InputError
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.pieces import TextTokenizer
from kamevoice.oracle.timeline import OracleEvent, layout_oracle

# Text-stream ids of Moshi's aligned text (docs/kame.md section 5).
# Zero token: embeds to 0 and is masked out of every loss term.
NO_AUDIO = -1


@dataclass(frozen=True)
class CopyEpisodeOptions:
    """Shape of the episodes (frames are 80 ms)."""

    seq_len: int = 256
    # Share of replies preceded by a superseded oracle (another reply, reset before it is said):
    # the model must follow the latest oracle, as the live back-end's resets demand.
    superseded_share: float = 0.4
    # Frames from a superseded oracle to the one that replaces it.
    superseded_frames: tuple[int, int] = (3, 12)
    # First word of speech relative to the oracle's start frame: -8 (speech 0.64 s ahead of
    # the oracle: a late back-end, covered by the reply's opener) .. +15 (1.2 s behind it).
    speech_offset: tuple[int, int] = (-8, 15)
    # PAD frames after a word (aligned speech: ~0.1-0.3 s between word starts beyond the pieces).
    word_gap: tuple[int, int] = (1, 4)
    # Frames between the end of one reply and the next oracle.
    pause: tuple[int, int] = (2, 14)
    seed: int = 0


def read_replies(path: str | Path) -> list[str]:
    """One reply per non-empty line of a UTF-8 text file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the copy-episode replies ({exc})") from exc
    replies = [line.strip() for line in lines if line.strip()]
    if not replies:
        raise InputError(f"{path}: no replies (one per line expected)")
    return replies


@dataclass
class Episode:
    """One copy episode before layout."""

    text: np.ndarray  # [T] inner-monologue ids
    events: list[OracleEvent]  # every oracle, superseded ones included, in time order
    spoken: list[tuple[int, list[str]]]  # (index in `events`, the words said of its reply)


class CopyEpisodes:
    """Text-only samples `{"codes": [1 + n_q, T], "oracle": [T], "id"}` (see module doc)."""

    def __init__(
        self,
        replies: list[str],
        tokenizer: TextTokenizer,
        oracle_ids: TextIds,
        n_q: int,
        options: CopyEpisodeOptions = CopyEpisodeOptions(),
    ):
        if not replies:
            raise InputError("copy episodes need at least one reply")
        self.replies, self.tokenizer, self.oracle_ids = replies, tokenizer, oracle_ids
        self.n_q, self.options = n_q, options
        self._pieces: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        if text not in self._pieces:
            self._pieces[text] = list(self.tokenizer.encode(text))
        return self._pieces[text]

    def episode(self, rng: random.Random) -> Episode:
        """One sample's text stream and oracle events."""
        o = self.options
        T = o.seq_len
        ep = Episode(np.full(T, self.oracle_ids.pad, dtype=np.int64), [], [])
        frame = rng.randrange(0, o.pause[1] + 1)
        free = 1  # first frame the next word may use (speech never overlaps itself)
        while frame < T:
            if rng.random() < o.superseded_share:
                ep.events.append(OracleEvent(frame, self._encode(rng.choice(self.replies))))
                frame += rng.randint(*o.superseded_frames)
            reply = rng.choice(self.replies)
            ep.events.append(OracleEvent(frame, self._encode(reply)))
            ep.spoken.append((len(ep.events) - 1, []))
            t = max(free, frame + rng.randint(*o.speech_offset))
            for word in reply.split():
                pieces = self._encode(word)
                if t + 1 + len(pieces) > T:
                    return ep
                ep.text[t] = self.oracle_ids.end_of_padding
                ep.text[t + 1 : t + 1 + len(pieces)] = pieces
                ep.spoken[-1][1].append(word)
                t += 1 + len(pieces) + rng.randint(*o.word_gap)
            free = t
            frame = t + rng.randint(*o.pause)
        return ep

    def sample(self, index: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        """Sample `index` of `epoch` (deterministic)."""
        rng = random.Random(f"copy/{self.options.seed}/{epoch}/{index}")
        ep = self.episode(rng)
        T = self.options.seq_len
        codes = np.full((1 + self.n_q, T), NO_AUDIO, dtype=np.int64)
        codes[0] = ep.text
        oracle = layout_oracle(ep.events, T, self.oracle_ids)
        return {
            "codes": torch.from_numpy(codes),
            "oracle": torch.from_numpy(oracle.astype(np.int64)),
            "id": f"copy-{epoch}-{index}",
        }
