"""`kamevoice tiny build`: KAME-tiny from nothing, stage by stage, resumably.

Stages, each recorded in `OUT/stages.json` when finished (a rerun skips it):

1. `knowledge`  invented facts -> `knowledge/kb.jsonl`, `qa_train.jsonl`, `qa_held_out.jsonl`
2. `dialogues`  QA -> dialogue scripts (`dialogues/train`, `dialogues/valid`)
3. `tokenizer`  SentencePiece on the dialogues' and KB's text -> `tokenizer/tokenizer_tiny.model`
4. `synth`      espeak-ng voices and rates -> `spoken/{train,valid}/audio`, `text`
5. `oracles`    offline simulator, hint levels 0-5 -> `spoken/{train,valid}/oracle_raw`
6. `init`       random-weight tiny LM + tokenizer + codec2 -> `init/` (published layout)
7. `shards`     Codec 2 tokens and aligned text -> `shards/{train,valid}`
8. `train`      `kamevoice.train` for at most `train_minutes` -> `train/checkpoints/step-N`:
                oracle copy episodes first (`knowledge/copy_replies.txt`: the training
                facts' replies and as many about novel facts), then the dialogues with
                copy steps mixed in
9. `publish`    the last checkpoint, codec2 named, size-checked -> `checkpoint/`

Validation dialogues ask held-out facts (never asked in training). The data stages run
through the `kamevoice data` commands, which resume item by item themselves.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kamevoice.errors import ConfigError
from kamevoice.oracle.layouts import KAME, LAYOUT_KEY

# The codec a tiny checkpoint names in config.json's `kamevoice` section.
CODEC_EXTRA: dict[str, Any] = {"codec": "codec2", "codec_mode": 1200}
# The oracle layout a new build trains with, written into its checkpoints' `kamevoice` section:
# the published one (`kamevoice.oracle.layouts`). The shipped KAME-tiny predates it and says
# `kamevoice-v1` in its config.json.
LAYOUT_EXTRA: dict[str, Any] = {LAYOUT_KEY: KAME.name}
# Sampling the published checkpoint asks for (Moshi's `lm_gen_config`; settings a user sets win):
# greedy text. A copied name or number has one right token at a time, which sampling often misses.
LM_GEN_CONFIG: dict[str, Any] = {"temp_text": 0.0}
# Decoding the published checkpoint asks for in its `kamevoice` section (settings a user sets win):
# oracle following (`kamevoice.frontend.policies.oracle_follow`): the network alone often leaves
# out or scrambles what its oracle holds; the bias was chosen on questions the evaluation does not
# use (docs/results.md, "Why the defaults").
DECODING_EXTRA: dict[str, Any] = {"oracle_follow_bias": 12.0}
# How the build lays out its training data, pinned: KAME-tiny's dialogues model speaker B (the
# assistant answers), word-start piece times and the simulator's predictions, as when the shipped
# checkpoint was built (`kamevoice.data.align.AlignSettings` defaults to the published recipe).
TINY_ALIGN: dict[str, Any] = {"speaker": "B", "text_timing": "word_start", "oracle_text": "prediction"}
# The limit on the shipped checkpoint (it is part of the package's data).
MAX_CHECKPOINT_MB = 25.0
STAGES = ("knowledge", "dialogues", "tokenizer", "synth", "oracles", "init", "shards", "train", "publish")
# Validation dialogues: one per this many training dialogues (at least one), from held-out facts.
VALID_EVERY = 20
# Training steps timed to size the run to the time budget, after warm-up steps (first-call
# allocations and data loading make the first steps slower than the run's).
PROBE_WARMUP_STEPS, PROBE_STEPS = 2, 3
# Novel-fact replies in the copy episodes, per training-fact reply: half the copy episodes say
# names no catalogue fact uses, which only the oracle can tell (see `novel_fact_replies`).
NOVEL_COPY_SHARE = 1.0
# Share of the training budget the run plans for: saves and validation take the rest.
TRAIN_BUDGET_SHARE = 0.9

# The training recipe; `configs/train_tiny.toml` holds the same values (a test checks).
# Samples of up to 256 frames (20 s) hold a whole tiny dialogue (~8 s). Oracle copy episodes
# (`kamevoice.data.copy_episodes`, text only, cheap steps) come first, then dialogues with every
# third step a copy step: dialogues alone never taught the model to copy names and numbers from
# its oracle (docs/results.md, "KAME-tiny: validation accuracy").
TRAIN_RECIPE: dict[str, dict[str, Any]] = {
    "data": {
        "seq_len": 256,
        "augment": True,
        "valid_samples": 16,
        "copy_warmup_steps": 2000,
        "copy_every": 3,
        "copy_seq_len": 256,
    },
    "optim": {
        "lr": 1e-3,
        "betas": [0.9, 0.95],
        "weight_decay": 0.1,
        "warmup_steps": 50,
        "batch_size": 8,
        "micro_batch": 8,
        "grad_clip": 1.0,
    },
    # The text stream carries the answer words that the oracle must bring in (what `kamevoice eval
    # tiny` scores); the audio is a codec2 rendering of the same words. With the paper's audio
    # weight 1.5 the trunk spends most of a short run on the 11 audio codebooks.
    # The text term as a weighted mean of PAD and non-PAD targets, as the shipped checkpoint was
    # trained (`LossWeights.text_loss` defaults to the published sum of the two means).
    "loss": {"audio_weight": 0.5, "text_loss": "weighted_mean"},
    "run": {
        "device": "cpu",
        "precision": "fp32",
        "log_every": 10,
        "eval_every": 100,
        "save_every": 50,
        "keep_checkpoints": 2,
        "export_dtype": "bfloat16",
    },
}


@dataclass(frozen=True)
class BuildOptions:
    """What `kamevoice tiny build` makes, and how long it may train."""

    facts: int = 6000
    dialogues: int = 10000
    train_minutes: float = 60.0
    seed: int = 0
    workers: int = 2
    # None: as many steps as the time budget allows (measured); a number: exactly that many.
    train_steps: int | None = None
    progress: bool = False

    def identity(self) -> dict[str, Any]:
        """The options that decide the data: a rerun with others would mix two builds."""
        return {"facts": self.facts, "dialogues": self.dialogues, "seed": self.seed}


def checkpoint_mb(folder: Path) -> float:
    """Size of a checkpoint folder's files in MiB (what the shipping limit counts)."""
    return sum(f.stat().st_size for f in Path(folder).iterdir()) / 2**20


