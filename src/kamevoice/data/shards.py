"""Training shards: codec tokens, frame-aligned text and tokenised oracle events, streamed from disk.

Format (chosen for zero new dependencies, memory-mapped reads and exact
dtypes): each shard is a `.safetensors` file holding, per example `ID`,
`ID/text` `[T]` int32, `ID/audio_model` and `ID/audio_user` `[K, T]` int16
(codec tokens of the modelled speaker and of the other one), and the oracle
events as `ID/oracle_frames`, `ID/oracle_turns`, `ID/oracle_lengths` `[E]`
int32 with their tokens concatenated in `ID/oracle_tokens`. `index.jsonl`
lists one finished shard per line (file, example ids, frames), written only
after the shard file is complete, so an interrupted build resumes without
redoing or half-reading anything. Augmentation is *not* baked in: it is
applied at load time (`ShardDataset`), seeded, with `kamevoice.data.augment`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kamevoice.data.align import AlignSettings, TokenizedOracle, align_text, tokenize_oracles
from kamevoice.data.augment import AugmentOptions, augment_oracles
from kamevoice.data.formats import (
    FormatError,
    read_oracle_events,
    read_stereo_wav,
    read_words,
    speaker_channel,
)
from kamevoice.errors import InputError
from kamevoice.frontend.codec import AudioCodec
from kamevoice.oracle.ids import TextIds
from kamevoice.oracle.pieces import TextTokenizer
from kamevoice.oracle.timeline import layout_oracle

INDEX_NAME = "index.jsonl"


@dataclass
class Example:
    """One dialogue on the frame grid."""

    id: str
    text: np.ndarray  # [T] text ids of the modelled speaker
    audio_model: np.ndarray  # [K, T] codec tokens of the modelled speaker
    audio_user: np.ndarray  # [K, T] codec tokens of the other speaker
    oracles: list[TokenizedOracle] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.text.shape[0])


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g, axis=0).astype(np.float32)


def encode_example(
    item_id: str,
    data_dir: Path,
    codec: AudioCodec,
    tokenizer: TextTokenizer,
    text_ids: TextIds,
    align: AlignSettings = AlignSettings(),
) -> Example:
    """Read `text/ID.json`, `audio/ID.wav` and (if present) `oracle_raw/ID.json`; tokenise all of it
    (`text_ids`: the special ids of the model the shards are for; `align`: whom the model plays and
    how words and oracles go on the frame grid, the published recipe by default)."""
    model_speaker = align.speaker
    words = read_words(data_dir / "text" / f"{item_id}.json")
    audio, rate = read_stereo_wav(data_dir / "audio" / f"{item_id}.wav")
    if audio.shape[1] != 2:
        raise FormatError(data_dir / "audio" / f"{item_id}.wav", f"expected 2 channels, got {audio.shape[1]}")
    audio = _resample(audio, rate, codec.sample_rate)
    channel = speaker_channel(model_speaker)
    pcm = torch.from_numpy(np.ascontiguousarray(audio.T))[:, None, :]  # [2, 1, samples]
    codes = codec.encode(pcm).cpu().numpy().astype(np.int16)  # [2, K, T]
    num_frames = codes.shape[-1]
    text, _ = align_text(words, tokenizer, num_frames, model_speaker, text_ids, timing=align.text_timing)
    oracle_path = data_dir / "oracle_raw" / f"{item_id}.json"
    oracles = []
    if oracle_path.exists():
        raw = read_oracle_events(oracle_path)
        oracles = tokenize_oracles(raw, tokenizer, words, channel, model_speaker, text=align.oracle_text)
    return Example(item_id, text.astype(np.int32), codes[channel], codes[1 - channel], oracles)


def write_shard(path: Path, examples: list[Example]) -> None:
    """Write examples into one safetensors shard, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for ex in examples:
        tensors[f"{ex.id}/text"] = torch.from_numpy(ex.text.astype(np.int32))
        tensors[f"{ex.id}/audio_model"] = torch.from_numpy(ex.audio_model.astype(np.int16))
        tensors[f"{ex.id}/audio_user"] = torch.from_numpy(ex.audio_user.astype(np.int16))
        tensors[f"{ex.id}/oracle_frames"] = torch.tensor([o.frame for o in ex.oracles], dtype=torch.int32)
        tensors[f"{ex.id}/oracle_turns"] = torch.tensor([o.turn for o in ex.oracles], dtype=torch.int32)
        tensors[f"{ex.id}/oracle_lengths"] = torch.tensor(
            [len(o.tokens) for o in ex.oracles], dtype=torch.int32
        )
        tensors[f"{ex.id}/oracle_tokens"] = torch.tensor(
            [t for o in ex.oracles for t in o.tokens], dtype=torch.int32
        )
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "kamevoice-shard-v1"})
    os.replace(tmp, path)


