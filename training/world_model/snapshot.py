"""A checkpoint of a run as it stands, without stopping it.

A long run writes its checkpoint only when it ends (or stops at ``--time-budget``); its training state, saved every
``--save-every`` updates, holds everything that checkpoint would hold. This rebuilds the trainer from that state and
the run's recorded settings and exports what the run would export at its last save: the same weights (the weights'
average where the run keeps one), start contexts and provenance. The run goes on undisturbed (its state is written
atomically, so a snapshot never reads half a file).

``python -m training.world_model.snapshot RUN_FOLDER --out FILE.safetensors [--trained-weights]``
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from gym_diamond import WorldModel
from gym_diamond.config import WorldModelConfig
from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset, environment_actions
from training.runtime.cli import user_errors
from training.runtime.run_folder import read_run_settings
from training.runtime.state import load_state
from training.world_model.run import NETWORKS, export_checkpoint
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig

RUN_KEYS = ("game", "data", "model_preset", "seed", "batch_size")  # what a snapshot reads from the run's settings


def run_identity(folder: Path) -> dict[str, Any]:
    """The game, data, model size, seed and global batch the run in ``folder`` recorded (``config.json``; a run
    trained in phases records them per phase, and its phases must agree on them)."""
    settings = read_run_settings(folder)
    if settings is None:
        raise UserError(f"{folder} holds no run settings (config.json): not a python -m training.world_model run")
    phases = [settings[n] for n in NETWORKS if isinstance(settings.get(n), dict)] if "game" not in settings \
        else [settings]
    identities = [{k: phase.get(k) for k in RUN_KEYS} for phase in phases]
    if not identities or any(identity != identities[0] for identity in identities):
        raise UserError(f"{folder}/config.json does not name one game, dataset, model size, seed and batch size: "
                        f"{identities}")
    return identities[0]


def snapshot_run(folder: str | Path, out: str | Path, *, trained_weights: bool = False) -> Path:
    """Export ``out``, the checkpoint the run in ``folder`` would write at its last saved update.

    ``trained_weights`` exports the weights themselves where the run keeps an average: a change of recipe on a
    branch shows in them at once, while an average of decay 0.999 still holds about a third of the weights of
    1,000 updates before."""
    folder = Path(folder)
    run = run_identity(folder)
    state_path = folder / "train_state.safetensors"
    if not state_path.exists():
        raise UserError(f"{folder} has no training state yet ({state_path.name} is written every --save-every "
                        f"updates): nothing to snapshot")
    state = load_state(state_path)
    config = WorldModelTrainingConfig(**state["config"])
    if trained_weights:
        config = dataclasses.replace(config, ema_decay=0.0)  # no average kept, so the export is the weights
    dataset = EpisodeDataset(run["data"], game=run["game"])
    game, action_meanings = environment_actions(dataset)
    model = WorldModel(WorldModelConfig.from_dict(state["model_config"]))
    trainer = WorldModelTrainer(model, dataset, config, seed=run["seed"])
    trainer.load_state_dict(state)
    return export_checkpoint(out, trainer, game=game, action_meanings=action_meanings, data=run["data"],
                             model_preset=run["model_preset"], seed=run["seed"],
                             processes=max(1, run["batch_size"] // config.batch_size))


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export the checkpoint of a world-model run at its last save, "
                                                 "without stopping the run.")
    parser.add_argument("run", help="the run folder (python -m training.world_model --out)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    parser.add_argument("--trained-weights", action="store_true",
                        help="export the trained weights, not their moving average (where the run keeps one)")
    args = parser.parse_args(argv)
    path = snapshot_run(args.run, args.out, trained_weights=args.trained_weights)
    print(f"world model checkpoint: {path}")


if __name__ == "__main__":
    main()