class StageLog:
    """`OUT/stages.json`: finished stages with their wall time and figures."""

    def __init__(self, out: Path):
        self.path = out / "stages.json"
        self.done: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        )

    def finish(self, stage: str, seconds: float, result: dict[str, Any]) -> None:
        self.done[stage] = {"seconds": round(seconds, 2), **result}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def _check_identity(out: Path, options: BuildOptions) -> None:
    path = out / "build.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != options.identity():
            raise ConfigError(f"{out} holds a build with {before}; these options say {options.identity()}")
    else:
        path.write_text(json.dumps(options.identity(), indent=2) + "\n", encoding="utf-8")


def _require_done(summary: Any, what: str) -> None:
    """A data stage with failed items stops the build, naming them."""
    if summary.failures:
        raise ConfigError(
            f"{what}: {len(summary.failures)} item(s) failed: {dict(list(summary.failures.items())[:5])}"
        )


def planned_steps(budget_s: float, copy_s: float, dialogue_s: float, data: Any) -> int:
    """Optimiser steps that fit `budget_s` seconds: the copy warm-up, then dialogue steps with
    every `copy_every`th a copy step (`data` is the run's `DataConfig`)."""
    warmup = data.copy_warmup_steps if data.copy_replies else 0
    if budget_s <= warmup * copy_s:
        return max(1, int(budget_s / copy_s))
    every = data.copy_every if data.copy_replies else 0
    mean_s = dialogue_s if every == 0 else ((every - 1) * dialogue_s + copy_s) / every
    return warmup + max(1, int((budget_s - warmup * copy_s) / mean_s))