def read_index(out_dir: Path) -> list[dict]:
    """The finished shards of a shard directory (empty if none)."""
    index = out_dir / INDEX_NAME
    if not index.exists():
        return []
    entries = []
    for n, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{index}:{n}: not valid JSON ({exc})") from exc
    return entries


class ShardWriter:
    """Collects examples into shards of `per_shard`; appends each finished shard to the index."""

    def __init__(self, out_dir: Path, per_shard: int = 256):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.per_shard = per_shard
        self.done_ids = {i for entry in read_index(self.out_dir) for i in entry["ids"]}
        self._next = len(read_index(self.out_dir))
        self._pending: list[Example] = []

    def add(self, example: Example) -> None:
        self._pending.append(example)
        if len(self._pending) >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        name = f"shard-{self._next:05d}.safetensors"
        write_shard(self.out_dir / name, self._pending)
        entry = {
            "file": name,
            "ids": [e.id for e in self._pending],
            "frames": [e.num_frames for e in self._pending],
        }
        with open(self.out_dir / INDEX_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.done_ids.update(entry["ids"])
        self._pending = []
        self._next += 1


def read_example(shard: Path, item_id: str) -> Example:
    """One example back from a shard (memory-mapped)."""
    with safe_open(str(shard), framework="pt") as f:
        get = lambda name: f.get_tensor(f"{item_id}/{name}").numpy()  # noqa: E731
        lengths = get("oracle_lengths")
        tokens = get("oracle_tokens")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        oracles = [
            TokenizedOracle(int(fr), tuple(int(t) for t in tokens[offsets[i] : offsets[i + 1]]), int(turn))
            for i, (fr, turn) in enumerate(zip(get("oracle_frames"), get("oracle_turns"), strict=True))
        ]
        return Example(item_id, get("text"), get("audio_model"), get("audio_user"), oracles)


@dataclass(frozen=True)
class SampleOptions:
    """How `ShardDataset` turns examples into training samples."""

    seq_len: int | None = 512  # frames per sample (~41 s); None: whole dialogues
    audio_codebooks: int = 8  # codebooks per speaker the LM models (dep_q; n_q = 2x)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    seed: int = 0


class ShardDataset:
    """Streams training samples from a shard directory: `codes [1 + 2K, T]` and `oracle [T]`.

    Sample i of epoch e is a pure function of (seed, e, i): augmentation and
    the crop window are drawn from `random.Random(hash((seed, e, i)))`, so a
    resumed run sees exactly the samples an uninterrupted one would.
    """

    def __init__(self, shard_dir: str | Path, oracle_ids: TextIds, options: SampleOptions = SampleOptions()):
        self.dir = Path(shard_dir)
        self.options = options
        self.oracle_ids = oracle_ids
        self.entries = [
            (self.dir / e["file"], i, n)
            for e in read_index(self.dir)
            for i, n in zip(e["ids"], e["frames"], strict=True)
        ]
        if not self.entries:
            raise InputError(f"{self.dir}: no finished shards (no {INDEX_NAME} entries)")

    def __len__(self) -> int:
        return len(self.entries)

    def sample(self, index: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        """Sample `index` of `epoch`: {"codes": [1 + 2K, T] int64, "oracle": [T] int64, "id": str}."""
        shard, item_id, _ = self.entries[index]
        ex = read_example(shard, item_id)
        rng = random.Random(f"{self.options.seed}/{epoch}/{index}")
        events = augment_oracles(ex.oracles, rng, self.options.augment)
        oracle = layout_oracle(events, ex.num_frames, self.oracle_ids)
        k = self.options.audio_codebooks
        if ex.audio_model.shape[0] < k:
            raise InputError(f"{shard}: {item_id} has {ex.audio_model.shape[0]} codebooks, {k} needed")
        codes = np.concatenate(
            [ex.text[None].astype(np.int64), ex.audio_model[:k], ex.audio_user[:k]]
        ).astype(np.int64)
        seq = self.options.seq_len
        if seq is not None and ex.num_frames > seq:
            start = rng.randrange(ex.num_frames - seq + 1)
            codes, oracle = codes[:, start : start + seq], oracle[start : start + seq]
        return {
            "codes": torch.from_numpy(codes),
            "oracle": torch.from_numpy(oracle.astype(np.int64)),
            "id": item_id,
        }

    def epoch_order(self, epoch: int) -> list[int]:
        """A seeded permutation of the examples for `epoch`."""
        order = list(range(len(self)))
        random.Random(f"{self.options.seed}/order/{epoch}").shuffle(order)
        return order

    def iterate(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        for i in self.epoch_order(epoch):
            yield self.sample(i, epoch)


def list_items(data_dir: Path) -> Iterable[str]:
    """Item ids of a kame_finetune-layout directory: every `text/*.json`, sorted."""
    return sorted(p.stem for p in (Path(data_dir) / "text").glob("*.json"))
