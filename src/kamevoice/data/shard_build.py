"""`kamevoice data shards`: tokenise a kame_finetune-layout directory into training shards.

Streams items (never the whole corpus in memory), encodes them on `workers`
processes, resumes after an interruption (finished shards are in the index,
their items are skipped), shows progress and ends with a summary.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from kamevoice.data.align import AlignSettings
from kamevoice.data.shards import Example, ShardWriter, encode_example, list_items
from kamevoice.errors import KameVoiceError

# Per-process state of a worker: the codec and tokenizer, loaded once by the initializer.
_worker: dict = {}


@dataclass
class ShardSummary:
    """What a shard build did."""

    items: int = 0
    skipped_done: int = 0
    frames: int = 0
    hours: float = 0.0
    oracle_events: int = 0
    oracle_tokens: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    turns_with_oracle: int = 0


def _init_worker(checkpoint: str, align: AlignSettings) -> None:
    import torch

    from kamevoice.frontend.loading import load_checkpoint_codec, load_tokenizer
    from kamevoice.frontend.model import text_ids_for
    from kamevoice.frontend.resolve import resolve_checkpoint

    torch.set_num_threads(1)  # one thread per worker process: the workers are the parallelism
    files = resolve_checkpoint(checkpoint)
    _worker.update(
        codec=load_checkpoint_codec(files),
        tokenizer=load_tokenizer(files.tokenizer),
        text_ids=text_ids_for(files.lm_kwargs),
        align=align,
    )


def _encode(args: tuple[str, str]) -> tuple[str, Example | None, str | None]:
    item_id, data_dir = args
    try:
        ex = encode_example(
            item_id,
            Path(data_dir),
            _worker["codec"],
            _worker["tokenizer"],
            _worker["text_ids"],
            _worker["align"],
        )
        return item_id, ex, None
    except (KameVoiceError, OSError, ValueError) as exc:
        return item_id, None, f"{type(exc).__name__}: {exc}"


def build_shards(
    data_dir: str | Path,
    out_dir: str | Path,
    checkpoint: str,
    align: AlignSettings = AlignSettings(),
    per_shard: int = 256,
    workers: int = 1,
    progress: bool = True,
) -> ShardSummary:
    """Encode every item of `data_dir` into shards under `out_dir`; returns (and writes) a summary.
    `align`: whom the model plays and how words and oracles are laid out (published by default)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    writer = ShardWriter(out_dir, per_shard)
    summary = ShardSummary()
    todo = []
    for item_id in list_items(data_dir):
        if item_id in writer.done_ids:
            summary.skipped_done += 1
        else:
            todo.append((item_id, str(data_dir)))
    frame_seconds = 0.08
    bar = tqdm(total=len(todo), desc="shards", unit="item", disable=not progress)
    results = []
    if workers <= 1:
        _init_worker(checkpoint, align)
        results = map(_encode, todo)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(checkpoint, align))
        results = pool.map(_encode, todo, chunksize=4)
    try:
        for item_id, example, error in results:
            bar.update(1)
            if example is None:
                summary.failures[item_id] = error or "unknown error"
                bar.write(f"skipped {item_id}: {error}")
                continue
            writer.add(example)
            summary.items += 1
            summary.frames += example.num_frames
            summary.oracle_events += len(example.oracles)
            summary.oracle_tokens += sum(len(o.tokens) for o in example.oracles)
            summary.turns_with_oracle += len(Counter(o.turn for o in example.oracles if o.turn >= 0))
        writer.flush()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    summary.hours = summary.frames * frame_seconds / 3600
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    return summary
