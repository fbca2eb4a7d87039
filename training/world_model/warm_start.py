"""Start a world-model run from an exported checkpoint: ``python -m training.world_model --init-from FILE``.

A checkpoint (a run's ``world_model.safetensors``, a snapshot, a shipped dream such as
``gym_diamond/pretrained/Pong.safetensors``) holds the networks a run exported and, in its provenance, the updates
that trained them, but no optimiser state. A warm start loads its networks into a trainer of the same architecture,
starts the weights' average (where the run keeps one) at those weights, continues the update counts and the CPU time
the provenance records, and warms the learning rate up again from there: fresh Adam moments would take full-size
steps at once, as on a network's first update. So a run can go on from a shipped dream, on new data or with a new
recipe, and its fidelity curve continues at the updates the checkpoint had.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gym_diamond import load_checkpoint
from gym_diamond.config import TRAINING_NOISE_FIELDS
from gym_diamond.errors import UserError
from training.fidelity.held_out import recorded_fingerprints

if TYPE_CHECKING:
    from training.world_model.trainer import WorldModelTrainer

__all__ = ["warm_start", "recorded_cpu_hours"]


def recorded_cpu_hours(provenance: dict[str, Any]) -> float:
    """The CPU hours of updates a checkpoint's provenance records: its own run's, or, for a combined checkpoint
    (training.world_model.combine), its denoiser's run's (the network the dream's fidelity curves count); 0 where
    none is recorded (checkpoints written before the figure was)."""
    if "train_cpu_hours" in provenance:
        return float(provenance["train_cpu_hours"])
    denoiser = provenance.get("combined", {}).get("denoiser", {})
    return float(denoiser.get("train_cpu_hours", 0.0))


def warm_start(trainer: WorldModelTrainer, checkpoint: str | Path, *, game: str, action_meanings: list[str]) -> None:
    """Load the networks of ``checkpoint`` into ``trainer`` (built for the same game and architecture), with the
    update counts and CPU time its provenance records; the learning rate warms up again from those counts."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"--init-from {path}: no such checkpoint file (a .safetensors written by "
                        f"python -m training.world_model, its snapshot or training.ship)")
    source = load_checkpoint(path)
    if source.game != game or source.action_meanings != action_meanings:
        raise UserError(f"--init-from {path} is a world model of {source.game} with actions "
                        f"{source.action_meanings}, not of this data's {game} with {action_meanings}")
    own = trainer.model.config
    # the training noise shapes the updates, not the networks: a run may continue a checkpoint with another
    theirs = dataclasses.replace(source.config.denoiser,
                                 **{name: getattr(own.denoiser, name) for name in TRAINING_NOISE_FIELDS})
    for what, mine, its in (("denoiser", own.denoiser, theirs), ("reward/termination model", own.rew_end,
                                                                 source.config.rew_end)):
        if mine != its:
            differing = [f.name for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(its, f.name)]
            raise UserError(f"--init-from {path}: its {what} is not the one this run trains (they differ in "
                            f"{', '.join(differing)}): train with the checkpoint's model size and context length")
    provenance = source.provenance
    trainer.steps = {name: int(provenance.get(f"{name}_steps") or 0) for name in ("denoiser", "rew_end")}
    for name in ("denoiser", "rew_end"):
        network = getattr(trainer.model, name)
        network.load_state_dict(getattr(source.world_model, name).state_dict())  # float16 (shipped) is widened
        if name in trainer.averages:
            trainer.averages[name].restart_at(network, trainer.steps[name])
    trainer.warmup_from = dict(trainer.steps)
    trainer.cpu_seconds = recorded_cpu_hours(provenance) * 3600
    trainer.inherited_fingerprints = set(recorded_fingerprints(provenance))
