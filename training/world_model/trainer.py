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

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from gym_diamond import StartBank, WorldModel, save_checkpoint, to_model_frames
from gym_diamond.acceleration import Acceleration
from gym_diamond.atari import game_to_name
from gym_diamond.config import MODEL_SIZES, TRAINING_NOISE_FIELDS, DenoiserConfig, WorldModelConfig
from gym_diamond.cpu_memory import keep_freed_memory
from gym_diamond.diffusion import TrainingNoise
from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name
from training.data import ball_paths
from training.data.collect import read_collection_log
from training.data.dataset import (
    DIAMOND_SAMPLE_WEIGHTS,
    EpisodeDataset,
    Segment,
    check_sample_weights,
    environment_actions,
)
from training.data.sampling import BatchSampler
from training.fidelity.figures import fidelity_figures, fidelity_line
from training.runtime.csv_log import ScalarMeans
from training.runtime.distributed import Distributed, init_distributed
from training.runtime.optim import adamw, optimizer_update, warmup_lr
from training.runtime.run_folder import RunFolder
from training.runtime.signals import terminate_as_interrupt
from training.runtime.state import load_optimizer_state, load_state, optimizer_state, restore_rng, rng_state, save_state
from training.world_model.warm_start import warm_start
from training.world_model.weight_average import WeightAverage

# Version of the training recipe in saved training states: 2 is DIAMOND's trainer (autoregressive denoiser
# targets, grey padding, its sampling, weight-decay groups and warm-up); states without it came before.
TRAINING_RECIPE = 2
NETWORKS = ("both", "denoiser", "rew_end")  # what train_world_model trains
# Named training recipes: the WorldModelTrainingConfig fields each sets, the others keeping DIAMOND's values.
# "cpu": the sample-efficiency study's best per update on a CPU budget so far (benchmarks/README.md, "Faithful
# dreams on a CPU budget"): the loss weighted on the pixels that change (the ball), training noise centred
# nearer sigma 5, where a one-step sampler decides the frame, and 10x DIAMOND's learning rate with a moving
# average of the weights exported (the ball gate at 750 updates, against 1,250 at 3e-4 and none by 1,500 at 1e-4)
RECIPES: dict[str, dict[str, Any]] = {
    "diamond": {},
    "cpu": {"changed_pixel_weight": 20.0, "train_sigma_loc": 0.4, "train_sigma_scale": 1.0, "lr": 1e-3,
            "ema_decay": 0.999},
}
CHANGED_PIXEL_SOURCES = ("target", "context")  # WorldModelTrainingConfig.changed_pixel_source
# pixels around the last context change that "context" weights cover: Pong's ball moves at most 4.7 pixels a step in
# 99% of steps at 64x64 (3.2 in 95%; 3 episodes collected by the follower)
CONTEXT_REACH = 5
# fields a resumed run may change: how fast it runs and how often it is judged, not what it trains
NOT_RUN_SETTINGS = ("precision", "compile", "fidelity_every", "fidelity_samples", "recipe")
# settings added after runs were recorded without them: recorded only away from these defaults, so those runs resume
LATER_SETTINGS = {"denoiser_return_oversampling": 0.0, "denoiser_serve_oversampling": 0.0, "rew_end_input_noise": 0.0,
                  "branch_from": None, "changed_pixel_source": "target", "init_from": None}



