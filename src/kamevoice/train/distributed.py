"""One process or many: process group, model wrapping (DDP or FSDP), and the few collectives training needs.

Launch many processes with `torchrun --nproc_per_node N -m kamevoice.cli train CONFIG`;
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) is
read here. A single process needs none of it.

- DDP replicates the model and averages gradients: for models that fit one device.
- FSDP (PyTorch's `fully_shard`, "FSDP2") shards parameters, gradients and
  optimizer state; each temporal-transformer layer and the depth transformer
  is its own unit. On a GPU its mixed-precision policy computes in bf16 and
  reduces gradients in fp32, keeping fp32 master weights.

Both average gradients over ranks; the loop multiplies each rank's loss by
the world size, so the step's gradient is the global batch's gradient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from kamevoice.errors import ConfigError
from kamevoice.frontend.device import resolve_device

Strategy = Literal["single", "ddp", "fsdp"]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group if launched by torchrun (or with RANK/WORLD_SIZE set); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    torch_device = resolve_device(device)
    if torch_device.type == "cuda" and torch_device.index is None:
        torch_device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, torch_device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def choose_strategy(requested: str, world: int, params: int, fsdp_min_params: int) -> Strategy:
    """'auto': single for one process, DDP for small models, FSDP from `fsdp_min_params` on."""
    if requested == "auto":
        if world == 1:
            return "single"
        return "fsdp" if params >= fsdp_min_params else "ddp"
    if requested == "single" and world > 1:
        raise ConfigError(f"strategy 'single' with {world} processes: use ddp or fsdp")
    if requested in ("ddp", "fsdp") and world == 1:
        return "single"  # one process: nothing to replicate or shard
    return requested  # type: ignore[return-value]


def wrap_model(model: nn.Module, strategy: Strategy, ctx: DistContext, bf16: bool) -> nn.Module:
    """The module the loop calls: the model itself, a DDP wrapper, or the model sharded in place."""
    if strategy == "single":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32 if bf16 else None
    )
    _register_fsdp_classes(model)
    for layer in model.transformer.layers:
        fully_shard(layer, mp_policy=policy)
    if getattr(model, "depformer", None) is not None:
        fully_shard(model.depformer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def _register_fsdp_classes(model: nn.Module) -> None:
    """Let `fully_shard` re-class moshi's modules.

    `fully_shard` turns a module's class `C` into `type("FSDP" + C, (FSDPModule, C))`. moshi's
    streaming modules derive from `(abc.ABC, nn.Module, typing.Generic)`, and CPython refuses that
    `__class__` assignment ("object layout differs"). The bases in the other order, `(C, FSDPModule)`,
    are accepted; FSDPModule's own methods (unshard, reshard, set_requires_gradient_sync...) are found
    either way; only its `_apply` (`.to()` on a sharded model) is shadowed, so models are moved to
    their device before sharding. fully_shard looks the class up in its cache first: we fill it.
    """
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.fsdp._fully_shard import _fully_shard as impl

    cache = getattr(impl, "cls_to_fsdp_cls", None)
    if cache is None:  # another torch version: let fully_shard try its own way
        return
    for module in model.modules():
        cls = type(module)
        if cls in cache or isinstance(module, FSDPModule):
            continue
        dummy = cls.__new__(cls)  # an uninitialised instance: only its layout matters
        try:
            dummy.__class__ = type(f"FSDP{cls.__name__}", (FSDPModule, cls), {})
        except TypeError:
            cache[cls] = type(f"FSDP{cls.__name__}", (cls, FSDPModule), {})


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP shards in place: the module itself)."""
    return getattr(module, "module", module)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks (a copy; the input is left alone). Identity for a single process."""
    if not ctx.distributed:
        return tensor.clone()
    out = tensor.detach().clone().to(ctx.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(out)
    return out.to(tensor.device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def full_model_state(module: nn.Module, strategy: Strategy) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict on the CPU; under FSDP every rank must call it."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return dict(get_model_state_dict(module, options=options))
    return {k: v.detach().cpu() for k, v in unwrap(module).state_dict().items()}


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, strategy: Strategy) -> dict:
    """The optimizer's full state (FQN-keyed under FSDP); under FSDP every rank must call it."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(module, optimizer, options=options)
    return optimizer.state_dict()


def load_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict, strategy: Strategy
) -> None:
    """Restore `optimizer_state` output into a freshly built optimizer (every rank)."""
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)
