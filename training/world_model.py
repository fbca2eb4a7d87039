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
a noisy real frame at each noise level (``training.fidelity.ball_shown_by_sigma``) and, when the
reward/termination model trains, its event recall and precision. It draws from its own seeds, so the
run trains exactly the same weights with it as without.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib.util
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

from gym_diamond import StartBank, WorldModel, save_checkpoint
from gym_diamond.acceleration import PRECISIONS, Acceleration
from gym_diamond.atari import game_action_meanings, game_to_name
from gym_diamond.config import MODEL_SIZES
from gym_diamond.cpu_memory import keep_freed_memory
from gym_diamond.diffusion import TrainingNoise
from gym_diamond.envs.core import to_model_frames
from training.cli import user_errors
from training.collect import read_collection_log
from training.dataset import DIAMOND_SAMPLE_WEIGHTS, EpisodeDataset, Segment, check_sample_weights
from training.distributed import Distributed, init_distributed
from training.fidelity import DENOISER_SIGMAS, ball_shown_by_sigma, event_confusion, game_objects
from training.files import FolderLock
from training.objects import OBJECT_GAMES
from training.optim import adamw, optimizer_update, warmup_lr
from training.state import load_optimizer_state, load_state, optimizer_state, restore_rng, rng_state, save_state

# Version of the training recipe in saved training states: 2 is DIAMOND's trainer (autoregressive denoiser
# targets, grey padding, its sampling, weight-decay groups and warm-up); states without it came before.
TRAINING_RECIPE = 2
NETWORKS = ("both", "denoiser", "rew_end")  # what train_world_model trains
FIDELITY_HORIZONS = (1, 5, 15)  # open-loop dream steps judged in fidelity.csv
# recipe fields a resumed run must keep: changing them mid-run would train another model than the one named
RESUME_FIXED = ("changed_pixel_weight",)

MODEL_PRESETS = MODEL_SIZES  # the name the training commands and presets have used


@dataclass(frozen=True)
class WorldModelTrainingConfig:
    """DIAMOND's training of the world model (its ``config/trainer.yaml`` and ``src/trainer.py``).

    Every default is DIAMOND's; the options that differ from it are named and off by default.
    """

    batch_size: int = 32
    lr: float = 1e-4
    eps: float = 1e-8
    weight_decay: float = 0.01  # on linear, conv and LSTM weights only (training.optim)
    warmup_steps: int = 100
    denoiser_grad_clip: float = 1.0
    rew_end_grad_clip: float = 100.0
    # frames per reward/termination sequence: horizon 15 + context 4, so 18 transitions carry loss
    rew_end_sequence_length: int = 19
    # DIAMOND's num_autoregressive_steps: each denoiser sample has 1 + this many consecutive targets, the
    # later ones conditioned on the model's own estimate of the one before
    autoregressive_steps: int = 1
    # Episode sampling by recency groups (training.dataset.EpisodeDataset.episode_weights): DIAMOND's
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
    # Off (0) for DIAMOND-exact training: the denoiser's squared error on each target is weighted per pixel
    # by 1 + W where the target differs from the frame before it (dilated by a pixel: the moving ball and
    # its neighbourhood), normalised to a mean weight of 1 per frame (changed_pixel_weights). Against
    # dreams that drop the ball, a pixel or two of 4096 that DIAMOND's mean squared error barely weighs
    changed_pixel_weight: float = 0.0
    # Every N updates (and at the end) judge the model on the held-out episodes (test_fraction > 0) and
    # append the figures to fidelity.csv (fidelity_figures); 0: never. Changes no training draw
    fidelity_every: int = 0
    fidelity_samples: int = 32  # held-out samples per figure (dreams and noisy frames)

    def __post_init__(self) -> None:
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldModelTrainingConfig.{name}={getattr(self, name)} is invalid: expected >= 1")
        if self.rew_end_sequence_length < 2:
            raise ValueError(f"WorldModelTrainingConfig.rew_end_sequence_length={self.rew_end_sequence_length} is "
                             f"invalid: expected >= 2 frames (one transition)")
        if self.autoregressive_steps < 0:
            raise ValueError(f"WorldModelTrainingConfig.autoregressive_steps={self.autoregressive_steps} is "
                             f"invalid: expected >= 0")
        if self.sample_weights is not None:
            object.__setattr__(self, "sample_weights", check_sample_weights(self.sample_weights))
        Acceleration(precision=self.precision)  # validates precision
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"WorldModelTrainingConfig.test_fraction={self.test_fraction} is invalid: expected "
                             f"a fraction in [0, 1)")
        if not 0 <= self.termination_oversampling < 1:
            raise ValueError(f"WorldModelTrainingConfig.termination_oversampling={self.termination_oversampling} is "
                             f"invalid: expected a fraction in [0, 1)")
        if self.changed_pixel_weight < 0:
            raise ValueError(f"WorldModelTrainingConfig.changed_pixel_weight={self.changed_pixel_weight} is "
                             f"invalid: expected >= 0 (0: DIAMOND's loss)")
        if self.fidelity_every < 0 or self.fidelity_samples < 1:
            raise ValueError(f"WorldModelTrainingConfig: fidelity_every must be >= 0 and fidelity_samples >= 1, got "
                             f"{self.fidelity_every} and {self.fidelity_samples}")
        if self.fidelity_every and self.test_fraction == 0:
            raise ValueError("fidelity logging (fidelity_every > 0, --fidelity-every) judges the model on held-out "
                             "episodes: hold some out with test_fraction > 0 (--test-fraction)")
        if self.context_noise < 0:
            raise ValueError(f"WorldModelTrainingConfig.context_noise={self.context_noise} is invalid: expected >= 0")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"WorldModelTrainingConfig: lr must be > 0 and warmup_steps >= 0, got {self.lr}, "
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


