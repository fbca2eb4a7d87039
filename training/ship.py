"""Make a trained world model the one ``gym.make("DiamondDream/<Game>-v0")`` finds with no argument.

    python -m training.ship --checkpoint runs/pong-wm/world_model.safetensors \
        --gates runs/pong-wm/gates.json --out gym_diamond/pretrained/Pong.safetensors

The weights are stored as float16 (half the size; a shipped file must stay under ``--max-mb``), and
the provenance gets what a user needs to judge the dream: the original training provenance (data,
the policy that played it, updates, seed), the quality-gate figures measured on held-out real
episodes (``--gates``, a JSON object), and the largest change float16 made to a weight. The written
file is loaded back and checked before the command reports success.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from gym_diamond import load_checkpoint, save_checkpoint
from gym_diamond.checkpoint import StartBank, read_metadata
from gym_diamond.config import SAMPLER_STARTS
from gym_diamond.errors import UserError
from training.runtime.cli import user_errors

__all__ = ["ship"]


def ship(checkpoint: str | Path, out: str | Path, *, gates: dict[str, Any] | None = None,
         max_mb: float = 25.0, denoising_steps: int | None = None, start_contexts: int | None = None,
         sampler_start: str | None = None) -> Path:
    """Write ``checkpoint`` at ``out`` in float16 with ``gates`` in its provenance; return ``out``.

    ``denoising_steps`` sets the sampler the shipped dream uses by default (the one the gates chose;
    ``gym.make(..., denoising_steps=k)`` still overrides it). ``start_contexts`` keeps the first that many of the
    start bank's real contexts (a random draw of the data): a 16-frame context weighs four 4-frame ones.
    ``sampler_start`` sets where its sampler starts (``gym_diamond.config.SAMPLER_STARTS``: DIAMOND's unit noise or
    EDM's noise scaled to sigma_max).
    """
    if start_contexts is not None and start_contexts < 1:
        raise UserError(f"start_contexts must be >= 1, got {start_contexts}")
    source = load_checkpoint(checkpoint)
    bank = source.start_bank
    if start_contexts is not None:
        bank = StartBank(bank.frames[:start_contexts], bank.actions[:start_contexts])
    model = source.world_model
    if denoising_steps is not None:
        model.config = model.config.with_denoising_steps(denoising_steps)
    if sampler_start is not None:
        model.config = model.config.with_sampler_start(sampler_start)
    weights = model.state_dict()
    half_error = max((w - w.half().float()).abs().max().item() for w in weights.values() if w.is_floating_point())
    provenance = {**source.provenance, "shipped": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "shipped_from": Path(checkpoint).name, "weights": "float16",
                  "float16_max_weight_change": half_error, "quality_gates": gates or {}}
    out = Path(out)
    save_checkpoint(out, model, game=source.game, action_meanings=source.action_meanings,
                    start_bank=bank, provenance=provenance, half=True)
    size_mb = out.stat().st_size / 2**20
    if size_mb > max_mb:
        out.unlink()
        raise UserError(f"{out} would be {size_mb:.1f} MB, over the {max_mb} MB limit: ship a smaller model or "
                        f"fewer start contexts (--start-contexts; {len(bank)} of "
                        f"{bank.frames.shape[1]} frames now)")
    shipped = load_checkpoint(out)  # the digest, the shapes and finite weights, as a user loads it
    if shipped.config.sampler != model.config.sampler:
        raise RuntimeError(f"{out}: the sampler did not survive the round trip")
    for name, weight in shipped.world_model.state_dict().items():
        if not torch.equal(weight, weights[name].half().to(weight.dtype)):
            raise RuntimeError(f"{out}: tensor {name} did not survive the round trip")
    return out


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a world model as the float16 file shipped for a game.")
    parser.add_argument("--checkpoint", required=True, help="a trained world_model.safetensors")
    parser.add_argument("--out", required=True, help="e.g. gym_diamond/pretrained/Pong.safetensors")
    parser.add_argument("--gates", default=None, help="JSON file of the quality-gate figures, kept in the provenance")
    parser.add_argument("--max-mb", type=float, default=25.0)
    parser.add_argument("--denoising-steps", type=int, default=None,
                        help="the sampler's steps the shipped dream uses by default (default: the checkpoint's)")
    parser.add_argument("--start-contexts", type=int, default=None,
                        help="keep this many of the checkpoint's real start contexts (default: all)")
    parser.add_argument("--sampler-start", choices=SAMPLER_STARTS, default=None,
                        help="where the shipped dream's sampler starts: unit noise (DIAMOND's) or noise scaled to "
                             "sigma_max (EDM's; with several steps the later ones pick one of a bounce's outcomes) "
                             "(default: the checkpoint's)")
    args = parser.parse_args(argv)
    gates = json.loads(Path(args.gates).read_text()) if args.gates else None
    out = ship(args.checkpoint, args.out, gates=gates, max_mb=args.max_mb, denoising_steps=args.denoising_steps,
               start_contexts=args.start_contexts, sampler_start=args.sampler_start)
    sampler = read_metadata(out)["config"]["sampler"]
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, float16, {sampler['num_steps']} denoising steps from "
          f"{sampler['start']} noise)")


if __name__ == "__main__":
    main()