@dataclass(frozen=True)
class WorldModelTrainingConfig:
    """DIAMOND's training of the world model (its ``config/trainer.yaml`` and ``src/trainer.py``).

    Every default is DIAMOND's; the options that differ from it are named and off by default.
    """

    batch_size: int = 32
    lr: float = 1e-4
    eps: float = 1e-8
    weight_decay: float = 0.01  # on linear, conv and LSTM weights only (training.runtime.optim)
    warmup_steps: int = 100
    denoiser_grad_clip: float = 1.0
    rew_end_grad_clip: float = 100.0
    # frames per reward/termination sequence: horizon 15 + context 4, so 18 transitions carry loss
    rew_end_sequence_length: int = 19
    # DIAMOND's num_autoregressive_steps: each denoiser sample has 1 + this many consecutive targets, the
    # later ones conditioned on the model's own estimate of the one before
    autoregressive_steps: int = 1
    # Episode sampling by recency groups (training.data.sampling.BatchSampler.episode_weights): DIAMOND's
    # (0.1, 0.1, 0.1, 0.7) for a growing dataset; None (length-proportional) is DIAMOND's rule for a
    # fixed dataset, which ``python -m training.world_model`` trains on
    sample_weights: tuple[float, ...] | None = DIAMOND_SAMPLE_WEIGHTS
    test_fraction: float = 0.0  # episodes held out for the fidelity benchmark (same split, seed 0)
    precision: str = "fp32"  # "bf16": autocast of the networks' forward passes (losses stay fp32)
    compile: bool = False  # torch.compile the denoiser's U-Net and the reward/termination model in place
    # GameNGen's answer to autoregressive drift, off for DIAMOND-exact training: Gaussian noise of a
    # per-sample level drawn uniformly in [0, context_noise] (frames in [-1, 1]) on the real context
    # frames, so the denoiser learns to repair a context that is slightly off, as its own dreamed frames are
    context_noise: float = 0.0
    # Terminations are rare (a Pong game ends every ~1,500 steps, so about one reward/termination batch in
    # three holds one): this fraction of each batch's sequences is cut around the end of a terminated
    # episode instead, so the termination head sees more of them. 0: DIAMOND's sampling
    termination_oversampling: float = 0.0
    # Rewards can be as rare (Boxing: 3% of transitions): this fraction of each batch's sequences is cut around a
    # rewarded transition instead, so the reward head sees more of them at a CPU's few thousand updates where
    # DIAMOND runs hundreds of thousands. 0: DIAMOND's sampling
    reward_oversampling: float = 0.0
    # The denoiser's side of it: this fraction of each denoiser batch predicts the frame right after a rewarded
    # transition (in Boxing, where a punch lands and the score changes), so that the dream learns to draw what
    # earns a reward; a dream that does not draw it never rewards its agents. 0: DIAMOND's sampling
    denoiser_reward_oversampling: float = 0.0
    # And for the bounce (Pong): this fraction of each denoiser batch predicts one of the frames right after the ball
    # reaches the player's paddle (training.data.ball_paths: the game returns it or lets it through), the rule an
    # agent must learn, which a few pixels of a few frames per rally barely weigh. 0: DIAMOND's sampling
    denoiser_return_oversampling: float = 0.0
    # And for the serve: this fraction predicts the frame where the ball comes back after frames without it
    # (training.data.ball_paths.serve_moments), one frame in a hundred of Pong's play. A dream that never serves
    # stalls after its first point; a Pong lead trained with the bounce oversampled drew no serve in its first 3,750
    # updates, where one without drew 89% at 3,450. 0: DIAMOND's sampling
    denoiser_serve_oversampling: float = 0.0
    # The reward/termination model reads the dream's frames in imagination but is trained on real ones, which a few
    # thousand updates let it memorise: a Pong termination model read P(end) 1.00 on real final frames and 0.0-0.6
    # on the dream's near-identical ones (and 0.0 on the real ones with Gaussian noise of std 0.03). With this level
    # N > 0, every frame of each training sequence gets Gaussian noise of a per-sequence std drawn uniformly in
    # [0, N] (frames in [-1, 1]), so that its judgement holds on frames a few levels off. 0: DIAMOND's training
    rew_end_input_noise: float = 0.0
    # Off (0) for DIAMOND-exact training: the denoiser's squared error on each target is weighted per pixel
    # by 1 + W where the target differs from the frame before it (dilated by a pixel: the moving ball and
    # its neighbourhood), normalised to a mean weight of 1 per frame (changed_pixel_weights). Against
    # dreams that drop the ball, a pixel or two of 4096 that DIAMOND's mean squared error barely weighs
    changed_pixel_weight: float = 0.0
    # Which pixels weigh 1 + W: "target", those where the target differs from the frame before it (the weight then
    # depends on the outcome, which tilts the optimum toward drawing the ball wherever it may go: at a pixel the ball
    # reaches with probability p the weighted mean is (1 + W)p / ((1 + W)p + 1 - p), 0.70 for p = 0.1 at W = 20, so
    # an uncertain bounce is drawn as several balls); "context", those that changed between the last two context
    # frames, dilated by CONTEXT_REACH pixels to cover the ball's next step: the ball's neighbourhood, chosen before
    # the outcome, so the optimum stays the conditional mean
    changed_pixel_source: str = "target"
    # Every N updates (and at the end) judge the model on the held-out episodes (test_fraction > 0) and
    # append the figures to fidelity.csv (fidelity_figures); 0: never. Changes no training draw
    fidelity_every: int = 0
    fidelity_samples: int = 32  # held-out samples per figure (dreams and noisy frames)
    # The denoiser's training noise, ln sigma ~ Normal(train_sigma_loc, train_sigma_scale): None keeps the model
    # config's (DIAMOND's -0.4, 1.2). With one Euler step the sample is D(noise; sigma_max = 5), a next-frame
    # regression decided where DIAMOND's distribution puts 5% of its draws; a higher location trains more there.
    # Written into the checkpoint's denoiser config and provenance
    train_sigma_loc: float | None = None
    train_sigma_scale: float | None = None
    # Frames the denoiser is conditioned on (DIAMOND's num_steps_conditioning, 4): None keeps the model preset's. A
    # game whose next frame depends on more than the last 4 needs more: Pong serves the ball 16 steps after a
    # point, which 4 still frames cannot time, and a few-step sampler does not draw a 1-in-12 serve at random
    context_length: int | None = None
    # Exponential moving average of the weights (decay per update, warmed up as (1 + n) / (10 + n) over the first
    # updates); the average is what the checkpoint exports and fidelity.csv judges. 0: off, DIAMOND's training
    ema_decay: float = 0.0
    # Another run folder whose saved training state (weights, averages, optimizers, update counts, random streams)
    # this run starts from, trained on with this config's settings: an A/B of a change from a trained run at
    # equal updates, or a fix to a lead without starting over. None: from scratch
    branch_from: str | None = None
    # An exported checkpoint (a run's world_model.safetensors, a snapshot, a shipped dream) whose networks this run
    # starts from, with new optimisers warmed up again and the update counts its provenance records
    # (training.world_model.warm_start). None: from scratch
    init_from: str | None = None
    recipe: str = "diamond"  # the name of the recipe the other fields started from (RECIPES), for the record

    @classmethod
    def from_recipe(cls, recipe: str, **fields: Any) -> WorldModelTrainingConfig:
        """The config of a named recipe (RECIPES), with ``fields`` set over it."""
        if recipe not in RECIPES:
            raise UserError(f"unknown training recipe {recipe!r}: expected one of {sorted(RECIPES)}")
        return cls(**{**RECIPES[recipe], **fields, "recipe": recipe})

    def run_settings(self) -> dict[str, Any]:
        """The fields that decide what a run trains, which its resumes must repeat (speed and judging left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in NOT_RUN_SETTINGS and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}

    def training_noise(self, denoiser: DenoiserConfig) -> DenoiserConfig:
        """``denoiser`` with this config's training-noise distribution (the fields left None keep its own)."""
        overrides = {name: getattr(self, name) for name in ("train_sigma_loc", "train_sigma_scale")
                     if getattr(self, name) is not None}
        return dataclasses.replace(denoiser, **overrides)

    def denoiser_config(self, denoiser: DenoiserConfig) -> DenoiserConfig:
        """``denoiser`` with this config's training noise and context length (the fields left None keep its own)."""
        denoiser = self.training_noise(denoiser)
        if self.context_length is None:
            return denoiser
        return dataclasses.replace(denoiser, context_length=self.context_length)

    def __post_init__(self) -> None:
        if self.context_length is not None and self.context_length < 1:
            raise UserError(f"WorldModelTrainingConfig.context_length={self.context_length} is invalid: expected "
                            f">= 1 frame")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise UserError(f"WorldModelTrainingConfig.{name}={getattr(self, name)} is invalid: expected >= 1")
        if self.rew_end_sequence_length < 2:
            raise UserError(f"WorldModelTrainingConfig.rew_end_sequence_length={self.rew_end_sequence_length} is "
                            f"invalid: expected >= 2 frames (one transition)")
        if self.autoregressive_steps < 0:
            raise UserError(f"WorldModelTrainingConfig.autoregressive_steps={self.autoregressive_steps} is "
                            f"invalid: expected >= 0")
        if self.sample_weights is not None:
            object.__setattr__(self, "sample_weights", check_sample_weights(self.sample_weights))
        Acceleration(precision=self.precision)  # validates precision
        if not 0 <= self.test_fraction < 1:
            raise UserError(f"WorldModelTrainingConfig.test_fraction={self.test_fraction} is invalid: expected "
                            f"a fraction in [0, 1)")
        if not 0 <= self.termination_oversampling < 1:
            raise UserError(f"WorldModelTrainingConfig.termination_oversampling={self.termination_oversampling} is "
                            f"invalid: expected a fraction in [0, 1)")
        if not (0 <= self.reward_oversampling < 1 and self.termination_oversampling + self.reward_oversampling < 1):
            raise UserError(f"WorldModelTrainingConfig.reward_oversampling={self.reward_oversampling} is invalid: "
                            f"expected a fraction in [0, 1) that leaves room for uniform sequences beside "
                             f"termination_oversampling={self.termination_oversampling}")
        shares = {name: getattr(self, name) for name in ("denoiser_reward_oversampling",
                                                         "denoiser_return_oversampling", "denoiser_serve_oversampling")}
        for name, share in shares.items():
            if not 0 <= share < 1:
                raise UserError(f"WorldModelTrainingConfig.{name}={share} is invalid: expected a fraction in [0, 1)")
        if sum(shares.values()) >= 1:
            raise UserError(f"WorldModelTrainingConfig: {' + '.join(f'{k}={v}' for k, v in shares.items())} "
                            f"leave no room for uniform samples: their sum must be below 1")
        if self.changed_pixel_source not in CHANGED_PIXEL_SOURCES:
            raise UserError(f"WorldModelTrainingConfig.changed_pixel_source={self.changed_pixel_source!r} is invalid: "
                            f"expected one of {CHANGED_PIXEL_SOURCES}")
        if self.changed_pixel_source == "context" and self.context_length is not None and self.context_length < 2:
            raise UserError("changed_pixel_source='context' compares the last two context frames: it needs "
                            f"context_length >= 2, got {self.context_length}")
        if self.changed_pixel_weight < 0:
            raise UserError(f"WorldModelTrainingConfig.changed_pixel_weight={self.changed_pixel_weight} is "
                            f"invalid: expected >= 0 (0: DIAMOND's loss)")
        if self.fidelity_every < 0 or self.fidelity_samples < 1:
            raise UserError(f"WorldModelTrainingConfig: fidelity_every must be >= 0 and fidelity_samples >= 1, got "
                            f"{self.fidelity_every} and {self.fidelity_samples}")
        if self.fidelity_every and self.test_fraction == 0:
            raise UserError("fidelity logging (fidelity_every > 0, --fidelity-every) judges the model on held-out "
                            "episodes: hold some out with test_fraction > 0 (--test-fraction)")
        if self.context_noise < 0:
            raise UserError(f"WorldModelTrainingConfig.context_noise={self.context_noise} is invalid: expected >= 0")
        if self.rew_end_input_noise < 0:
            raise UserError(f"WorldModelTrainingConfig.rew_end_input_noise={self.rew_end_input_noise} is invalid: "
                            f"expected >= 0 (0: DIAMOND's training)")
        if self.train_sigma_scale is not None and self.train_sigma_scale <= 0:
            raise UserError(f"WorldModelTrainingConfig.train_sigma_scale={self.train_sigma_scale} is invalid: "
                            f"expected > 0")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"WorldModelTrainingConfig.ema_decay={self.ema_decay} is invalid: expected a decay in "
                            f"[0, 1) (0: no average)")
        if self.branch_from is not None and self.init_from is not None:
            raise UserError("a run starts from another run's state (branch_from) or from a checkpoint (init_from), "
                            "not both")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise UserError(f"WorldModelTrainingConfig: lr must be > 0 and warmup_steps >= 0, got {self.lr}, "
                            f"{self.warmup_steps}")