def changed_pixel_weights(frames: Tensor, context_length: int, weight: float) -> Tensor:
    """Per-pixel weights of the denoiser's squared error for ``changed_pixel_weight`` W: (n, K, h, w).

    ``frames`` (n, L + K, c, h, w): the real frames of the samples (padding grey, before any context noise).
    A pixel of target i (frame L + i) changed where that frame differs, in any channel, from the real
    frame before it: the last context frame for the first target, the real previous frame for the
    later ones (not the model's estimate that conditions them). The changed pixels, dilated by one pixel
    (a 3x3 max-pool) so that the ball's neighbourhood counts, weigh 1 + W, the others 1; each frame's
    weights are then divided by their mean, so a target's loss stays a weighted mean of its squared errors
    on DIAMOND's scale, the weight moving to the pixels that change rather than growing. A frame where
    nothing changed, or everything (the first frame of an episode after grey padding), weighs 1
    everywhere, as in DIAMOND's loss. Padded targets stay out of the loss through the frame mask.
    """
    L = context_length
    changed = (frames[:, L:] != frames[:, L - 1:-1]).any(dim=2).float()  # (n, K, h, w)
    changed = F.max_pool2d(changed, kernel_size=3, stride=1, padding=1)
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
    its shard, DDP averaging the gradients (training.distributed).
    """

    def __init__(self, model: WorldModel, dataset: EpisodeDataset, config: WorldModelTrainingConfig | None = None,
                 seed: int = 0, distributed: Distributed | None = None) -> None:
        if dataset.num_steps == 0:
            raise ValueError(f"the dataset at {dataset.root} is empty: collect data first "
                             f"(python -m training.collect --game GAME --out DIR --steps N)")
        self.model, self.dataset = model, dataset
        self.config = config or WorldModelTrainingConfig()
        self.device = model.device
        c = self.config

        self.autocast = Acceleration(precision=c.precision).autocast
        if self.device.type == "cpu":
            keep_freed_memory()  # see gym_diamond.cpu_memory: large activations reuse freed memory
        # NHWC, the dreams' layout (Acceleration.default_for): +22% light updates on a CPU (benchmarks/README.md);
        # set before the optimisers, whose state takes the parameters' layout
        model.to(memory_format=torch.channels_last)
        if c.compile:
            model.denoiser.net.compile()
            model.rew_end.compile()
        self.distributed = distributed or Distributed()
        self._denoiser_objective = self.distributed.wrap(_DenoiserObjective(model.denoiser))
        self._rew_end_objective = self.distributed.wrap(_RewEndObjective(model.rew_end))
        self.denoiser_opt = adamw(model.denoiser, c.lr, c.eps, c.weight_decay)
        self.rew_end_opt = adamw(model.rew_end, c.lr, c.eps, c.weight_decay)
        self.steps = {"denoiser": 0, "rew_end": 0}
        self.rng = np.random.default_rng(seed)
        self.noise = torch.Generator(device=self.device).manual_seed(seed)

    def _update(self, name: str, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> float:
        lr = warmup_lr(self.config.lr, self.steps[name], self.config.warmup_steps)
        grad_norm = optimizer_update(optimizer, loss, lr, clip)
        self.steps[name] += 1
        return grad_norm

    def train_episode_ids(self) -> np.ndarray | None:
        """Episodes to learn from: all (None), or those outside the held-out split of ``test_fraction``."""
        if self.config.test_fraction == 0:
            return None
        train_ids, _ = self.dataset.split(self.config.test_fraction, seed=0)
        if train_ids.size == 0:
            raise ValueError(f"test_fraction={self.config.test_fraction} leaves no training episode in "
                             f"{self.dataset.root}: collect more episodes")
        return train_ids

    def _global_positions(self, num_frames: int, beyond_end: bool) -> tuple[np.ndarray, np.ndarray, slice]:
        """Positions of the global batch (the same on every rank) and this rank's rows of it."""
        per_rank = self.config.batch_size
        ids, starts = self.dataset.sample_positions(per_rank * self.distributed.world_size, num_frames, self.rng,
                                                    beyond_end=beyond_end, sample_weights=self.config.sample_weights,
                                                    episode_ids=self.train_episode_ids())
        return ids, starts, self.distributed.shard(per_rank)

    def denoiser_step(self) -> dict[str, float]:
        """One update on samples of L context frames and 1 + ``autoregressive_steps`` targets (DIAMOND's)."""
        L, K = self.model.config.denoiser.context_length, 1 + self.config.autoregressive_steps
        ids, starts, rows = self._global_positions(L + K, beyond_end=False)
        t = segment_tensors(self.dataset.get_segments(ids[rows], starts[rows], L + K - 1), self.device)
        frame_shape = (len(ids), *t["frames"].shape[2:])
        draws = [TrainingNoise.draw(frame_shape, self.model.denoiser.config, self.noise, self.device).shard(rows)
                 for _ in range(K)]
        # each target's real samples in the global batch, over the ranks (padding only before the start)
        real = (starts[:, None] + L + np.arange(K) >= 0).sum(axis=0) / self.distributed.world_size
        frames = t["frames"]
        pixel_weight = (changed_pixel_weights(frames, L, self.config.changed_pixel_weight)
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
            ids[:endings], starts[:endings] = self.dataset.sample_ending_positions(
                endings, F, self.rng, episode_ids=self.train_episode_ids())
        segment = self.dataset.get_segments(ids[rows], starts[rows], S, pad_unterminated_end=True)
        t = segment_tensors(segment, self.device)
        share = self.dataset.real_steps(ids[rows], starts[rows], S) * self.distributed.world_size / \
            self.dataset.real_steps(ids, starts, S)
        self.model.rew_end.train()
        with self.autocast(self.device):
            loss_reward, loss_end = self._rew_end_objective(t["frames"][:, :-1], t["actions"], t["frames"][:, 1:],
                                                            t["rewards"], t["terminated"], t["mask"])
        loss_reward, loss_end = loss_reward * share, loss_end * share
        grad_norm = self._update("rew_end", self.rew_end_opt, loss_reward + loss_end, self.config.rew_end_grad_clip)
        reward_value, end_value = self.distributed.mean([loss_reward.item(), loss_end.item()])
        return {"reward_loss": reward_value, "end_loss": end_value, "rew_end_grad_norm": grad_norm}

    def start_bank(self, size: int = 256, seed: int = 0) -> StartBank:
        """Real contexts of L frames (and the actions taken at them) for dreams to start from."""
        L = self.model.config.denoiser.context_length
        long_enough = np.flatnonzero(self.dataset.lengths >= L)
        ids, starts = self.dataset.sample_positions(size, L, np.random.default_rng(seed),
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
            "rng": rng_state(self.rng, self.noise),
            "config": dataclasses.asdict(self.config),
            "model_config": self.model.config.to_dict(),
            "recipe": TRAINING_RECIPE,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict``'s output (same model config)."""
        if state.get("recipe") != TRAINING_RECIPE:
            raise ValueError("the saved training state was written by an earlier gym-diamond, which trained "
                             "with one denoiser target, black padding and other departures from DIAMOND's "
                             "trainer (its world_model.safetensors still loads as it was): start a new run "
                             "with another --out")
        saved = state["model_config"]
        if saved != json.loads(json.dumps(self.model.config.to_dict())):
            legacy = "attention_residual" not in saved.get("rew_end", {})
            hint = ("it was written by gym-diamond 0.1, before the networks matched DIAMOND's (its "
                    "world_model.safetensors still loads as it was); " if legacy else "")
            raise ValueError(f"the saved training state is of a different world model config: {hint}"
                             "start a new run with another --out")
        for name in RESUME_FIXED:
            default = getattr(WorldModelTrainingConfig, name)  # states written before the field had its default
            saved_value, value = state.get("config", {}).get(name, default), getattr(self.config, name)
            if saved_value != value:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"the saved training state was trained with {name}={saved_value} ({flag}), not "
                                 f"{value}: resume with {flag} {saved_value}, or start a new run with another --out")
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.denoiser_opt, state["denoiser_opt"])
        load_optimizer_state(self.rew_end_opt, state["rew_end_opt"])
        self.steps = dict(state["steps"])
        restore_rng(state["rng"], self.rng, self.noise)


class CsvLog:
    """Append rows of scalars to a CSV file, writing the header once; mirrored to TensorBoard if installed.

    The TensorBoard events go to ``<folder>/tensorboard`` with tags ``<csv name>/<column>``, at the
    row's ``step`` (or ``epoch``) value.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tensorboard: Any = None

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (the header comes from the first row)."""
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self._mirror(row)

    def _mirror(self, row: dict[str, Any]) -> None:
        if self._tensorboard is None:
            if importlib.util.find_spec("tensorboard") is None:
                self._tensorboard = False
            else:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.path.parent / "tensorboard"))
        if self._tensorboard is False:
            return
        step = int(row.get("step", row.get("epoch", 0)))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tensorboard.add_scalar(f"{self.path.stem}/{key}", value, step)
        self._tensorboard.flush()

    def drop_after(self, step: int, key: str = "step") -> None:
        """Forget rows logged after ``step``: a resumed run repeats those steps from the saved state."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(float(r[key])) <= step]
        if len(kept) == len(rows):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def logged(self, key: str = "step") -> set[int]:
        """The ``key`` values of the rows written so far."""
        if not self.path.exists():
            return set()
        with self.path.open(newline="") as f:
            return {int(float(r[key])) for r in csv.DictReader(f)}


def _memory_format(model: nn.Module) -> torch.memory_format:
    """The layout of the model's convolution weights: channels_last (as the trainer sets it) or contiguous."""
    for p in model.parameters():
        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:  # a layout shows in its strides
            channels_last = p.is_contiguous(memory_format=torch.channels_last)
            return torch.channels_last if channels_last else torch.contiguous_format
    return torch.contiguous_format


@torch.no_grad()
def fidelity_figures(model: WorldModel, dataset: EpisodeDataset, test_ids: np.ndarray, *, samples: int = 32,
                     seed: int = 0, events: bool = True, sequence_length: int = 19) -> dict[str, Any]:
    """The figures of one row of ``fidelity.csv``, flat names to numbers (None where nothing was seen).

    On the held-out episodes ``test_ids``, with ``samples`` samples each (``training.open_loop.fidelity_lines``
    and ``training.fidelity.ball_shown_by_sigma``, seeded by ``seed``, fp32 dreams as DIAMOND's):
    ``h{1,5,15}_pooled_psnr_{model,repeat_last}``: open-loop dreams (real context and actions) against
    the real frame at that horizon, beside repeating the last context frame; for the games
    ``training.objects`` reads, ``h{H}_ball_*``/``h{H}_paddle_*``: the share of real frames showing the
    object whose prediction shows it (``shown``) and within 2 px (``within_2px``), for the model and
    repeat-last, of ``*_real`` such frames; ``sigma{s}_ball_{shown,within_2px}``: the share of noisy
    real next frames whose single denoised estimate keeps the ball, at the default noise levels (does
    the denoiser predict the ball or only restore one it is shown); with ``events``, the
    reward/termination model's recall and precision of rewards and terminations over every held-out
    transition (``training.fidelity.event_confusion``). The model's modes, layout and dream settings
    and the global random state are as they were afterwards.
    """
    from training.open_loop import fidelity_lines  # imports the dream machinery: only when judged

    networks = (model.denoiser, model.rew_end)
    modes, acceleration = [net.training for net in networks], model.acceleration
    layout = _memory_format(model)
    devices = [model.device] if model.device.type == "cuda" else []
    row: dict[str, Any] = {}
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            for line in fidelity_lines(model, dataset, test_ids, list(FIDELITY_HORIZONS), samples, seed=seed,
                                       precision="fp32"):
                h = line["horizon"]
                row.update({f"h{h}_{key}": line[key] for key in ("pooled_psnr_model", "pooled_psnr_repeat_last")})
                things = game_objects(dataset.game) if dataset.game else ()
                row.update({f"h{h}_{key}": value for key, value in line.items()
                            if key.startswith(tuple(f"{thing}_" for thing in things))})
            if dataset.game is not None and game_to_name(dataset.game) in OBJECT_GAMES:
                for sigma, score in ball_shown_by_sigma(model, dataset, test_ids, sigmas=DENOISER_SIGMAS,
                                                        samples=samples, seed=seed).items():
                    row[f"sigma{sigma:g}_ball_shown"] = score["shown"]
                    row[f"sigma{sigma:g}_ball_within_2px"] = score["within"]
            if events:
                report = event_confusion(model, dataset, test_ids, sequence_length=sequence_length)
                row.update(reward_recall=report.reward_recall(), reward_precision=report.reward_precision(),
                           termination_recall=report.termination_recall(),
                           termination_precision=report.termination_precision())
    finally:
        model.accelerate(acceleration)
        model.to(memory_format=layout)
        for net, mode in zip(networks, modes, strict=True):
            net.train(mode)
    return row


def _fidelity_line(update: int, seconds: float, row: dict[str, Any]) -> str:
    """One short progress line of a ``fidelity.csv`` row."""

    def figures(names: list[str], digits: int) -> str:
        return "/".join("-" if row.get(n) is None else f"{row[n]:.{digits}f}" for n in names)

    hs = "/".join(map(str, FIDELITY_HORIZONS))
    parts = [f"pooled PSNR h{hs} {figures([f'h{h}_pooled_psnr_model' for h in FIDELITY_HORIZONS], 1)} "
             f"(repeat-last {figures([f'h{h}_pooled_psnr_repeat_last' for h in FIDELITY_HORIZONS], 1)})"]
    if "h1_ball_shown_model" in row:
        parts.append(f"ball shown {figures([f'h{h}_ball_shown_model' for h in FIDELITY_HORIZONS], 2)}, within 2 px "
                     f"{figures([f'h{h}_ball_within_2px_model' for h in FIDELITY_HORIZONS], 2)} (repeat-last "
                     f"{figures([f'h{h}_ball_within_2px_repeat_last' for h in FIDELITY_HORIZONS], 2)})")
        parts.append(f"denoised ball at sigma {'/'.join(f'{s:g}' for s in DENOISER_SIGMAS)} "
                     f"{figures([f'sigma{s:g}_ball_shown' for s in DENOISER_SIGMAS], 2)}")
    if "reward_recall" in row:
        parts.append(f"reward recall/precision {figures(['reward_recall', 'reward_precision'], 2)}, termination "
                     f"{figures(['termination_recall', 'termination_precision'], 2)}")
    return f"fidelity at update {update} ({seconds:.0f} s): " + "; ".join(parts)


def train_world_model(game: str, data: str | Path, out: str | Path, steps: int, *, model_preset: str = "paper",
                      device: str | torch.device | None = None, seed: int = 0, save_every: int = 200,
                      log_every: int = 10, config: WorldModelTrainingConfig | None = None,
                      progress: bool = True, networks: str = "both") -> Path:
    """Train (or resume training) for ``steps`` updates of each network; return the exported checkpoint.

    ``networks="rew_end"`` trains the reward/termination model alone (``steps`` then counts its
    updates; the log is ``losses_rew_end.csv``): a cheap fine-tuning of a trained world model, e.g.
    with ``termination_oversampling``, that leaves the denoiser as it is. ``networks="denoiser"``
    trains the denoiser alone (log ``losses_denoiser.csv``): half the cost where only the frames are
    judged, as in a fidelity A/B, or to train the two networks in two processes.
    Under torchrun every process runs this; they train data-parallel (``config.batch_size`` each,
    training.distributed) and rank 0 writes the state, the log and the checkpoint.
    With ``config.fidelity_every`` N, rank 0 appends ``fidelity_figures`` on the held-out episodes to
    ``fidelity.csv`` (columns ``update``, ``seconds``: the evaluation's own time, then the figures) after
    every N updates and the last, and prints them as one line; a resumed run drops the rows after its
    saved state and writes each update's row once.
    """
    rank = int(os.environ.get("RANK", "0"))  # under torchrun rank 0 writes the run folder; the others read it
    with FolderLock(out, "world-model training") if rank == 0 else contextlib.nullcontext():
        return _train_world_model(game, data, out, steps, model_preset=model_preset, device=device, seed=seed,
                                  save_every=save_every, log_every=log_every, config=config, progress=progress,
                                  networks=networks)


def _train_world_model(game: str, data: str | Path, out: str | Path, steps: int, *, model_preset: str = "paper",
                      device: str | torch.device | None = None, seed: int = 0, save_every: int = 200,
                      log_every: int = 10, config: WorldModelTrainingConfig | None = None,
                      progress: bool = True, networks: str = "both") -> Path:
    """``train_world_model`` with the run folder already locked."""
    if networks not in NETWORKS:
        raise ValueError(f"networks must be one of {NETWORKS}, got {networks!r}")
    game = game_to_name(game)
    if model_preset not in MODEL_PRESETS:
        raise ValueError(f"model preset must be one of {sorted(MODEL_PRESETS)}, got {model_preset!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    dataset = EpisodeDataset(data, game=game)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    distributed, device = init_distributed(device)
    main_rank = distributed.is_main
    action_meanings = game_action_meanings(game)
    torch.manual_seed(seed)
    model = WorldModel(MODEL_PRESETS[model_preset](len(action_meanings))).to(device)
    # a fixed dataset: DIAMOND ignores its recency weights there (static_dataset.ignore_sample_weights)
    config = config or WorldModelTrainingConfig(sample_weights=None)
    trainer = WorldModelTrainer(model, dataset, config, seed=seed, distributed=distributed)
    state_path = out / "train_state.safetensors"
    if state_path.exists():
        trainer.load_state_dict(load_state(state_path))
    denoiser, rew_end = networks in ("both", "denoiser"), networks in ("both", "rew_end")
    log = CsvLog(out / ("losses.csv" if networks == "both" else f"losses_{networks}.csv"))
    counter = "denoiser" if denoiser else "rew_end"
    start = trainer.steps[counter]
    every = trainer.config.fidelity_every
    fidelity_log = CsvLog(out / "fidelity.csv")
    test_ids = np.zeros(0, np.int64)
    if every:
        test_ids = dataset.split(trainer.config.test_fraction, seed=0)[1]
        if test_ids.size == 0:
            raise ValueError(f"fidelity logging needs held-out episodes, but test_fraction="
                             f"{trainer.config.test_fraction} holds none of the {len(dataset)} in {data} out: "
                             f"collect more episodes")
    if main_rank:
        log.drop_after(start)
        fidelity_log.drop_after(start, key="update")
    bar = tqdm(total=steps, initial=min(start, steps), desc=f"{networks.replace('_', '/')} {game}",
               disable=not (progress and main_rank))

    def judge(update: int) -> None:
        """Append the fidelity row of ``update`` (rank 0)."""
        t0 = time.perf_counter()
        row = fidelity_figures(model, dataset, test_ids, samples=trainer.config.fidelity_samples, seed=seed,
                               events=rew_end, sequence_length=trainer.config.rew_end_sequence_length)
        seconds = time.perf_counter() - t0
        fidelity_log.write({"update": update, "seconds": round(seconds, 2), **row})
        if progress:
            tqdm.write(_fidelity_line(update, seconds, row))

    def fidelity_due(update: int) -> bool:
        return bool(every) and main_rank and update > 0 and (update % every == 0 or update == steps)

    if fidelity_due(start) and start not in fidelity_log.logged("update"):  # saved before its row was written
        judge(start)
    try:
        for step in range(start, steps):
            t0 = time.perf_counter()
            scalars = {**(trainer.denoiser_step() if denoiser else {}), **(trainer.rew_end_step() if rew_end else {})}
            if main_rank and ((step + 1) % log_every == 0 or step + 1 == steps):
                log.write({"step": step + 1, **scalars, "seconds": round(time.perf_counter() - t0, 4)})
                bar.set_postfix({k: f"{v:.4f}" for k, v in scalars.items() if k.endswith("_loss")})
            if fidelity_due(step + 1):  # before the save: a state is never ahead of its row
                judge(step + 1)
            if main_rank and (step + 1) % save_every == 0:
                save_state(state_path, trainer.state_dict())
            bar.update(1)
    finally:
        bar.close()
        if main_rank and trainer.steps[counter] > start:  # interrupted or done: keep what was learnt
            save_state(state_path, trainer.state_dict())
    checkpoint = out / "world_model.safetensors"
    if not main_rank:
        distributed.barrier()  # until rank 0 has written the checkpoint
        return checkpoint
    save_checkpoint(checkpoint, model.cpu(), game=game, action_meanings=action_meanings,
                    start_bank=trainer.start_bank(), provenance={
                        "denoiser_steps": trainer.steps["denoiser"], "rew_end_steps": trainer.steps["rew_end"],
                        "dataset_steps": dataset.num_steps, "dataset_episodes": len(dataset), "seed": seed,
                        "model_preset": model_preset, "processes": distributed.world_size,
                        "recipe": "DIAMOND's trainer", "autoregressive_steps": trainer.config.autoregressive_steps,
                        "sample_weights": trainer.config.sample_weights,
                        "context_noise": trainer.config.context_noise,
                        "termination_oversampling": trainer.config.termination_oversampling,
                        "changed_pixel_weight": trainer.config.changed_pixel_weight,
                        "batch_size": trainer.config.batch_size * distributed.world_size,
                        "data_collection": read_collection_log(data),
                        "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    model.to(device)
    distributed.barrier()
    return checkpoint


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision and --compile, shared by the training commands (benchmarks/README.md has their speed)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="autocast of the networks. Default: fp32, as DIAMOND trains and dreams (bf16-trained "
                             "light Pong dreams exploded in A/B runs, benchmarks/README.md)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the networks (minutes to compile first, faster after)")


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a DIAMOND world model on a dataset of real episodes.")
    parser.add_argument("--game", required=True, help="Atari game, e.g. Pong")
    parser.add_argument("--data", required=True, help="dataset folder (python -m training.collect)")
    parser.add_argument("--out", required=True, help="run folder: training state, losses.csv, checkpoint")
    parser.add_argument("--steps", type=int, required=True, help="updates of each network (total, not more)")
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default="paper", help="model size")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="samples per update and process: under torchrun the global batch is N times this")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--rew-end-sequence-length", type=int, default=19,
                        help="frames per reward/termination training sequence (DIAMOND: 19, 18 transitions)")
    parser.add_argument("--warmup-steps", type=int, default=100,
                        help="updates over which the learning rate rises linearly from 0 (DIAMOND: 100)")
    parser.add_argument("--autoregressive-steps", type=int, default=1,
                        help="denoiser targets after the first, each conditioned on the model's own estimate of "
                             "the one before (DIAMOND: 1)")
    parser.add_argument("--sample-weights", type=float, nargs="+", default=None,
                        help="probabilities of the dataset's recency groups, oldest first (e.g. DIAMOND's 0.1 0.1 "
                             "0.1 0.7 for a growing dataset; default: length-proportional, DIAMOND's rule for a "
                             "fixed dataset)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="hold out this fraction of episodes (the fidelity benchmark's split)")
    parser.add_argument("--context-noise", type=float, default=0.0,
                        help="train the denoiser on context frames with Gaussian noise up to this level (frames in "
                             "[-1, 1]; GameNGen's remedy for drift; 0, the default, is DIAMOND's training)")
    parser.add_argument("--termination-oversampling", type=float, default=0.0,
                        help="fraction of each reward/termination batch cut around a real termination (0, the "
                             "default: DIAMOND's uniform sampling)")
    parser.add_argument("--changed-pixel-weight", type=float, default=0.0,
                        help="weight the denoiser's squared error by 1 + W on the pixels that change from the frame "
                             "before (dilated by a pixel), normalised to a mean weight of 1 per frame: against "
                             "dreams that drop the ball (0, the default: DIAMOND's loss). A resumed run keeps it")
    parser.add_argument("--fidelity-every", type=int, default=0,
                        help="every N updates (and at the end) judge the model on the held-out episodes (needs "
                             "--test-fraction > 0) and append a row to OUT/fidelity.csv: open-loop ball/paddle "
                             "agreement and pooled PSNR at horizons 1/5/15, the ball kept by the denoiser at each "
                             "noise level, event recall/precision. Trains the same weights as without (0: off)")
    parser.add_argument("--fidelity-samples", type=int, default=32,
                        help="held-out samples per fidelity figure (dreams and noisy frames; default 32)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only-rew-end", action="store_true",
                      help="train the reward/termination model alone (--steps counts its updates): a fine-tuning "
                           "that leaves the denoiser as it is")
    only.add_argument("--only-denoiser", action="store_true",
                      help="train the denoiser alone (the reward/termination model stays as it is)")
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    if args.fidelity_every and args.test_fraction == 0:
        parser.error("--fidelity-every judges the model on held-out episodes: hold some out with --test-fraction "
                     "(e.g. 0.1)")
    config = WorldModelTrainingConfig(batch_size=args.batch_size, rew_end_sequence_length=args.rew_end_sequence_length,
                                      autoregressive_steps=args.autoregressive_steps, warmup_steps=args.warmup_steps,
                                      sample_weights=tuple(args.sample_weights) if args.sample_weights else None,
                                      test_fraction=args.test_fraction, precision=args.precision or "fp32",
                                      compile=args.compile, context_noise=args.context_noise,
                                      termination_oversampling=args.termination_oversampling,
                                      changed_pixel_weight=args.changed_pixel_weight,
                                      fidelity_every=args.fidelity_every, fidelity_samples=args.fidelity_samples)
    path = train_world_model(args.game, args.data, args.out, args.steps, model_preset=args.model, device=args.device,
                             seed=args.seed, save_every=args.save_every, config=config,
                             networks="rew_end" if args.only_rew_end else "denoiser" if args.only_denoiser else "both")
    distributed, _ = init_distributed(args.device)
    if distributed.is_main:
        print(f"world model checkpoint: {path}")
    distributed.close()


if __name__ == "__main__":
    main()
