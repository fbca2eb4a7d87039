"""One checkpoint from two: the denoiser of one world model, the reward/termination model of another.

The trainer can train the two networks in two processes (``--only-denoiser`` in one run folder,
``--only-rew-end`` in another, e.g. to fine-tune the reward model with ``--reward-oversampling`` while
the denoiser keeps training); a dream needs both in one file. DIAMOND trains them as separate
networks on the same data, so nothing but the game, the actions and the frame format ties them.

``python -m training.world_model.combine --denoiser A.safetensors --rew-end B.safetensors --out C.safetensors``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gym_diamond import WorldModel, load_checkpoint, save_checkpoint
from gym_diamond.errors import UserError
from training.runtime.cli import user_errors

# what the dream's frames and start contexts come from, the denoiser's data, also given at the top of the provenance
DREAM_DATA = ("dataset_steps", "dataset_episodes", "data_collection")


def combine_checkpoints(denoiser_path: str | Path, rew_end_path: str | Path, out: str | Path) -> Path:
    """Write ``out``: the denoiser, sampler and start contexts of ``denoiser_path``, the reward/termination
    model of ``rew_end_path``; both files' provenance is kept under their network's name."""
    den, rew = load_checkpoint(denoiser_path), load_checkpoint(rew_end_path)
    frame_format = [(c.config.denoiser.image_size, c.config.denoiser.image_channels) for c in (den, rew)]
    for what, a, b in (("game", den.game, rew.game), ("action names", den.action_meanings, rew.action_meanings),
                       ("frame format", *frame_format)):
        if a != b:
            raise UserError(f"{denoiser_path} and {rew_end_path} are not world models of the same environment: "
                            f"their {what} differ ({a} vs {b})")
    model = WorldModel(den.config.replace(rew_end=rew.config.rew_end))
    model.denoiser.load_state_dict(den.world_model.denoiser.state_dict())
    model.rew_end.load_state_dict(rew.world_model.rew_end.state_dict())
    model.eval()
    provenance: dict[str, Any] = {"combined": {"denoiser": {"file": str(denoiser_path), **den.provenance},
                                               "rew_end": {"file": str(rew_end_path), **rew.provenance}},
                                  "denoiser_steps": den.provenance.get("denoiser_steps"),
                                  "rew_end_steps": rew.provenance.get("rew_end_steps"),
                                  **{k: den.provenance[k] for k in DREAM_DATA if k in den.provenance}}
    return save_checkpoint(out, model, game=den.game, action_meanings=den.action_meanings,
                           start_bank=den.start_bank, provenance=provenance)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Combine the denoiser of one world-model checkpoint with the "
                                                 "reward/termination model of another into one checkpoint.")
    parser.add_argument("--denoiser", required=True, help="checkpoint whose denoiser (and start contexts) to keep")
    parser.add_argument("--rew-end", required=True, help="checkpoint whose reward/termination model to keep")
    parser.add_argument("--out", required=True, help="the combined checkpoint (.safetensors)")
    args = parser.parse_args(argv)
    print(f"combined world model: {combine_checkpoints(args.denoiser, args.rew_end, args.out)}")


if __name__ == "__main__":
    main()
