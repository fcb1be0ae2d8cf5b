"""Copy a finished `kamevoice tiny build` into the package's data (`kamevoice.tiny.defaults`).

What ships: the published checkpoint (config.json, weights, tokenizer), the knowledge
base its back-end answers from, the held-out questions `kamevoice eval tiny` plays,
and `build.json` (the build's options and every stage's figures, for provenance).
The destination is replaced as a whole, so a half-copied model never ships.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kamevoice.errors import ConfigError
from kamevoice.tiny.build import MAX_CHECKPOINT_MB, checkpoint_mb


def ship_build(build_dir: Path, dest: Path) -> dict:
    """Copy `build_dir`'s checkpoint, KB and held-out questions to `dest`; return build.json's content."""
    build_dir, dest = Path(build_dir), Path(dest)
    summary_path = build_dir / "summary.json"
    if not summary_path.is_file():
        raise ConfigError(f"{build_dir}: no summary.json: the build has not finished (rerun it to go on)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if "publish" not in summary["stages"]:
        raise ConfigError(f"{build_dir}: the build has no published checkpoint yet")
    checkpoint = build_dir / "checkpoint"
    size_mb = checkpoint_mb(checkpoint)
    if size_mb > MAX_CHECKPOINT_MB:
        raise ConfigError(f"{checkpoint}: {size_mb:.1f} MB, over the {MAX_CHECKPOINT_MB} MB limit")
    staging = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(checkpoint, staging / "checkpoint")
    for name in ("kb.jsonl", "qa_held_out.jsonl"):
        shutil.copyfile(build_dir / "knowledge" / name, staging / name)
    info = {"options": summary["options"], "stages": summary["stages"], "checkpoint_mb": round(size_mb, 2)}
    (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.replace(old)
    staging.replace(dest)
    shutil.rmtree(old, ignore_errors=True)
    return info
