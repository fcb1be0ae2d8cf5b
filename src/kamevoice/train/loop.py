"""The training loop: `train(config)` on one process or under torchrun.

Read top to bottom: set up (model, finetune mode, resume, wrapping,
optimizer, data), then for each optimiser step: take the step's global batch
(`batches`), count its loss targets on every rank and sum the counts, run each
micro-batch forward and backward with the loss normalised by those global
counts, clip, step, log, validate, save.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kamevoice.errors import CheckpointError, ConfigError
from kamevoice.train.batches import (
    DataPosition,
    ShardMix,
    load_batch,
    micro_batches,
    rank_slice,
    sample_options,
)
from kamevoice.train.config import OptimConfig, TrainConfig
from kamevoice.train.distributed import (
    DistContext,
    Strategy,
    all_reduce_sum,
    barrier,
    choose_strategy,
    full_model_state,
    init_distributed,
    load_optimizer_state,
    optimizer_state,
    shutdown,
    unwrap,
    wrap_model,
)
from kamevoice.train.logging import RunLogger, memory_mb
from kamevoice.train.losses import TERMS, LossTerms, loss_terms, objective, summarize, term_counts
from kamevoice.train.parts import ModelSource, apply_finetune, build_model, export_checkpoint, resolve_source
from kamevoice.train.state import (
    TrainerState,
    finish_checkpoint,
    latest_checkpoint,
    read_trainer_state,
    restore_rng,
    staging_dir,
    step_dir,
    write_trainer_files,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class TrainResult:
    """What a `train` call did."""

    step: int  # optimiser steps done in all (resumed ones included)
    run_dir: Path
    last_checkpoint: Path | None
    params: int
    trainable: int
    strategy: str
    history: list[dict[str, Any]] = field(default_factory=list)  # train records of this call (main rank)


def lr_at(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up, then cosine to lr * min_lr_ratio."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + (optim.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters; weight decay on matrices and embedding tables only (not norms or biases)."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One run's state: model, optimizer, data position. `fit()` runs it."""

    def __init__(self, config: TrainConfig, ctx: DistContext):
        self.config, self.ctx = config, ctx
        self.run_dir = Path(config.run.out_dir)
        self.source: ModelSource = resolve_source(config.model)
        model = build_model(self.source, config.model, device=ctx.device)
        if model.n_q != 2 * model.dep_q:
            raise ConfigError(
                f"training reads the model's and the user's audio (n_q = 2 x dep_q); this LM has "
                f"n_q {model.n_q}, dep_q {model.dep_q}"
            )
        counts = apply_finetune(model, config.finetune)
        self.params, self.trainable = counts["params"], counts["trainable"]
        self.trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.ids = model.text_ids
        self.pad_id, self.delays, self.dep_q = model.existing_text_padding_id, list(model.delays), model.dep_q
        self.target_delays = self.delays[: 1 + self.dep_q]  # text + the model's audio streams

        resume_dir = latest_checkpoint(self.run_dir) if config.run.resume else None
        resumed: TrainerState | None = None
        if resume_dir is not None:
            resumed, weights = read_trainer_state(resume_dir)
            if set(weights) != set(self.trainable_names):
                raise CheckpointError(
                    f"{resume_dir}: its trained parameters do not match this config's "
                    "(finetune mode, frozen parts or LoRA rank changed?)"
                )
            model.load_state_dict(weights, strict=False)  # frozen weights come from the source, unchanged

        self.strategy: Strategy = choose_strategy(
            config.run.strategy, ctx.world, self.params, config.run.fsdp_min_params
        )
        use_cuda = ctx.device.type == "cuda"
        self.bf16 = config.run.precision == "bf16" or (config.run.precision == "auto" and use_cuda)
        self.module = wrap_model(model.to(ctx.device), self.strategy, ctx, self.bf16)
        self.model = unwrap(self.module)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, optim.weight_decay), lr=optim.lr, betas=optim.betas, eps=optim.eps
        )
        self.step, self.position, self.frames_seen = 0, DataPosition(), 0
        _seed_everything(config.run.seed + ctx.rank)
        if resumed is not None:
            load_optimizer_state(self.module, self.optimizer, resumed.optimizer, self.strategy)
            restore_rng(resume_dir, ctx.rank)
            self.step = resumed.step
            self.position = DataPosition(resumed.epoch, resumed.index)
            self.frames_seen = resumed.frames_seen
        self.resumed_from = resume_dir

        data = config.data
        self.train_data = ShardMix(
            data.train, self.ids, sample_options(data.seq_len, self.dep_q, data.augment, data.seed), data.seed
        )
        self.valid_data = (
            ShardMix(
                data.valid, self.ids, sample_options(data.seq_len, self.dep_q, False, data.seed), data.seed
            )
            if data.valid
            else None
        )
        self.copy_data = None
        if data.copy_replies is not None:
            from kamevoice.data.copy_episodes import CopyEpisodeOptions, CopyEpisodes, read_replies
            from kamevoice.frontend.loading import load_tokenizer

            self.copy_data = CopyEpisodes(
                read_replies(data.copy_replies),
                load_tokenizer(self.source.tokenizer),
                self.ids,
                model.n_q,
                CopyEpisodeOptions(seq_len=data.copy_seq_len, seed=data.seed),
            )
        if optim.batch_size % ctx.world:
            raise ConfigError(
                f"optim.batch_size {optim.batch_size} must be a multiple of {ctx.world} processes"
            )

    # -- one optimiser step ------------------------------------------------------------------

    def _autocast(self):
        if self.bf16 and self.strategy != "fsdp":  # FSDP casts through its mixed-precision policy
            return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _sync_grads(self, sync: bool):
        """Context for one micro-batch: gradient all-reduce only on the last one of a step."""
        if self.strategy == "ddp" and not sync:
            return self.module.no_sync()
        if self.strategy == "fsdp":
            self.module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def train_step(self) -> tuple[LossTerms, float, int]:
        """One optimiser step on the next global batch; returns this rank's loss terms, the gradient
        norm and the step's frames (all ranks)."""
        cfg, ctx = self.config, self.ctx
        copy_step = cfg.data.is_copy_step(self.step)
        if copy_step:  # text-only oracle copy episodes; the shards' position does not move
            assert self.copy_data is not None
            size = cfg.optim.batch_size
            picks, next_position = [(0, self.step * size + i) for i in range(size)], self.position
            source = self.copy_data
        else:
            picks, next_position = self.train_data.take(self.position, cfg.optim.batch_size)
            source = self.train_data
        mine = rank_slice(picks, ctx.rank, ctx.world)
        batches = [
            load_batch(source, mb, self.ids.pad, self.target_delays)
            for mb in micro_batches(mine, cfg.optim.micro_batch)
        ]
        # No audio target in the step: skip the depth transformer (one process only: DDP and FSDP
        # expect every parameter to take part in each backward pass).
        text_only = copy_step and self.strategy == "single"
        local_counts = sum(term_counts(codes, self.delays, self.dep_q, self.pad_id) for codes, _ in batches)
        counts = all_reduce_sum(local_counts, ctx)  # [4] targets per term in the whole global batch

        lr = lr_at(self.step, cfg.optim, cfg.run.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        total: LossTerms | None = None
        for i, (codes, oracle) in enumerate(batches):
            codes, oracle = codes.to(ctx.device), oracle.to(ctx.device)
            with self._sync_grads(i == len(batches) - 1), self._autocast():
                out = self.module(
                    codes, oracle=oracle, text_only=text_only
                )  # logits [B, dep_q, T, card], text [B, 1, T, text_card]
                terms = loss_terms(out, codes, self.pad_id)
                # DDP and FSDP average gradients over ranks: x world makes it the global batch's sum.
                loss = objective(terms.sums, counts, cfg.loss) * ctx.world
                loss.backward()
            terms = terms.detached()
            total = terms if total is None else total + terms
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        self.optimizer.step()
        self.step += 1
        self.position = next_position
        frames = int(counts[0] + counts[1])  # valid text targets = real frames in the batch
        self.frames_seen += frames
        assert total is not None
        return total, float(norm), frames

    def _global_summary(self, terms: LossTerms) -> dict[str, float]:
        packed = torch.cat([terms.sums.double(), terms.counts, terms.correct])
        packed = all_reduce_sum(packed, self.ctx)
        n = len(TERMS)
        return summarize(LossTerms(packed[:n], packed[n : 2 * n], packed[2 * n :]), self.config.loss)

    # -- validation ----------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out losses with the oracle on, and off (every frame PAD: 'the back-end has nothing')."""
        assert self.valid_data is not None
        n = min(self.config.data.valid_samples, len(self.valid_data))
        n = max(self.ctx.world, n - n % self.ctx.world)  # every rank runs the same number of passes
        picks = [(0, i % len(self.valid_data)) for i in range(n)]
        mine = rank_slice(picks, self.ctx.rank, self.ctx.world)
        self.module.eval()
        record: dict[str, float] = {}
        for mode in ("on", "off"):
            total: LossTerms | None = None
            for mb in micro_batches(mine, self.config.optim.micro_batch):
                codes, oracle = load_batch(self.valid_data, mb, self.ids.pad, self.target_delays)
                if mode == "off":
                    oracle = torch.full_like(oracle, self.ids.pad)
                codes, oracle = codes.to(self.ctx.device), oracle.to(self.ctx.device)
                with self._autocast():
                    terms = loss_terms(self.module(codes, oracle=oracle), codes, self.pad_id)
                total = terms if total is None else total + terms
            assert total is not None
            record.update({f"{mode}/{k}": v for k, v in self._global_summary(total).items()})
        record["oracle_gain"] = record["off/loss"] - record["on/loss"]  # > 0: the oracle helps
        self.module.train()
        return record

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self) -> Path:
        """Write the step's checkpoint (every rank takes part; the main rank writes the model)."""
        ctx, cfg = self.ctx, self.config
        final = step_dir(self.run_dir, self.step)
        staging = staging_dir(final)
        state = full_model_state(self.module, self.strategy)
        optim_state = optimizer_state(self.module, self.optimizer, self.strategy)
        if ctx.is_main:
            export_checkpoint(
                staging,
                state,
                self.source,
                cfg.finetune,
                dtype=_DTYPES[cfg.run.export_dtype],
                extra={"train_step": self.step},
            )
        barrier(ctx)
        trainer_state = TrainerState(
            step=self.step,
            epoch=self.position.epoch,
            index=self.position.index,
            optimizer=optim_state,
            schedule=cfg.optim.model_dump(),
            config=cfg.model_dump(),
            frames_seen=self.frames_seen,
        )
        trainable = {k: state[k] for k in self.trainable_names} if ctx.is_main else {}
        write_trainer_files(staging, trainer_state, trainable, ctx.rank, ctx.is_main)
        barrier(ctx)
        if ctx.is_main:
            finish_checkpoint(staging, final, self.run_dir, cfg.run.keep_checkpoints)
        barrier(ctx)
        return final

    # -- the loop --------------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train to `run.steps` (or stop, after saving, at step `stop_at`: an interruption on purpose)."""
        cfg, ctx = self.config, self.ctx
        end = cfg.run.steps if stop_at is None else min(stop_at, cfg.run.steps)
        log = RunLogger(
            self.run_dir, cfg.run.steps, self.step, ctx.is_main, cfg.run.progress, cfg.run.tensorboard
        )
        log.write(
            {
                "kind": "info",
                "step": self.step,
                "strategy": self.strategy,
                "world": ctx.world,
                "device": str(ctx.device),
                "bf16": self.bf16,
                "params": self.params,
                "trainable": self.trainable,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            }
        )
        history, last_ckpt = [], None
        tick, frames_since = time.perf_counter(), 0
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        try:
            while self.step < end:
                terms, norm, frames = self.train_step()
                frames_since += frames
                if self.step % cfg.run.log_every == 0 or self.step == end:
                    record = self._global_summary(terms)
                    elapsed = time.perf_counter() - tick
                    record.update(
                        kind="train",
                        step=self.step,
                        batch="copy" if cfg.data.is_copy_step(self.step - 1) else "dialogues",
                        lr=lr_at(self.step - 1, cfg.optim, cfg.run.steps),
                        grad_norm=norm,
                        frames_per_s=frames_since / elapsed if elapsed > 0 else float("nan"),
                        mem_mb=memory_mb(ctx.device),
                        epoch=self.position.epoch,
                        frames_seen=self.frames_seen,
                    )
                    log.write(record)
                    history.append(record)
                    log.advance(0, record)
                    tick, frames_since = time.perf_counter(), 0
                log.advance(1)
                if self.valid_data is not None and cfg.run.eval_every and self.step % cfg.run.eval_every == 0:
                    log.write({"kind": "valid", "step": self.step, **self.validate()})
                    tick, frames_since = time.perf_counter(), 0  # throughput counts training only
                if (cfg.run.save_every and self.step % cfg.run.save_every == 0) or self.step == end:
                    last_ckpt = self.save()
                    log.message(f"saved {last_ckpt}")
                    tick, frames_since = time.perf_counter(), 0
        finally:
            log.close()
        return TrainResult(
            self.step, self.run_dir, last_ckpt, self.params, self.trainable, self.strategy, history
        )


def train(config: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Run (or resume) a training run on this process, joining torchrun's process group if any."""
    ctx = init_distributed(config.run.device)
    if ctx.distributed and ctx.device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // ctx.world))  # processes share the cores
    try:
        return Trainer(config, ctx).fit(stop_at)
    finally:
        shutdown(ctx)
