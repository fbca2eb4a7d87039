"""Alternating updates of a DIAMOND world model's denoiser and reward/termination model, as DIAMOND's trainer makes
them (its ``src/trainer.py``): the batches, the noise draws, the optimisers and their saved state.

``training.world_model.run.train_world_model`` runs a trainer in a run folder; ``python -m training.world_model``
from the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import numpy as np
import torch

from gym_diamond import StartBank, WorldModel, to_model_frames
from gym_diamond.acceleration import Acceleration
from gym_diamond.config import TRAINING_NOISE_FIELDS, WorldModelConfig
from gym_diamond.cpu_memory import keep_freed_memory
from gym_diamond.diffusion import TrainingNoise
from gym_diamond.errors import UserError
from training.data import ball_paths
from training.data.dataset import EpisodeDataset, Segment
from training.data.games import rules
from training.data.sampling import BatchSampler
from training.runtime.distributed import Distributed
from training.runtime.optim import adamw, optimizer_update, warmup_lr
from training.runtime.state import load_optimizer_state, optimizer_state, restore_rng, rng_state
from training.world_model import context_ghosts
from training.world_model.context_erasure import UNIFORMS_PER_SAMPLE, erase_still_patches
from training.world_model.dream_contexts import DreamContexts
from training.world_model.objectives import DenoiserObjective, RewEndObjective, changed_pixel_weights
from training.world_model.training_config import WorldModelTrainingConfig
from training.world_model.weight_average import WeightAverage

# Version of the training recipe in saved training states: 2 is DIAMOND's trainer (autoregressive denoiser
# targets, grey padding, its sampling, weight-decay groups and warm-up); states without it came before.
TRAINING_RECIPE = 2


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
        self._denoiser_objective = self.distributed.wrap(DenoiserObjective(model.denoiser))
        self._rew_end_objective = self.distributed.wrap(RewEndObjective(model.rew_end))
        self.denoiser_opt = adamw(model.denoiser, c.lr, c.eps, c.weight_decay)
        self.rew_end_opt = adamw(model.rew_end, c.lr, c.eps, c.weight_decay)
        self.steps = {"denoiser": 0, "rew_end": 0}
        # the update counts the learning rate's warm-up starts from: 0, or a warm start's (new optimisers need one)
        self.warmup_from = {"denoiser": 0, "rew_end": 0}
        self.cpu_seconds = 0.0  # CPU time of this process's updates, over resumes: fidelity per CPU hour
        # the fingerprints of the episodes the runs this one goes on from trained on (resumed, branched, warm-started)
        self.inherited_fingerprints: set[str] = set()
        self.rng = np.random.default_rng(seed)
        self.noise = torch.Generator(device=self.device).manual_seed(seed)
        self.dream_contexts = None  # the rollouts whose contexts a share of each denoiser batch learns from
        if c.dream_contexts > 0:
            self.dream_contexts = DreamContexts(
                round(c.dream_contexts * c.batch_size), model.config.denoiser.context_length,
                1 + c.autoregressive_steps, dataset.lengths, self._learnt_episodes(), c.dream_context_age,
                c.dream_context_tolerance, seed, self.device, stream=self.distributed.rank)

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

    @functools.cached_property
    def opponent_moments(self) -> np.ndarray:
        """(episode, frame) rows of the training episodes where the ball comes towards the opponent's paddle
        (``training.data.ball_paths.opponent_moments``), for ``denoiser_opponent_oversampling``."""
        L = self.model.config.denoiser.context_length
        found = ball_paths.opponent_moments(self.dataset, self._learnt_episodes(), L)
        return self._moment_rows(found, "the ball coming towards the opponent's paddle",
                                 "denoiser_opponent_oversampling")

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
        followed = round(self.config.denoiser_opponent_oversampling * len(ids))
        if followed:  # the target is one of the return_horizon frames after the ball comes towards the opponent
            chosen = self.rng.integers(0, len(self.opponent_moments), followed)
            after = self.rng.integers(1, rules(self.dataset.game).return_horizon + 1, followed)
            first = rewarded + at_paddle + served
            ids[first:first + followed] = self.opponent_moments[chosen, 0]
            starts[first:first + followed] = self.opponent_moments[chosen, 1] + after - L
        local_ids, local_starts = ids[rows].copy(), starts[rows].copy()
        dreamt = self.dream_contexts.size if self.dream_contexts is not None else 0
        if dreamt:  # the last rows of every rank's shard: contexts from the pool, the real frames that followed
            pool = self.dream_contexts.rows(self._real_contexts)
            local_ids[-dreamt:], local_starts[-dreamt:] = pool.episodes, pool.starts
            in_pool = np.arange(len(ids)) % self.config.batch_size >= self.config.batch_size - dreamt
            starts[in_pool] = np.maximum(starts[in_pool], 0)  # every rank's pool rows are real, for the counts below
        t = segment_tensors(self.dataset.get_segments(local_ids, local_starts, L + K - 1), self.device)
        if dreamt:
            t["frames"][-dreamt:, :L] = pool.contexts
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
        if self.config.context_erasure > 0:  # drawn for the global batch too
            uniforms = torch.rand((len(ids), UNIFORMS_PER_SAMPLE), generator=self.noise, device=self.device)[rows]
            frames = erase_still_patches(frames, L, self.config.context_erasure, uniforms)
        if self.config.context_ghosts > 0:  # drawn for the global batch too
            uniforms = torch.rand((len(ids), context_ghosts.UNIFORMS_PER_SAMPLE), generator=self.noise,
                                  device=self.device)[rows]
            frames = context_ghosts.add_context_ghosts(frames, L, self.config.context_ghosts, uniforms)
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
        scalars = {"denoiser_loss": loss_value, "denoiser_grad_norm": grad_norm}
        if dreamt:  # the rollouts' next frames, by the weights just updated
            scalars["dream_context_age"] = self.dream_contexts.mean_age()
            self.dream_contexts.advance(self.model.denoiser, t["actions"][-dreamt:, :L], t["frames"][-dreamt:, L],
                                        self.model.config.sampler, self.autocast)
        return scalars

    def _real_contexts(self, episodes: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        """The real L-frame contexts starting at ``starts`` of ``episodes``: where dream contexts' rollouts begin."""
        L = self.model.config.denoiser.context_length
        return segment_tensors(self.dataset.get_segments(episodes, starts, L - 1), self.device)["frames"]

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
                endings, F, self.rng, episode_ids=self.train_episode_ids(), lead_in=self.config.termination_lead_in)
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

    def trained_fingerprints(self) -> list[str]:
        """The fingerprints (``EpisodeDataset.fingerprints``) of every episode the networks learnt from, sorted: the
        training split of the data now and those of the runs this one goes on from. A checkpoint records them, so
        that the same episodes collected again are never judged as held out (training.fidelity.held_out)."""
        return sorted(self.inherited_fingerprints | set(self.dataset.fingerprints(self._learnt_episodes())))

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
            "trained_fingerprints": self.trained_fingerprints(),
            "rng": rng_state(self.rng, self.noise),
            "config": dataclasses.asdict(self.config),
            "model_config": self.model.config.to_dict(),
            "recipe": TRAINING_RECIPE,
            "averages": {name: average.state_dict() for name, average in self.averages.items()},
            **({"dream_contexts": self.dream_contexts.state_dict()} if self.dream_contexts is not None else {}),
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
        self.inherited_fingerprints = set(state.get("trained_fingerprints", ()))  # older states: none recorded
        restore_rng(state["rng"], self.rng, self.noise)
        if self.dream_contexts is not None and "dream_contexts" in state and not branch:  # a branch: a new pool
            self.dream_contexts.load_state_dict(state["dream_contexts"])


def _plain_config(config: WorldModelConfig) -> dict[str, Any]:
    """``config`` as the JSON a training state stores (tuples as lists), to compare with a saved one."""
    return json.loads(json.dumps(config.to_dict()))