def segment_tensors(segment: Segment, device: torch.device) -> dict[str, torch.Tensor]:
    """uint8 HWC numpy segments -> float CHW frames in [-1, 1] and typed tensors on the device.

    Padded frames become 0, the grey middle of [-1, 1], as DIAMOND pads (its ``data/utils.py``).
    """
    frame_mask = torch.as_tensor(segment.frame_mask, device=device)
    frames = to_model_frames(torch.as_tensor(segment.frames, device=device))
    frames = frames * frame_mask[:, :, None, None, None]
    return {
        "frames": frames,
        "frame_mask": frame_mask,
        "actions": torch.as_tensor(segment.actions, device=device).long(),
        "rewards": torch.as_tensor(segment.rewards, device=device).float(),
        "terminated": torch.as_tensor(segment.terminated, device=device).bool(),
        "mask": torch.as_tensor(segment.mask, device=device).bool(),
    }


def changed_pixel_weights(frames: Tensor, context_length: int, weight: float, source: str = "target") -> Tensor:
    """Per-pixel weights of the denoiser's squared error for ``changed_pixel_weight`` W: (n, K, h, w).

    ``frames`` (n, L + K, c, h, w): the real frames of the samples (padding grey, before any context noise).
    ``source`` "target": a pixel of target i (frame L + i) changed where that frame differs, in any channel, from the
    real frame before it (the last context frame for the first target, the real previous frame for the later ones,
    not the model's estimate that conditions them), dilated by one pixel (a 3x3 max-pool) so that the ball's
    neighbourhood counts. ``source`` "context": where the two real frames before target i differ, dilated by
    ``CONTEXT_REACH`` pixels, so the weights are set before the outcome
    (``WorldModelTrainingConfig.changed_pixel_source``).
    The changed pixels weigh 1 + W, the others 1; each frame's weights are then divided by their mean, so a target's
    loss stays a weighted mean of its squared errors on DIAMOND's scale, the weight moving to the pixels that change
    rather than growing. A frame where nothing changed, or everything (the first frame of an episode after grey
    padding), weighs 1 everywhere, as in DIAMOND's loss. Padded targets stay out of the loss through the frame mask.
    """
    L = context_length
    if source == "target":
        changed, reach = (frames[:, L:] != frames[:, L - 1:-1]).any(dim=2), 1  # (n, K, h, w)
    elif source == "context":
        if L < 2:
            raise UserError(f"context-changed pixel weights compare the last two context frames: L >= 2, got {L}")
        K = frames.shape[1] - L
        changed, reach = (frames[:, L - 1:L - 1 + K] != frames[:, L - 2:L - 2 + K]).any(dim=2), CONTEXT_REACH
    else:
        raise UserError(f"changed pixel source {source!r}: expected one of {CHANGED_PIXEL_SOURCES}")
    changed = F.max_pool2d(changed.float(), kernel_size=2 * reach + 1, stride=1, padding=reach)
    weights = 1 + weight * changed
    return weights / weights.mean(dim=(2, 3), keepdim=True)


