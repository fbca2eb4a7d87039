"""Train a DIAMOND world model (denoiser + reward/termination model) on real episodes.

    python -m training.world_model --game Pong --data runs/pong/data --steps 2000 --out runs/pong/wm

The run folder holds ``train_state.safetensors`` (weights, optimisers, counters, RNG streams),
``losses.csv`` and the exported ``world_model.safetensors`` that ``gym.make`` loads. Killing the
command and running it again continues from the last saved state; the result is the same as an
uninterrupted run with the same seed on the CPU.

With ``--test-fraction F --fidelity-every N`` the run also judges its world model on the held-out
episodes every N updates (and at the end) and appends one row to ``fidelity.csv``
(``fidelity_figures``): whether open-loop dreams show the ball and the paddle where the real frames do
at horizons 1, 5 and 15, their pooled PSNR beside repeat-last's, whether the denoiser keeps the ball of
a noisy real frame at each noise level (``training.fidelity.measures.ball_shown_by_sigma``) and, when the
reward/termination model trains, its event recall and precision. It draws from its own seeds, so the
run trains exactly the same weights with it as without.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gym_diamond import WorldModel, save_checkpoint
from gym_diamond.atari import game_to_name
from gym_diamond.config import MODEL_SIZES, WorldModelConfig
from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name
from training.data.collect import read_collection_log
from training.data.dataset import EpisodeDataset, environment_actions
from training.fidelity.figures import fidelity_figures, fidelity_line
from training.runtime.csv_log import ScalarMeans
from training.runtime.distributed import init_distributed
from training.runtime.run_folder import RunFolder
from training.runtime.signals import terminate_as_interrupt
from training.runtime.state import load_state, save_state
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig
from training.world_model.warm_start import warm_start

NETWORKS = ("both", "denoiser", "rew_end")  # what train_world_model trains


def export_checkpoint(path: str | Path, trainer: WorldModelTrainer, *, game: str, action_meanings: list[str],
                      data: str | Path, model_preset: str, seed: int, processes: int = 1) -> Path:
    """Write what the trainer has learnt as a checkpoint: the exported model (the weights' average where there is
    one), real start contexts and the provenance of the run (``processes``: how many shared its batches)."""
    dataset, config, noise = trainer.dataset, trainer.config, trainer.noise_config
    provenance = {
        "denoiser_steps": trainer.steps["denoiser"], "rew_end_steps": trainer.steps["rew_end"],
        "dataset_steps": dataset.num_steps, "dataset_episodes": len(dataset), "seed": seed,
        "dataset_lengths_digest": dataset.lengths_digest(), "test_fraction": config.test_fraction,
        "trained_episode_fingerprints": trainer.trained_fingerprints(),
        "model_preset": model_preset, "processes": processes, "recipe": config.recipe,
        "autoregressive_steps": config.autoregressive_steps, "sample_weights": config.sample_weights,
        "context_noise": config.context_noise, "context_erasure": config.context_erasure,
        "context_ghosts": config.context_ghosts, "dream_contexts": config.dream_contexts,
        "dream_context_age": config.dream_context_age, "dream_context_tolerance": config.dream_context_tolerance,
        "termination_oversampling": config.termination_oversampling,
        "termination_lead_in": config.termination_lead_in,
        "reward_oversampling": config.reward_oversampling,
        "denoiser_reward_oversampling": config.denoiser_reward_oversampling,
        "denoiser_return_oversampling": config.denoiser_return_oversampling,
        "denoiser_serve_oversampling": config.denoiser_serve_oversampling,
        "denoiser_opponent_oversampling": config.denoiser_opponent_oversampling,
        "rew_end_input_noise": config.rew_end_input_noise, "changed_pixel_weight": config.changed_pixel_weight,
        "changed_pixel_source": config.changed_pixel_source,
        "train_sigma_loc": noise.train_sigma_loc, "train_sigma_scale": noise.train_sigma_scale,
        "context_length": trainer.model.config.denoiser.context_length, "lr": config.lr,
        "ema_decay": config.ema_decay, "batch_size": config.batch_size * processes, "branch_from": config.branch_from,
        "init_from": config.init_from, "train_cpu_hours": round(trainer.cpu_seconds / 3600, 6),
        "data_collection": read_collection_log(data), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    return save_checkpoint(path, trainer.exported_model().cpu(), game=game, action_meanings=action_meanings,
                           start_bank=trainer.start_bank(), provenance=provenance)

def train_world_model(game: str | None, data: str | Path, out: str | Path, steps: int, *, model_preset: str = "paper",
                      device: str | torch.device | None = None, seed: int = 0, save_every: int = 200,
                      log_every: int = 10, config: WorldModelTrainingConfig | None = None,
                      progress: bool = True, networks: str = "both", time_budget: float | None = None) -> Path:
    """Train (or resume training) for ``steps`` updates of each network; return the exported checkpoint.

    ``time_budget`` (seconds): stop at the first save (every ``save_every`` updates) after this much wall time,
    export the checkpoint as it stands, and leave the state to resume: called again with the same ``steps``,
    the run continues and trains the same weights as one uninterrupted run.

    ``networks="rew_end"`` trains the reward/termination model alone (``steps`` then counts its
    updates; the log is ``losses_rew_end.csv``): a cheap fine-tuning of a trained world model, e.g.
    with ``termination_oversampling``, that leaves the denoiser as it is. ``networks="denoiser"``
    trains the denoiser alone (log ``losses_denoiser.csv``): half the cost where only the frames are
    judged, as in a fidelity A/B, or to train the two networks in two processes.
    Under torchrun every process runs this; they train data-parallel (``config.batch_size`` each,
    training.runtime.distributed) and rank 0 writes the state, the log and the checkpoint. Every ``log_every``
    updates the log gets one row: each loss, and the seconds an update took, averaged over those updates.
    With ``config.fidelity_every`` N, rank 0 appends ``fidelity_figures`` on the held-out episodes to
    ``fidelity.csv`` (columns ``update``, ``seconds``: the evaluation's own time, ``train_cpu_hours``: the
    updates' CPU time so far, then the figures) after every N updates and the last, and prints them as one
    line; a resumed run drops the rows after its saved state and writes each update's row once.
    """
    rank = int(os.environ.get("RANK", "0"))  # under torchrun rank 0 writes the run folder; the others read it
    with RunFolder(out, "world-model training", writer=rank == 0) as folder, terminate_as_interrupt():
        return _train_world_model(game, data, folder, steps, model_preset=model_preset, device=device, seed=seed,
                                  save_every=save_every, log_every=log_every, config=config, progress=progress,
                                  networks=networks, time_budget=time_budget)


def _train_world_model(game: str | None, data: str | Path, folder: RunFolder, steps: int, *,
                       model_preset: str = "paper", device: str | torch.device | None = None, seed: int = 0,
                       save_every: int = 200, log_every: int = 10, config: WorldModelTrainingConfig | None = None,
                       progress: bool = True, networks: str = "both", time_budget: float | None = None) -> Path:
    """``train_world_model`` with the run folder already locked."""
    if time_budget is not None and time_budget <= 0:
        raise UserError(f"time budget must be > 0 seconds, got {time_budget}")
    if networks not in NETWORKS:
        raise UserError(f"networks must be one of {NETWORKS}, got {networks!r}")
    if model_preset not in MODEL_SIZES:
        raise UserError(f"model preset must be one of {sorted(MODEL_SIZES)}, got {model_preset!r}")
    if steps < 0:
        raise UserError(f"steps must be >= 0, got {steps}")
    try:
        dataset = EpisodeDataset(data, game=game)
    except ValueError:
        if game is not None and atari_game_name(game) is None:
            game_to_name(game)  # a misspelt Atari game: its error names the close ones
        raise
    game, action_meanings = environment_actions(dataset)
    distributed, device = init_distributed(device)
    main_rank = distributed.is_main
    torch.manual_seed(seed)
    # a fixed dataset: DIAMOND ignores its recency weights there (static_dataset.ignore_sample_weights)
    config = config or WorldModelTrainingConfig(sample_weights=None)
    # each phase (both networks, the denoiser alone, the reward/termination model alone) is held to its own settings:
    # a trained run's reward model may be fine-tuned with others. The global batch: a resume may run on another
    # number of processes (--batch-size is per process)
    folder.guard({"game": game, "data": str(Path(data).resolve()), "model_preset": model_preset, "seed": seed,
                  **config.run_settings(), "batch_size": config.batch_size * distributed.world_size}, phase=networks)
    model_config: WorldModelConfig = MODEL_SIZES[model_preset](len(action_meanings))
    model_config = model_config.replace(denoiser=config.denoiser_config(model_config.denoiser))
    model = WorldModel(model_config).to(device)
    trainer = WorldModelTrainer(model, dataset, config, seed=seed, distributed=distributed)
    state_path = folder.file("train_state.safetensors")
    if state_path.exists():
        trainer.load_state_dict(load_state(state_path))
    elif config.branch_from is not None:
        parent = Path(config.branch_from) / "train_state.safetensors"
        if not parent.exists():
            raise UserError(f"cannot branch from {config.branch_from}: it holds no saved training state "
                            f"(train_state.safetensors)")
        trainer.load_state_dict(load_state(parent), branch=True)
        if main_rank:  # its own from the start: a resume continues the branch, whatever the parent does since
            save_state(state_path, trainer.state_dict())
    elif config.init_from is not None:
        warm_start(trainer, config.init_from, game=game, action_meanings=action_meanings)
        if main_rank:  # a resume continues from this state, not from the checkpoint again
            save_state(state_path, trainer.state_dict())
    denoiser, rew_end = networks in ("both", "denoiser"), networks in ("both", "rew_end")
    counter = "denoiser" if denoiser else "rew_end"
    start = trainer.steps[counter]
    log = folder.log("losses.csv" if networks == "both" else f"losses_{networks}.csv", resume_at=start)
    every = trainer.config.fidelity_every
    fidelity_log = folder.log("fidelity.csv", resume_at=start, key="update")
    test_ids = np.zeros(0, np.int64)
    if every:
        test_ids = dataset.split(trainer.config.test_fraction, seed=0)[1]
        if test_ids.size == 0:
            raise UserError(f"fidelity logging needs held-out episodes, but test_fraction="
                            f"{trainer.config.test_fraction} holds none of the {len(dataset)} in {data} out: "
                            f"collect more episodes")
    bar = folder.progress_bar(total=steps, initial=min(start, steps), desc=f"{networks.replace('_', '/')} {game}",
                              enabled=progress)

    def judge(update: int) -> None:
        """Append the fidelity row of ``update`` (rank 0)."""
        t0 = time.perf_counter()
        row = fidelity_figures(trainer.exported_model(), dataset, test_ids, samples=trainer.config.fidelity_samples,
                               seed=seed, events=rew_end, sequence_length=trainer.config.rew_end_sequence_length)
        seconds = time.perf_counter() - t0
        fidelity_log.write({"update": update, "seconds": round(seconds, 2),
                            "train_cpu_hours": round(trainer.cpu_seconds / 3600, 6), **row})
        if progress:
            tqdm.write(fidelity_line(update, seconds, row))

    def fidelity_due(update: int) -> bool:
        return bool(every) and main_rank and update > 0 and (update % every == 0 or update == steps)

    if fidelity_due(start) and start not in fidelity_log.logged("update"):  # saved before its row was written
        judge(start)
    started = time.monotonic()
    window = ScalarMeans()  # a row is the mean over the updates since the last row, not its last update's
    try:
        for step in range(start, steps):
            t0, cpu0 = time.perf_counter(), time.process_time()
            scalars = {**(trainer.denoiser_step() if denoiser else {}), **(trainer.rew_end_step() if rew_end else {})}
            trainer.cpu_seconds += time.process_time() - cpu0
            window.add({**scalars, "seconds": time.perf_counter() - t0})
            if main_rank and ((step + 1) % log_every == 0 or step + 1 == steps):
                means = window.take()
                seconds = means.pop("seconds")
                log.write({"step": step + 1, **means, "seconds": round(seconds, 4)})
                bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if k.endswith("_loss")}, refresh=False)
            if fidelity_due(step + 1):  # before the save: a state is never ahead of its row
                judge(step + 1)
            saving = (step + 1) % save_every == 0
            if main_rank and saving:
                save_state(state_path, trainer.state_dict())
            bar.update(1)
            if saving and time_budget is not None and step + 1 < steps and \
                    distributed.broadcast(time.monotonic() - started >= time_budget):  # every rank stops together
                if progress and main_rank:
                    tqdm.write(f"time budget of {time_budget:g} s spent: stopped at update {step + 1} of {steps}, "
                               f"state saved in {state_path}; run the same command to continue")
                break
    finally:
        bar.close()
        if main_rank and trainer.steps[counter] > start:  # interrupted or done: keep what was learnt
            save_state(state_path, trainer.state_dict())
    checkpoint = folder.file("world_model.safetensors")
    if not main_rank:
        distributed.barrier()  # until rank 0 has written the checkpoint
        return checkpoint
    export_checkpoint(checkpoint, trainer, game=game, action_meanings=action_meanings, data=data,
                      model_preset=model_preset, seed=seed, processes=distributed.world_size)
    model.to(device)
    distributed.barrier()
    return checkpoint
