"""Find a checkpoint's files, as the published loaders find them (`CheckpointInfo.from_hf_repo`).

A checkpoint is a local directory or a hub repo id (`Place`). Its description, in order:

1. `--config-path` (`CheckpointOverrides.config`), a config.json or a bare LM-arguments file;
2. its `config.json` (the published layout, `kamevoice.frontend.checkpoint`);
3. its `moshi_lm_kwargs.json` next to `model.safetensors`: a kame_finetune output, which
   holds no tokenizer or codec: they come from the flags, from the directory if it has them,
   else from the base repo (`--hf-repo`, by default Moshi's `kyutai/moshiko-pytorch-bf16`);
4. nothing: the original Moshi 7B (moshi's own defaults), as the published loaders assume.

Each file is the flag's if one names it, else the config's name (`hf://`, `file://` or
relative to the checkpoint, `kamevoice.frontend.sources`), else the published default name.
Without a checkpoint, the base repo is the checkpoint (the published server's `--hf-repo`).

A missing file is named with where it was looked for and the flag that supplies it; a missing
codec is noted (`CheckpointFiles.codec_missing`) and only an error for commands that need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moshi.models import loaders

from kamevoice.errors import CheckpointError, ConfigError
from kamevoice.frontend.checkpoint import (
    CONFIG_NAME,
    DEFAULT_REPO,
    FINETUNE_KWARGS_NAME,
    CheckpointFiles,
    CheckpointOverrides,
    parse_config,
)
from kamevoice.frontend.sources import Place, fetch_named

# How a checkpoint describes itself (`CheckpointFiles.kind`).
KIND_CONFIG, KIND_FINETUNE, KIND_MOSHI_7B = "config.json", "kame_finetune", "moshi-7b"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc


def resolve_checkpoint(
    source: str | Path | None,
    revision: str | None = None,
    overrides: CheckpointOverrides | None = None,
) -> CheckpointFiles:
    """Find a checkpoint's files (see module doc): `source` a local directory or hub repo id
    (None: the base repo of `overrides`), files named in `overrides` taking precedence."""
    o = overrides or CheckpointOverrides()
    root = source if source is not None else (o.base_repo or (DEFAULT_REPO if o.any else None))
    if root is None:
        raise CheckpointError("no checkpoint named: give a local directory or a hub repo id (or --hf-repo)")
    place = Place.of(root, revision)
    base_name = o.base_repo or DEFAULT_REPO
    kind, meta, lm_kwargs, described_by = _describe(place, o)
    # A checkpoint that describes itself in full names its own files; any other one gets what it
    # lacks from the base repo, as the published server gets it from --hf-repo.
    fallback = None if kind == KIND_CONFIG and not o.config else base_name
    if fallback is not None and not place.local and place.root == fallback:
        fallback = None  # the checkpoint is the base repo

    if described_by:
        why = f" (named by {described_by})"
    elif kind == KIND_FINETUNE:
        why = f" (a kame_finetune output: {FINETUNE_KWARGS_NAME} and its weights, no {CONFIG_NAME})"
    else:
        why = f" (Moshi's default name: there is no {CONFIG_NAME})"

    def find(
        flag: str | None, name: str, what: str, flag_name: str, required: bool = True, base: bool = True
    ):
        """(path or None, why it is missing): the flag's file, else `name` at the checkpoint, else
        (`base`) at the base repo."""
        if flag:
            return fetch_named(flag), ""
        use_base = base and fallback is not None
        try:
            found = place.fetch(name, required=required and not use_base, why=why)
        except CheckpointError as exc:
            if required:
                raise
            # An optional part (the codec) of a hub repo that cannot be reached: only an error for
            # the commands that load it.
            return None, f"{exc}: pass {flag_name} FILE"
        if found is not None:
            return found, ""
        if not use_base:
            return None, f"{place.describe()} has no {what} '{name}'{why}: pass {flag_name} FILE"
        try:
            return Place.of(fallback).fetch(name, required=True), ""
        except CheckpointError as exc:
            hint = (
                f"{place.describe()} has no {what} '{name}'{why}, and the base repo could not provide "
                f"it ({exc}): pass {flag_name} FILE, or --hf-repo REPO holding it"
            )
            if required:
                raise CheckpointError(hint) from exc
            return None, hint

    # The base repo may give the tokenizer and the codec, never the weights of another model.
    lm_weights, _ = find(o.lm_weights, meta.get("moshi_name", loaders.MOSHI_NAME), "LM weights",
                         "--moshi-weight", base=False)  # fmt: skip
    tokenizer, _ = find(o.tokenizer, meta.get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME), "tokenizer",
                        "--tokenizer")  # fmt: skip
    codec_name = meta.get("mimi_name", loaders.MIMI_NAME)
    codec_weights, codec_missing = None, ""
    if o.codec_weights or codec_name:
        codec_weights, codec_missing = find(o.codec_weights, codec_name, "codec weights", "--mimi-weight",
                                            required=False)  # fmt: skip
    codec_config = None
    if meta.get("mimi_config_name"):
        codec_config = _read_json(place.fetch(meta["mimi_config_name"], why=f" (named by {described_by})"))
    lora_weights = None
    if o.lora_weights:
        lora_weights = fetch_named(o.lora_weights)
    elif meta.get("lora_name"):
        lora_weights = place.fetch(meta["lora_name"], why=f" (named by {described_by} 'lora_name')")
    return CheckpointFiles(
        source=str(root),
        lm_weights=lm_weights,
        tokenizer=tokenizer,
        codec_weights=codec_weights,
        lm_kwargs=lm_kwargs,
        codec_config=codec_config,
        lm_gen_config=dict(meta.get("lm_gen_config", {})),
        model_type=meta.get("model_type", "moshi"),
        extra=dict(meta.get("kamevoice", {})),
        lora_weights=lora_weights,
        kind=kind,
        codec_missing=codec_missing,
    )


def _describe(place: Place, o: CheckpointOverrides) -> tuple[str, dict, dict, str]:
    """(kind, file/meta keys, LM kwargs, what describes it) of the checkpoint at `place`."""
    if o.config:
        path = fetch_named(o.config)
        meta, lm_kwargs = parse_config(_read_json(path), str(path))
        return KIND_CONFIG, meta, lm_kwargs, str(path)
    path = place.fetch(CONFIG_NAME, required=False)
    if path is not None:
        meta, lm_kwargs = parse_config(_read_json(path), str(path))
        return KIND_CONFIG, meta, lm_kwargs, CONFIG_NAME
    kwargs_path = place.fetch(FINETUNE_KWARGS_NAME, required=False) if place.local else None
    if kwargs_path is not None:
        raw = _read_json(kwargs_path)
        meta, lm_kwargs = parse_config(raw, str(kwargs_path))
        if meta:
            raise ConfigError(
                f"{kwargs_path}: a kame_finetune {FINETUNE_KWARGS_NAME} holds LM arguments only, "
                f"not {', '.join(sorted(meta))}"
            )
        return KIND_FINETUNE, {}, lm_kwargs, ""
    # The original Moshi 7B repos carry no config.json: moshi's defaults describe them.
    return KIND_MOSHI_7B, {}, dict(loaders._lm_kwargs), ""