class _DenoiserObjective(nn.Module):
    """The denoiser's training loss as a forward pass, the form DistributedDataParallel wraps."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, frames: Tensor, actions: Tensor, frame_mask: Tensor, sigma: Tensor, offset: Tensor,
                noise: Tensor, normalisers: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        """sigma, offset, noise: the targets' draws stacked on a leading axis (one row per target)."""
        draws = [TrainingNoise(*d) for d in zip(sigma, offset, noise, strict=True)]
        if pixel_weight is None:  # DIAMOND's loss, as it is
            return self.denoiser.autoregressive_loss(frames, actions, frame_mask, draws, normalisers)
        return self.denoiser.autoregressive_loss(frames, actions, frame_mask, draws, normalisers,
                                                 pixel_weight=pixel_weight)


class _RewEndObjective(nn.Module):
    """The reward/termination losses as a forward pass, for DistributedDataParallel."""

    def __init__(self, rew_end: nn.Module) -> None:
        super().__init__()
        self.rew_end = rew_end

    def forward(self, *batch: Tensor) -> tuple[Tensor, Tensor]:
        return self.rew_end.loss(*batch)


class WorldModelTrainer:
    """Alternating AdamW updates of the denoiser and the reward/termination model on dataset segments.

    With a ``distributed`` of N ranks, ``config.batch_size`` is each rank's batch: every rank draws
    the positions and noise of the global batch (N x batch_size) from the same streams and trains on
    its shard, DDP averaging the gradients (training.runtime.distributed).
    """

    def __init__(self, model: WorldModel, dataset: EpisodeDataset, config: WorldModelTrainingConfig | None = None,
                 seed: int = 0, distributed: Distributed | None = None) -> None:
        if dataset.num_steps == 0:
            raise UserError(f"the dataset at {dataset.root} is empty: collect data first "
                            f"(python -m training.data.collect --game GAME --out DIR --steps N)")
        self.model, self.dataset = model, dataset
        self.sampler = BatchSampler(dataset)  # DIAMOND's: where each batch's segments are cut
        self.config = config or WorldModelTrainingConfig()
        self.device = model.device
        c = self.config

        acceleration = Acceleration(precision=c.precision)
        acceleration.check_device(self.device)  # warns of bf16 emulated on a CPU without bf16 units
        self.autocast = acceleration.autocast
        if self.device.type == "cpu":
            keep_freed_memory()  # see gym_diamond.cpu_memory: large activations reuse freed memory
        # NHWC, the dreams' layout (Acceleration.default_for): +22% light updates on a CPU (benchmarks/README.md);
        # set before the optimisers, whose state takes the parameters' layout
        model.to(memory_format=torch.channels_last)
        self.noise_config = c.training_noise(model.config.denoiser)  # the training sigmas' distribution
        if c.context_length is not None and c.context_length != model.config.denoiser.context_length:
            raise UserError(f"the training config's context_length {c.context_length} differs from the model's "
                            f"{model.config.denoiser.context_length}: build the model with "
                            f"config.denoiser_config(...)")
        self.averages = {name: WeightAverage(getattr(model, name), c.ema_decay)
                         for name in ("denoiser", "rew_end")} if c.ema_decay else {}
        if c.compile:
            model.denoiser.net.compile()
            model.rew_end.compile()
        self.distributed = distributed or Distributed()
        self._denoiser_objective = self.distributed.wrap(_DenoiserObjective(model.denoiser))
        self._rew_end_objective = self.distributed.wrap(_RewEndObjective(model.rew_end))
        self.denoiser_opt = adamw(model.denoiser, c.lr, c.eps, c.weight_decay)
        self.rew_end_opt = adamw(model.rew_end, c.lr, c.eps, c.weight_decay)
        self.steps = {"denoiser": 0, "rew_end": 0}
        # the update counts the learning rate's warm-up starts from: 0, or a warm start's (new optimisers need one)
        self.warmup_from = {"denoiser": 0, "rew_end": 0}
        self.cpu_seconds = 0.0  # CPU time of this process's updates, over resumes: fidelity per CPU hour
        self.rng = np.random.default_rng(seed)
        self.noise = torch.Generator(device=self.device).manual_seed(seed)

    def _update(self, name: str, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> float:
        lr = warmup_lr(self.config.lr, self.steps[name] - self.warmup_from[name], self.config.warmup_steps)
        grad_norm = optimizer_update(optimizer, loss, lr, clip)
        self.steps[name] += 1
        if self.averages:
            self.averages[name].update(getattr(self.model, name))
        return grad_norm

    def exported_model(self) -> WorldModel:
        """The model a checkpoint holds and fidelity.csv judges: the weights' average with ``ema_decay``, else
        the trained model itself."""
        if not self.averages:
            return self.model
        model = WorldModel(self.model.config).to(self.device)
        for name, average in self.averages.items():
            getattr(model, name).load_state_dict(average.average)
        return model.eval()

    @functools.cached_property
    def paddle_moments(self) -> np.ndarray:
        """(episode, frame) rows of the training episodes where the ball reaches the player's paddle, returned or
        let through (``training.data.ball_paths.paddle_moments``), for ``denoiser_return_oversampling``."""
        L = self.model.config.denoiser.context_length
        found = ball_paths.paddle_moments(self.dataset, self._learnt_episodes(), L)
        return self._moment_rows(found["returns"] + found["misses"], "the ball reaching the player's paddle",
                                 "denoiser_return_oversampling")

    @functools.cached_property
    def serve_moments(self) -> np.ndarray:
        """(episode, transition) rows of the training episodes where the ball comes back after frames without it
        (``training.data.ball_paths.serve_moments``), for ``denoiser_serve_oversampling``."""
        L = self.model.config.denoiser.context_length
        found = ball_paths.serve_moments(self.dataset, self._learnt_episodes(), L)
        return self._moment_rows(found["serves"], f"the ball coming back after {ball_paths.SERVE_PAUSE} frames "
                                 f"without it", "denoiser_serve_oversampling")

    def _learnt_episodes(self) -> np.ndarray:
        """The ids of the episodes the trainer learns from (``train_episode_ids``, all where None)."""
        episodes = self.train_episode_ids()
        return np.arange(len(self.dataset)) if episodes is None else episodes

    def _moment_rows(self, pairs: list[tuple[int, int]], what: str, option: str) -> np.ndarray:
        """``pairs`` as (n, 2) rows for ``option`` to oversample; a clear error where the data shows no ``what``."""
        moments = np.array(pairs, np.int64).reshape(-1, 2)
        if len(moments) == 0:
            raise UserError(f"no training episode of {self.dataset.root} shows {what}: nothing for {option} to "
                            f"oversample")
        return moments

    def train_episode_ids(self) -> np.ndarray | None:
        """Episodes to learn from: all (None), or those outside the held-out split of ``test_fraction``."""
        if self.config.test_fraction == 0:
            return None
        train_ids, _ = self.dataset.split(self.config.test_fraction, seed=0)
        if train_ids.size == 0:
            raise UserError(f"test_fraction={self.config.test_fraction} leaves no training episode in "
                            f"{self.dataset.root}: collect more episodes")
        return train_ids

    def _global_positions(self, num_frames: int, beyond_end: bool) -> tuple[np.ndarray, np.ndarray, slice]:
        """Positions of the global batch (the same on every rank) and this rank's rows of it."""
        per_rank = self.config.batch_size
        ids, starts = self.sampler.sample_positions(per_rank * self.distributed.world_size, num_frames, self.rng,
                                                    beyond_end=beyond_end, sample_weights=self.config.sample_weights,
                                                    episode_ids=self.train_episode_ids())
        return ids, starts, self.distributed.shard(per_rank)

    def denoiser_step(self) -> dict[str, float]:
        """One update on samples of L context frames and 1 + ``autoregressive_steps`` targets (DIAMOND's)."""
        L, K = self.model.config.denoiser.context_length, 1 + self.config.autoregressive_steps
        ids, starts, rows = self._global_positions(L + K, beyond_end=False)
        rewarded = round(self.config.denoiser_reward_oversampling * len(ids))
        if rewarded:  # drawn for the global batch, the same on every rank; the first target follows the reward
            ids[:rewarded], steps = self.sampler.sample_rewarded_transitions(rewarded, self.rng,
                                                                             episode_ids=self.train_episode_ids())
            starts[:rewarded] = steps + 1 - L
        at_paddle = round(self.config.denoiser_return_oversampling * len(ids))
        if at_paddle:  # the target is one of the game's return_horizon frames after the ball reaches the paddle
            chosen = self.rng.integers(0, len(self.paddle_moments), at_paddle)
            after = self.rng.integers(1, ball_paths.return_geometry(self.dataset.game).horizon + 1, at_paddle)
            ids[rewarded:rewarded + at_paddle] = self.paddle_moments[chosen, 0]
            starts[rewarded:rewarded + at_paddle] = self.paddle_moments[chosen, 1] + after - L
        served = round(self.config.denoiser_serve_oversampling * len(ids))
        if served:  # the target is the frame where the ball comes back
            chosen = self.rng.integers(0, len(self.serve_moments), served)
            first = rewarded + at_paddle
            ids[first:first + served] = self.serve_moments[chosen, 0]
            starts[first:first + served] = self.serve_moments[chosen, 1] + 1 - L
        t = segment_tensors(self.dataset.get_segments(ids[rows], starts[rows], L + K - 1), self.device)
        frame_shape = (len(ids), *t["frames"].shape[2:])
        draws = [TrainingNoise.draw(frame_shape, self.noise_config, self.noise, self.device).shard(rows)
                 for _ in range(K)]
        # each target's real samples in the global batch, over the ranks (padding only before the start)
        real = (starts[:, None] + L + np.arange(K) >= 0).sum(axis=0) / self.distributed.world_size
        frames = t["frames"]
        pixel_weight = (changed_pixel_weights(frames, L, self.config.changed_pixel_weight,
                                              self.config.changed_pixel_source)
                        if self.config.changed_pixel_weight > 0 else None)
        if self.config.context_noise > 0:  # drawn for the global batch too, so every rank's shard matches
            context = frames[:, :L]
            levels = torch.rand(len(ids), generator=self.noise, device=self.device)[rows] * self.config.context_noise
            noise = torch.randn((len(ids), *context.shape[1:]), generator=self.noise, device=self.device)[rows]
            frames = torch.cat([context + levels.view(-1, 1, 1, 1, 1) * noise, frames[:, L:]], dim=1)
        self.model.denoiser.train()
        with self.autocast(self.device):
            loss = self._denoiser_objective(frames, t["actions"][:, :L + K - 1], t["frame_mask"],
                                            torch.stack([d.sigma for d in draws]),
                                            torch.stack([d.offset for d in draws]),
                                            torch.stack([d.noise for d in draws]),
                                            torch.as_tensor(real, dtype=torch.float32, device=self.device),
                                            pixel_weight)
        grad_norm = self._update("denoiser", self.denoiser_opt, loss, self.config.denoiser_grad_clip)
        (loss_value,) = self.distributed.mean([loss.item()])
        return {"denoiser_loss": loss_value, "denoiser_grad_norm": grad_norm}

    def rew_end_step(self) -> dict[str, float]:
        """One update on sequences of ``rew_end_sequence_length`` frames (DIAMOND's: padding masked out).

        As in DIAMOND, the sequences may run past either end of their episode; after the last action of
        an episode that did not terminate, the next frame is padding. The losses are means over the
        real transitions of the global batch: each rank weighs its shard's mean by its share of them,
        so DDP's average of the ranks is the global mean.
        """
        F, S = self.config.rew_end_sequence_length, self.config.rew_end_sequence_length - 1
        ids, starts, rows = self._global_positions(F, beyond_end=True)
        endings = round(self.config.termination_oversampling * len(ids))
        if endings:  # drawn for the global batch, the same on every rank
            ids[:endings], starts[:endings] = self.sampler.sample_ending_positions(
                endings, F, self.rng, episode_ids=self.train_episode_ids())
        rewarded = round(self.config.reward_oversampling * len(ids))
        if rewarded:
            ids[endings:endings + rewarded], starts[endings:endings + rewarded] = \
                self.sampler.sample_reward_positions(rewarded, F, self.rng, episode_ids=self.train_episode_ids())
        segment = self.dataset.get_segments(ids[rows], starts[rows], S, pad_unterminated_end=True)
        t = segment_tensors(segment, self.device)
        frames = t["frames"]
        if self.config.rew_end_input_noise > 0:  # drawn for the global batch, so every rank's shard matches
            levels = self.config.rew_end_input_noise * torch.rand(len(ids), generator=self.noise,
                                                                  device=self.device)[rows]
            noise = torch.randn((len(ids), *frames.shape[1:]), generator=self.noise, device=self.device)[rows]
            frames = frames + levels.view(-1, 1, 1, 1, 1) * noise
        share = self.sampler.real_steps(ids[rows], starts[rows], S) * self.distributed.world_size / \
            self.sampler.real_steps(ids, starts, S)
        self.model.rew_end.train()
        with self.autocast(self.device):
            loss_reward, loss_end = self._rew_end_objective(frames[:, :-1], t["actions"], frames[:, 1:],
                                                            t["rewards"], t["terminated"], t["mask"])
        loss_reward, loss_end = loss_reward * share, loss_end * share
        grad_norm = self._update("rew_end", self.rew_end_opt, loss_reward + loss_end, self.config.rew_end_grad_clip)
        reward_value, end_value = self.distributed.mean([loss_reward.item(), loss_end.item()])
        return {"reward_loss": reward_value, "end_loss": end_value, "rew_end_grad_norm": grad_norm}

    def start_bank(self, size: int = 256, seed: int = 0) -> StartBank:
        """Real contexts of L frames (and the actions taken at them) for dreams to start from."""
        L = self.model.config.denoiser.context_length
        long_enough = np.flatnonzero(self.dataset.lengths >= L)
        ids, starts = self.sampler.sample_positions(size, L, np.random.default_rng(seed),
                                                    episode_ids=long_enough if long_enough.size else None)
        seg = self.dataset.get_segments(ids, np.maximum(starts, 0), L)  # whole real contexts: uint8 has no grey
        return StartBank(np.ascontiguousarray(seg.frames[:, :L]), seg.actions.astype(np.int64))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: models, optimisers, step counts, RNG states."""
        return {
            "model": self.model.state_dict(),
            "denoiser_opt": optimizer_state(self.denoiser_opt),
            "rew_end_opt": optimizer_state(self.rew_end_opt),
            "steps": dict(self.steps),
            "warmup_from": dict(self.warmup_from),
            "cpu_seconds": self.cpu_seconds,
            "rng": rng_state(self.rng, self.noise),
            "config": dataclasses.asdict(self.config),
            "model_config": self.model.config.to_dict(),
            "recipe": TRAINING_RECIPE,
            "averages": {name: average.state_dict() for name, average in self.averages.items()},
        }

    def load_state_dict(self, state: dict[str, Any], *, branch: bool = False) -> None:
        """Resume from ``state_dict``'s output (same model config). A ``branch`` (another run's state) may differ in
        the denoiser's training noise (``TRAINING_NOISE_FIELDS``), which shapes the updates and not the networks."""
        if state.get("recipe") != TRAINING_RECIPE:
            raise UserError("the saved training state was written by an earlier gym-diamond, which trained "
                            "with one denoiser target, black padding and other departures from DIAMOND's "
                            "trainer (its world_model.safetensors still loads as it was): start a new run "
                            "with another --out")
        saved, own = state["model_config"], _plain_config(self.model.config)
        legacy = "attention_residual" not in saved.get("rew_end", {})
        if not legacy:  # fields added since the state was written take their defaults, as a checkpoint's do
            saved = _plain_config(WorldModelConfig.from_dict(saved))
        if branch:
            saved = {**saved, "denoiser": {**saved["denoiser"],
                                           **{k: own["denoiser"][k] for k in TRAINING_NOISE_FIELDS}}}
        if saved != own:
            hint = ("it was written by gym-diamond 0.1, before the networks matched DIAMOND's (its "
                    "world_model.safetensors still loads as it was); " if legacy else "")
            raise UserError(f"the saved training state is of a different world model config: {hint}"
                            "start a new run with another --out")
        self.model.load_state_dict(state["model"])
        for name, average in self.averages.items():
            average.load_state_dict(state["averages"][name])
        load_optimizer_state(self.denoiser_opt, state["denoiser_opt"])
        load_optimizer_state(self.rew_end_opt, state["rew_end_opt"])
        self.steps = dict(state["steps"])
        self.warmup_from = dict(state.get("warmup_from", {"denoiser": 0, "rew_end": 0}))  # older states: from 0
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))  # states written before it was counted: from 0
        restore_rng(state["rng"], self.rng, self.noise)


def _plain_config(config: WorldModelConfig) -> dict[str, Any]:
    """``config`` as the JSON a training state stores (tuples as lists), to compare with a saved one."""
    return json.loads(json.dumps(config.to_dict()))


def export_checkpoint(path: str | Path, trainer: WorldModelTrainer, *, game: str, action_meanings: list[str],
                      data: str | Path, model_preset: str, seed: int, processes: int = 1) -> Path:
    """Write what the trainer has learnt as a checkpoint: the exported model (the weights' average where there is
    one), real start contexts and the provenance of the run (``processes``: how many shared its batches)."""
    dataset, config, noise = trainer.dataset, trainer.config, trainer.noise_config
    provenance = {
        "denoiser_steps": trainer.steps["denoiser"], "rew_end_steps": trainer.steps["rew_end"],
        "dataset_steps": dataset.num_steps, "dataset_episodes": len(dataset), "seed": seed,
        "dataset_lengths_digest": dataset.lengths_digest(), "test_fraction": config.test_fraction,
        "model_preset": model_preset, "processes": processes, "recipe": config.recipe,
        "autoregressive_steps": config.autoregressive_steps, "sample_weights": config.sample_weights,
        "context_noise": config.context_noise, "termination_oversampling": config.termination_oversampling,
        "reward_oversampling": config.reward_oversampling,
        "denoiser_reward_oversampling": config.denoiser_reward_oversampling,
        "denoiser_return_oversampling": config.denoiser_return_oversampling,
        "denoiser_serve_oversampling": config.denoiser_serve_oversampling,
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


