"""Does the reward/termination model see the events? Confusion matrices on real transitions.

Rewards and terminations are rare (a Pong point every few hundred steps), so accuracy over random
transitions says little: a model that never predicts a reward scores 99%. ``event_confusion`` runs
the reward/termination model over *every* transition of the given episodes, cut into consecutive
sequences of ``sequence_length`` (as it is trained: each sequence from a zero LSTM state), and counts
predicted (argmax) against true reward signs and terminations. ``EventReport`` turns the counts into
recall and precision of the events: of the transitions that carry a reward, how many get its sign;
of the predicted rewards, how many are right; the same for terminations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gym_diamond import WorldModel
from gym_diamond.envs.core import to_model_frames
from training.dataset import EpisodeDataset

__all__ = ["EventReport", "event_confusion"]


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


@dataclass
class EventReport:
    """Counts of (true, predicted) classes over real transitions."""

    reward: np.ndarray  # (3, 3): rows the true reward sign (-1, 0, +1), columns the predicted one
    termination: np.ndarray  # (2, 2): rows true (not terminated, terminated), columns predicted

    def reward_recall(self) -> float | None:
        """Of the transitions with a reward, the fraction whose sign is predicted (None: no reward seen)."""
        return _ratio(int(self.reward[0, 0] + self.reward[2, 2]), int(self.reward[[0, 2]].sum()))

    def reward_precision(self) -> float | None:
        """Of the transitions predicted to carry a reward, the fraction with that reward's sign."""
        return _ratio(int(self.reward[0, 0] + self.reward[2, 2]), int(self.reward[:, [0, 2]].sum()))

    def termination_recall(self) -> float | None:
        return _ratio(int(self.termination[1, 1]), int(self.termination[1].sum()))

    def termination_precision(self) -> float | None:
        return _ratio(int(self.termination[1, 1]), int(self.termination[:, 1].sum()))

    def to_dict(self) -> dict[str, Any]:
        return {"transitions": int(self.reward.sum()),
                "reward_events": int(self.reward[[0, 2]].sum()), "reward_recall": self.reward_recall(),
                "reward_precision": self.reward_precision(), "reward_confusion": self.reward.tolist(),
                "terminations": int(self.termination[1].sum()), "termination_recall": self.termination_recall(),
                "termination_precision": self.termination_precision(),
                "termination_confusion": self.termination.tolist()}


@torch.no_grad()
def event_confusion(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                    sequence_length: int = 19, batch_size: int = 64) -> EventReport:
    """Reward-sign and termination confusion of ``model`` over all transitions of ``episode_ids``."""
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
    device = model.device
    model.rew_end.eval()
    reward, termination = np.zeros((3, 3), np.int64), np.zeros((2, 2), np.int64)
    starts = [(int(e), s) for e in episode_ids for s in range(0, int(dataset.lengths[int(e)]), sequence_length)]
    for i in range(0, len(starts), batch_size):
        ids, firsts = zip(*starts[i:i + batch_size], strict=True)
        seg = dataset.get_segments(np.array(ids), np.array(firsts), sequence_length)
        frames = to_model_frames(torch.as_tensor(seg.frames, device=device))
        actions = torch.as_tensor(seg.actions, device=device).long()
        out = model.rew_end(frames[:, :-1], actions, frames[:, 1:])
        real = seg.mask
        true_reward = np.sign(seg.rewards[real]).astype(np.int64) + 1
        predicted_reward = out.reward_logits.argmax(-1).cpu().numpy()[real]
        np.add.at(reward, (true_reward, predicted_reward), 1)
        predicted_end = out.end_logits.argmax(-1).cpu().numpy()[real]
        np.add.at(termination, (seg.terminated[real].astype(np.int64), predicted_end), 1)
    return EventReport(reward, termination)
