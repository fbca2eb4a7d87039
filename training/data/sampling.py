"""Where training samples are cut from a dataset: DIAMOND's ``BatchSampler`` (its ``data/batch_sampler.py``).

``EpisodeDataset`` stores episodes and reads segments of them; ``BatchSampler`` draws where the segments lie:
episodes by DIAMOND's weights, positions by its rule, and the oversampling of terminations and rewards that the
CPU recipes add. It holds no state but its dataset: the random generator is the caller's, so a resumed run that
restores its generator draws the same batches.
"""

from __future__ import annotations

import numpy as np

from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset, Segment, check_sample_weights

__all__ = ["BatchSampler"]


class BatchSampler:
    """Draws segment positions (and segments) of ``dataset``; nothing is loaded until ``sample_segments``."""

    def __init__(self, dataset: EpisodeDataset) -> None:
        self.dataset = dataset

    def episode_weights(self, episode_ids: np.ndarray | None = None,
                        sample_weights: tuple[float, ...] | None = None) -> np.ndarray:
        """Probabilities with which ``sample_positions`` picks each of ``episode_ids`` (default: all).

        DIAMOND's rule (its ``data/batch_sampler.py``): with ``sample_weights`` None, or fewer episodes
        than weights, proportional to episode length, so every acting frame is equally likely; else the
        episodes (oldest first) are cut into ``len(sample_weights)`` groups of ``n // k`` (the newest
        group takes the remainder), group g gets probability ``sample_weights[g]`` and each of its
        episodes an equal share, whatever its length. DIAMOND's (0.1, 0.1, 0.1, 0.7) favours the newest
        quarter while the dataset grows; it ignores the weights on a fixed dataset.
        """
        ids = np.arange(len(self.dataset)) if episode_ids is None else np.sort(np.asarray(episode_ids, dtype=np.int64))
        lengths = self.dataset.lengths[ids].astype(np.float64)
        if sample_weights is None or len(ids) < len(sample_weights):
            return lengths / lengths.sum()
        weights = check_sample_weights(sample_weights)
        k, n = len(weights), len(ids)
        sizes = [n // k] * (k - 1) + [n // k + n % k]
        return np.concatenate([np.full(size, w / size) for w, size in zip(weights, sizes, strict=True)])

    def sample_positions(self, batch_size: int, num_frames: int, rng: np.random.Generator, *,
                         episode_ids: np.ndarray | None = None, sample_weights: tuple[float, ...] | None = None,
                         beyond_end: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Where segments of ``num_frames`` frames are cut: (episode ids, first frame indices), nothing loaded.

        DIAMOND's ``BatchSampler.sample``: an episode drawn with ``episode_weights``, a frame t uniform
        among its T acting frames (the frame after its last action is never drawn), then
        - ``beyond_end=False`` (the denoiser's samples, start contexts): the segment ends at
          ``min(T, t + 1 + u)`` with u uniform in [0, num_frames), padding only before the start, so
          every frame after the first ``num_frames - 1`` is real and frames near the end are cut more often;
        - ``beyond_end=True`` (reward/termination sequences): t sits at a uniform position of the
          segment, which may run past either end.
        Data-parallel ranks draw the positions of a whole global batch and load their shard only.
        """
        if batch_size < 1 or num_frames < 1:
            raise UserError(f"batch_size and num_frames must be >= 1, got {batch_size} and {num_frames}")
        if len(self.dataset) == 0:
            raise UserError(f"the dataset at {self.dataset.root} has no episodes to sample from")
        ids = np.arange(len(self.dataset)) if episode_ids is None else np.sort(np.asarray(episode_ids, dtype=np.int64))
        if ids.size == 0:
            raise UserError("episode_ids is empty")
        if ids.min() < 0 or ids.max() >= len(self.dataset):
            raise UserError(f"episode_ids must be in [0, {len(self.dataset)}), got {ids.min()}..{ids.max()}")
        chosen = rng.choice(ids, size=batch_size, p=self.episode_weights(ids, sample_weights))
        lengths = self.dataset.lengths[chosen]
        t = rng.integers(0, lengths)
        if beyond_end:
            return chosen, t - rng.integers(0, num_frames, batch_size)
        stops = np.minimum(lengths, t + 1 + rng.integers(0, num_frames, batch_size))
        return chosen, stops - num_frames

    def sample_segments(self, batch_size: int, num_frames: int, rng: np.random.Generator, *,
                        episode_ids: np.ndarray | None = None, sample_weights: tuple[float, ...] | None = None,
                        beyond_end: bool = False) -> Segment:
        """``batch_size`` random segments of ``num_frames`` frames (``num_frames - 1`` transitions).

        Drawn where ``sample_positions`` draws them, then loaded with ``EpisodeDataset.get_segments``.
        """
        episode_ids, starts = self.sample_positions(batch_size, num_frames, rng, episode_ids=episode_ids,
                                                    sample_weights=sample_weights, beyond_end=beyond_end)
        return self.dataset.get_segments(episode_ids, starts, num_frames - 1)

    def sample_ending_positions(self, batch_size: int, num_frames: int, rng: np.random.Generator, *,
                                episode_ids: np.ndarray | None = None,
                                lead_in: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Like ``sample_positions(..., beyond_end=True)``, but every segment holds a termination.

        The episode is drawn uniformly among those of ``episode_ids`` that terminated; its last acting
        frame sits at a uniform position among the segment's first ``num_frames - 1`` frames past the
        first ``lead_in``, so the terminating transition lies inside the segment with at least ``lead_in``
        transitions before it (what announces an ending may come steps before it: Breakout counts a life
        lost 8 steps after the ball leaves the screen). The rest may run past the start.
        """
        if batch_size < 1 or num_frames < 2:
            raise UserError(f"batch_size must be >= 1 and num_frames >= 2, got {batch_size} and {num_frames}")
        if not 0 <= lead_in < num_frames - 1:
            raise UserError(f"lead_in must be in [0, {num_frames - 1}) for segments of {num_frames} frames, "
                            f"got {lead_in}")
        ended = self.dataset.terminated_episodes(episode_ids)
        if ended.size == 0:
            raise UserError(f"no episode of the dataset at {self.dataset.root} terminated: nothing to oversample")
        chosen = rng.choice(ended, size=batch_size)
        return chosen, self.dataset.lengths[chosen] - 1 - rng.integers(lead_in, num_frames - 1, batch_size)

    def sample_rewarded_transitions(self, batch_size: int, rng: np.random.Generator, *,
                                    episode_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` rewarded transitions of ``episode_ids``, drawn uniformly: (episode ids, steps)."""
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        episodes, steps = self.dataset.rewarded_steps(episode_ids)
        if episodes.size == 0:
            raise UserError(f"no transition of the dataset at {self.dataset.root} is rewarded: nothing to oversample")
        chosen = rng.integers(0, episodes.size, batch_size)
        return episodes[chosen], steps[chosen]

    def sample_reward_positions(self, batch_size: int, num_frames: int, rng: np.random.Generator, *,
                                episode_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like ``sample_ending_positions``, but every segment holds a rewarded transition.

        The transition is drawn uniformly among the rewarded ones of ``episode_ids``, and sits at a uniform
        position among the segment's ``num_frames - 1`` transitions (the segment may run past either end).
        """
        if num_frames < 2:
            raise UserError(f"num_frames must be >= 2, got {num_frames}")
        episodes, steps = self.sample_rewarded_transitions(batch_size, rng, episode_ids=episode_ids)
        return episodes, steps - rng.integers(0, num_frames - 1, batch_size)

    def real_steps(self, episode_ids: np.ndarray, starts: np.ndarray, num_steps: int) -> int:
        """How many transitions of these segments lie inside their episodes (``Segment.mask``'s count)."""
        step_idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(num_steps)
        lengths = self.dataset.lengths[np.asarray(episode_ids, dtype=np.int64)][:, None]
        return int(((step_idx >= 0) & (step_idx < lengths)).sum())