class TinyBuild:
    """One build directory; `run()` does the stages not yet done."""

    def __init__(self, out: Path, options: BuildOptions, say: Callable[[str], None] = print):
        self.out, self.options, self.say = Path(out), options, say
        self.out.mkdir(parents=True, exist_ok=True)
        _check_identity(self.out, options)
        self.log = StageLog(self.out)
        self.knowledge = self.out / "knowledge"
        self.tokenizer = self.out / "tokenizer"
        self.init = self.out / "init"
        self.run_dir = self.out / "train"
        self.checkpoint = self.out / "checkpoint"

    def split_dir(self, kind: str, split: str) -> Path:
        return self.out / kind / split

    def _run(self, workers: int = 1):
        from kamevoice.data.jobs import RunOptions

        return RunOptions(workers=workers, progress=self.options.progress)

    # -- stages -------------------------------------------------------------------------------

    def stage_knowledge(self) -> dict[str, Any]:
        from kamevoice.tiny.knowledge import KnowledgeOptions, write_knowledge

        files = write_knowledge(
            self.knowledge, KnowledgeOptions(facts=self.options.facts, seed=self.options.seed),
            self.options.dialogues,
        )  # fmt: skip
        return {"facts": files.facts, "train_questions": files.train_dialogues,
                "held_out_questions": files.held_out_questions}  # fmt: skip

    def stage_tokenizer(self) -> dict[str, Any]:
        import sentencepiece

        from kamevoice.tiny.tokenizer import TOKENIZER_NAME, TokenizerOptions, corpus_lines, train_tokenizer

        # Trained on what the model will read and say, in the proportions it will: the dialogue
        # turns (templates and number words thousands of times) and the KB's answers (the oracle).
        # On the QA lines alone the invented names dominated and "hundred" took five pieces.
        sources = [self.split_dir("dialogues", "train") / "dialogues.jsonl", self.knowledge / "kb.jsonl"]
        path = train_tokenizer(corpus_lines(sources), self.tokenizer / TOKENIZER_NAME, TokenizerOptions())
        return {"pieces": sentencepiece.SentencePieceProcessor(model_file=str(path)).vocab_size()}

    def _valid_questions(self) -> Path:
        """The held-out QA lines the validation dialogues ask (the first N)."""
        held = (self.knowledge / "qa_held_out.jsonl").read_text(encoding="utf-8").splitlines()
        count = max(1, self.options.dialogues // VALID_EVERY)
        path = self.knowledge / "qa_valid.jsonl"
        path.write_text("".join(line + "\n" for line in held[:count]), encoding="utf-8")
        return path

    def stage_dialogues(self) -> dict[str, Any]:
        from kamevoice.data.dialogues import DialogueOptions, fields_for
        from kamevoice.data.stages import make_dialogues

        inputs = {"train": self.knowledge / "qa_train.jsonl", "valid": self._valid_questions()}
        fields = fields_for("plain", id="id", answer_style="reply")
        for split, qa in inputs.items():
            summary = make_dialogues(
                [qa], self.split_dir("dialogues", split), fields, DialogueOptions(seed=self.options.seed),
                self._run(), source="plain",
            )  # fmt: skip
            _require_done(summary, f"dialogues ({split})")
        return {}

    def stage_synth(self) -> dict[str, Any]:
        from kamevoice.data.stages import synthesize
        from kamevoice.data.synth import SynthOptions

        for split in ("train", "valid"):
            summary = synthesize(
                self.split_dir("dialogues", split), self.split_dir("spoken", split),
                SynthOptions(engine="espeak", seed=self.options.seed), self._run(self.options.workers),
            )  # fmt: skip
            _require_done(summary, f"synth ({split})")
        return {}

    def stage_oracles(self) -> dict[str, Any]:
        from kamevoice.data.oracles import OracleOptions
        from kamevoice.data.stages import simulate_oracles

        for split in ("train", "valid"):
            spoken = self.split_dir("spoken", split)
            summary = simulate_oracles(
                spoken, spoken, OracleOptions(seed=self.options.seed), self._run(self.options.workers),
                seed=self.options.seed,
            )  # fmt: skip
            _require_done(summary, f"oracles ({split})")
        return {}

    def stage_init(self) -> dict[str, Any]:
        import torch

        from kamevoice.frontend.checkpoint import build_lm, save_checkpoint
        from kamevoice.frontend.presets import preset
        from kamevoice.tiny.tokenizer import TOKENIZER_NAME

        kwargs = preset("tiny")
        torch.manual_seed(self.options.seed)
        model = build_lm(kwargs)
        save_checkpoint(
            self.init, model, kwargs, tokenizer=self.tokenizer / TOKENIZER_NAME,
            extra={**CODEC_EXTRA, **LAYOUT_EXTRA},
        )  # fmt: skip
        return {"params": sum(p.numel() for p in model.parameters())}

    def stage_shards(self) -> dict[str, Any]:
        from kamevoice.data.align import AlignSettings
        from kamevoice.data.shard_build import build_shards

        result: dict[str, Any] = {}
        for split in ("train", "valid"):
            summary = build_shards(
                self.split_dir("spoken", split), self.split_dir("shards", split), str(self.init),
                align=AlignSettings(**TINY_ALIGN), workers=self.options.workers,
                progress=self.options.progress,
            )  # fmt: skip
            if summary.failures:
                raise ConfigError(
                    f"shards ({split}): {len(summary.failures)} dialogues failed: {summary.failures}"
                )
            result[split] = {
                "dialogues": summary.items + summary.skipped_done,
                "hours": round(summary.hours, 3),
            }
        return result

    def train_config(self, steps: int, out_dir: Path | None = None, resume: bool = True):
        """The training config of this build (the recipe, this build's paths, `steps` steps)."""
        from kamevoice.train.config import parse_train_config

        raw = json.loads(json.dumps(TRAIN_RECIPE))  # a deep copy
        raw["model"] = {"checkpoint": str(self.init)}
        shards = {split: [str(self.split_dir("shards", split))] for split in ("train", "valid")}
        raw["data"].update(**shards, seed=self.options.seed, copy_replies=str(self.copy_replies()))
        raw["run"].update(out_dir=str(out_dir or self.run_dir), steps=steps, seed=self.options.seed,
                          resume=resume, progress=self.options.progress)  # fmt: skip
        raw["run"]["save_every"] = min(raw["run"]["save_every"], steps)
        return parse_train_config(raw, "tiny build")

    def copy_replies(self) -> Path:
        """The copy episodes' replies (written once): every training fact's reply with every
        opener, and as many replies stating novel facts, about names the catalogue never uses."""
        from kamevoice.tiny.knowledge import fact_replies, novel_fact_replies

        path = self.knowledge / "copy_replies.txt"
        if not path.is_file():
            kb = self.knowledge / "kb.jsonl"
            lines = fact_replies(kb, held_out=False)
            novel = round(len(lines) * NOVEL_COPY_SHARE)
            lines += novel_fact_replies(kb, facts=novel, seed=self.options.seed)
            tmp = path.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            tmp.replace(path)
        return path

    def _probe_step_s(self) -> tuple[float, float]:
        """Seconds per training step of this recipe here, (copy-episode step, dialogue step): a
        throwaway trainer, timed on each kind."""
        import tempfile

        from kamevoice.train.distributed import init_distributed, shutdown
        from kamevoice.train.loop import Trainer

        with tempfile.TemporaryDirectory(dir=self.out) as tmp:
            ctx = init_distributed("cpu")
            try:
                config = self.train_config(PROBE_WARMUP_STEPS + PROBE_STEPS, Path(tmp), resume=False)
                trainer = Trainer(config, ctx)
                timings = []
                for kind_step in (0, config.data.copy_warmup_steps):  # a copy step, a dialogue step
                    for n in range(PROBE_WARMUP_STEPS + PROBE_STEPS):
                        if n == PROBE_WARMUP_STEPS:
                            start = time.perf_counter()
                        trainer.step = kind_step  # the step number picks the kind of batch
                        trainer.train_step()
                    timings.append((time.perf_counter() - start) / PROBE_STEPS)
                return timings[0], timings[1]
            finally:
                shutdown(ctx)

    def _planned_steps(self, deadline: float) -> tuple[int, dict | None]:
        """Steps of the run, fitted to the time left before `deadline` after the probe.

        Kept across resumes (`train/plan.json`): the learning-rate schedule depends on it.
        """
        plan = self.run_dir / "plan.json"
        if plan.is_file():
            saved = json.loads(plan.read_text(encoding="utf-8"))
            return saved["steps"], saved.get("probe_step_s")
        if self.options.train_steps is not None:
            steps, step_s = self.options.train_steps, None
        else:
            copy_s, dialogue_s = self._probe_step_s()
            budget = (deadline - time.perf_counter()) * TRAIN_BUDGET_SHARE
            steps = planned_steps(budget, copy_s, dialogue_s, self.train_config(1).data)
            step_s = {"copy": round(copy_s, 3), "dialogues": round(dialogue_s, 3)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        plan.write_text(json.dumps({"steps": steps, "probe_step_s": step_s}) + "\n", encoding="utf-8")
        return steps, step_s

    def stage_train(self) -> dict[str, Any]:
        from kamevoice.train.distributed import init_distributed, shutdown
        from kamevoice.train.loop import Trainer

        start = time.perf_counter()
        deadline = start + self.options.train_minutes * 60
        steps, step_s = self._planned_steps(deadline)
        config = self.train_config(steps)
        ctx = init_distributed("cpu")
        try:
            trainer = Trainer(config, ctx)
            first = trainer.step
            history: list[dict] = []
            # Chunks of save_every steps: the clock is checked between them, and each ends saved.
            # A run with no checkpoint yet trains its first chunk whatever the clock says (a slow
            # machine could otherwise spend the budget before step 1 and leave nothing to publish).
            while trainer.step < steps and (time.perf_counter() < deadline or trainer.step == 0):
                result = trainer.fit(stop_at=min(steps, trainer.step + config.run.save_every))
                history += result.history
            frames = trainer.frames_seen
        finally:
            shutdown(ctx)
        seconds = time.perf_counter() - start
        last = history[-1] if history else {}
        return {"planned_steps": steps, "steps": trainer.step, "steps_this_run": trainer.step - first,
                "probe_step_s": step_s, "frames_seen": frames, "stopped_by_clock": trainer.step < steps,
                "frames_per_s": last.get("frames_per_s"), "last_loss": last.get("loss"),
                "train_seconds": round(seconds, 1)}  # fmt: skip

    def stage_publish(self) -> dict[str, Any]:
        from kamevoice.train.state import latest_checkpoint

        source = latest_checkpoint(self.run_dir)
        if source is None:
            raise ConfigError(f"{self.run_dir}: no training checkpoint to publish")
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        # The layout comes with the training checkpoint (the one the run trained with).
        config["kamevoice"] = {**config.get("kamevoice", {}), **CODEC_EXTRA, **DECODING_EXTRA}
        config["lm_gen_config"] = {**config.get("lm_gen_config", {}), **LM_GEN_CONFIG}
        staging = self.out / "checkpoint.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in (config["moshi_name"], config["tokenizer_name"]):
            shutil.copyfile(source / name, staging / name)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        size_mb = checkpoint_mb(staging)
        if size_mb > MAX_CHECKPOINT_MB:
            raise ConfigError(
                f"the tiny checkpoint is {size_mb:.1f} MB, over the {MAX_CHECKPOINT_MB} MB limit"
            )
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        staging.replace(self.checkpoint)
        return {
            "from": str(source),
            "size_mb": round(size_mb, 2),
            "train_step": config["kamevoice"].get("train_step"),
        }

    # -- driver -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Do every unfinished stage in order; write and return `OUT/summary.json`."""
        total = time.perf_counter()
        ran: list[str] = []
        for stage in STAGES:
            if stage in self.log.done:
                self.say(f"[{stage}] done before ({self.log.done[stage]['seconds']:.1f} s), skipped")
                continue
            self.say(f"[{stage}] ...")
            start = time.perf_counter()
            result = getattr(self, f"stage_{stage}")()
            seconds = time.perf_counter() - start
            self.log.finish(stage, seconds, result)
            ran.append(stage)
            self.say(f"[{stage}] {seconds:.1f} s {json.dumps(result)}")
        summary = {
            "options": asdict(self.options),
            "ran": ran,
            "wall_s": round(time.perf_counter() - total, 1),
            "stages": self.log.done,
            "checkpoint": str(self.checkpoint),
            "knowledge_base": str(self.knowledge / "kb.jsonl"),
            "held_out_questions": str(self.knowledge / "qa_held_out.jsonl"),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary
