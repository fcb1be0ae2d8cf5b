"""`kamevoice bench adversarial`: attacks against a live server beside an honest conversation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register_adversarial(group: argparse._SubParsersAction) -> None:
    from kamevoice.bench.adversary.attacks import ATTACKS
    from kamevoice.bench.adversary.run import LLM_SCENARIOS

    names = [*ATTACKS, *LLM_SCENARIOS]
    p = group.add_parser(
        "adversarial",
        help="attack a live server (floods, frozen clients, slow headers, DNS rebinding, a stopped STT "
        "child, runaway LLMs) beside an honest conversation; print what the honest caller noticed",
        description="Start `kamevoice serve` (the embedded KAME-tiny) in its own process, measure an honest "
        "conversation alone, then beside each attack: model frames received, largest gap, transcript and "
        "oracle, /health latency, the server's memory; and whether each attack was dealt with. "
        f"Attacks: {', '.join(names)}.",
    )
    p.add_argument("--attacks", default=",".join(names), help="comma-separated attacks (default: all)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the honest conversation per attack")
    p.add_argument("--question", help="what the honest caller asks (default: a KAME-tiny question)")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write the figures as JSON")
    p.set_defaults(handler=run_adversarial_command)


def run_adversarial_command(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from kamevoice.bench.adversary.run import AdversaryOptions, run_adversarial
    from kamevoice.errors import ConfigError

    names = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    known = set(AdversaryOptions().attacks)
    if not names or set(names) - known:
        raise ConfigError(
            f"--attacks: unknown {sorted(set(names) - known)}; known: {', '.join(sorted(known))}"
        )
    console = Console(stderr=True)
    options = AdversaryOptions(attacks=names, seconds=args.seconds, question=args.question)
    report = asyncio.run(run_adversarial(options, progress=lambda n: console.log(f"running {n}")))
    table = Table(title="kamevoice bench adversarial (honest caller beside each attack)")
    for col in ("attack", "frames", "gap s (solo)", "transcript", "oracle", "health p90/max ms",
                "memory MB (peak-start)", "dealt with", "held"):  # fmt: skip
        table.add_column(col)
    for s in report["scenarios"]:
        ref, h, m = s["reference"], s["health"], s["memory_mb"]
        table.add_row(
            s["attack"], f"{ref['frame_share']:.0%}", f"{ref['largest_gap_s']:.2f} ({s['solo_gap_s']:.2f})",
            "yes" if ref["transcript"] else "no", "yes" if ref["oracle"] else "no",
            f"{h.get('p90_ms', '-')}/{h.get('max_ms', '-')}", f"{m['peak'] - m['start']:+.0f}",
            "yes" if s["checks"]["dealt_with"] else "NO", "yes" if s["held"] else "NO",
        )  # fmt: skip
    Console().print(table)
    if args.json:
        text = json.dumps(report, indent=2, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if report["held"] else 1
