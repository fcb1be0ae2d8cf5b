"""Load a whole front-end (LM, tokenizer, codec) from a checkpoint in the published layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sentencepiece
import torch

from kamevoice.errors import CheckpointError
from kamevoice.frontend.checkpoint import CheckpointFiles, CheckpointOverrides
from kamevoice.frontend.codec import AudioCodec, MimiCodec
from kamevoice.frontend.device import resolve_device, resolve_dtype
from kamevoice.frontend.model import KameLM
from kamevoice.frontend.resolve import resolve_checkpoint
from kamevoice.frontend.weights import load_lm


@dataclass
class Frontend:
    """A loaded front-end: the LM, its text tokenizer, its codec (if loaded) and where they came from."""

    model: KameLM
    tokenizer: sentencepiece.SentencePieceProcessor
    codec: AudioCodec | None
    files: CheckpointFiles


def load_tokenizer(path: str | Path) -> sentencepiece.SentencePieceProcessor:
    """A SentencePiece model; an unreadable file gives an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tokenizer {path}: file is missing")
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"tokenizer {path}: not a SentencePiece model ({exc})") from exc
    return processor


def load_frontend(
    source: str | Path | None,
    device: str = "auto",
    dtype: str = "auto",
    load_codec: bool = True,
    revision: str | None = None,
    overrides: CheckpointOverrides | None = None,
    fuse_lora: bool = True,
) -> Frontend:
    """Resolve, check and load a checkpoint (local directory or hub repo id; None: the base repo
    of `overrides`), its parts as `overrides` name them; LoRA adapters merged unless `fuse_lora`
    is False. The LM's weights go straight to `device` (`kamevoice.frontend.weights`)."""
    files = resolve_checkpoint(source, revision=revision, overrides=overrides)
    torch_device = resolve_device(device)
    model = load_lm(files, device=torch_device, dtype=resolve_dtype(dtype, torch_device), fuse_lora=fuse_lora)
    tokenizer = load_tokenizer(files.tokenizer)
    if tokenizer.vocab_size() > model.text_card:
        raise CheckpointError(
            f"tokenizer {files.tokenizer}: {tokenizer.vocab_size()} pieces, more than the LM's "
            f"text_card {model.text_card}"
        )
    codec = load_checkpoint_codec(files, device=torch_device) if load_codec else None
    return Frontend(model, tokenizer, codec, files)


def load_checkpoint_codec(files: CheckpointFiles, device: str | torch.device = "cpu") -> AudioCodec:
    """The codec a checkpoint names, with as many codebooks as its LM models per speaker.

    Mimi by default; the `kamevoice` section of config.json may name another,
    e.g. `{"codec": "codec2", "codec_mode": 1300}` (no weights file).
    """
    kind = files.extra.get("codec", "mimi")
    if kind == "codec2":
        return _load_codec2(files)
    if kind != "mimi":
        raise CheckpointError(f"checkpoint {files.source}: unknown codec {kind!r} (known: mimi, codec2)")
    if files.codec_weights is None:
        raise CheckpointError(
            files.codec_missing or f"checkpoint {files.source}: no codec weights (config.json 'mimi_name')"
        )
    n_q, dep_q = files.lm_kwargs["n_q"], files.lm_kwargs["dep_q"]
    return MimiCodec.load(
        files.codec_weights, num_codebooks=max(dep_q, n_q - dep_q), device=device, config=files.codec_config
    )


def _load_codec2(files: CheckpointFiles) -> AudioCodec:
    """Codec 2 from the `kamevoice` section, checked against the LM's token shape."""
    from kamevoice.frontend.codec2 import Codec2Codec

    codec = Codec2Codec.load(files.extra)
    n_q, dep_q, card = files.lm_kwargs["n_q"], files.lm_kwargs["dep_q"], files.lm_kwargs["card"]
    # Fewer codebooks than the codec gives are fine: the engine feeds the first ones, and decoding
    # fills the missing refinements (`Codec2Codec.decode_frame`).
    if card != codec.cardinality or max(dep_q, n_q - dep_q) > codec.num_codebooks:
        raise CheckpointError(
            f"checkpoint {files.source}: the LM models {dep_q} + {n_q - dep_q} codebooks of {card} tokens, "
            f"codec2 {files.extra} gives {codec.num_codebooks} of {codec.cardinality}"
        )
    return codec
