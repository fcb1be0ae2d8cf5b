"""`kamevoice model ...`: inspect and create front-end checkpoints."""

from __future__ import annotations

import argparse

from kamevoice.cli import add_group


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "model", "inspect and create front-end checkpoints (published Moshi/KAME layout)")
    info = group.add_parser(
        "info",
        help="load a checkpoint and print its shape, files and parameter count",
        description="Load a checkpoint (local directory or hub repo id such as SakanaAI/kame) and print a "
        "summary. Every file is checked: a missing, truncated or mismatched file is named in the error.",
    )
    info.add_argument("checkpoint", help="local directory or hub repo id")
    info.add_argument("--device", default="cpu")
    info.set_defaults(handler=run_info)

    init = group.add_parser(
        "init",
        help="write a random-weight checkpoint of a preset shape in the published layout",
        description="Write a random-weight KameLM of a preset shape (small, fixture, moshi-7b) with a given "
        "SentencePiece tokenizer, in the published layout. For tests, benchmarks and training from scratch.",
    )
    init.add_argument("out", help="output directory")
    init.add_argument("--preset", default="small")
    init.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(handler=run_init)


def run_info(args: argparse.Namespace) -> int:
    from kamevoice.frontend.loading import load_frontend

    frontend = load_frontend(args.checkpoint, device=args.device, load_codec=False)
    model, files = frontend.model, frontend.files
    params = sum(p.numel() for p in model.parameters())
    print(f"checkpoint   {files.source} ({files.kind})")
    print(
        f"lm weights   {files.lm_weights}" + (f" + LoRA {files.lora_weights}" if files.lora_weights else "")
    )
    print(f"tokenizer    {files.tokenizer} ({frontend.tokenizer.vocab_size()} pieces)")
    print(f"codec        {files.codec_weights or '-'}")
    print(f"parameters   {params / 1e6:.1f} M ({model.dtype})")
    print(
        f"shape        dim {model.dim}, layers {len(model.transformer.layers)}, n_q {model.n_q}, "
        f"dep_q {model.dep_q}, card {model.card}, text_card {model.text_card}"
    )
    print(f"delays       {model.delays}")
    print(f"generation   {files.lm_gen_config or 'defaults'}")
    layout = model.oracle_layout
    print(f"oracle       layout {layout.name} (step 0 reads {layout.first}, order {layout.order})")
    return 0


def run_init(args: argparse.Namespace) -> int:
    import torch

    from kamevoice.frontend.checkpoint import build_lm, save_checkpoint
    from kamevoice.frontend.loading import load_tokenizer
    from kamevoice.frontend.presets import preset

    lm_kwargs = preset(args.preset)
    tokenizer = load_tokenizer(args.tokenizer)
    if tokenizer.vocab_size() > lm_kwargs["text_card"]:
        lm_kwargs["text_card"] = tokenizer.vocab_size()
    torch.manual_seed(args.seed)
    model = build_lm(lm_kwargs)
    out = save_checkpoint(args.out, model, lm_kwargs, tokenizer=args.tokenizer)
    print(f"wrote {out}")
    return 0
