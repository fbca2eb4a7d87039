"""Rewards and endings read over whole episodes as a dream reads them.

``training.fidelity.measures.event_confusion`` reads real transitions in fresh sequences of 19, as DIAMOND trains
the reward/termination model and as its 15-step imagination uses it. A gymnasium dream reads hundreds of steps,
from its start context's burn-in on (``gym_diamond.envs.rew_end_reading``: two LSTM states restarted in turn, or
one carried). ``dream_reading_confusion`` reads each real held-out episode that way, one transition at a time from
its first L frames burnt in, and counts the calls against the game's: what the dream would hand an agent on these
frames. The burn-in's L - 1 transitions are left out (a dream never reads its start context's).
"""

from __future__ import annotations

import numpy as np
import torch

from gym_diamond import WorldModel, to_model_frames
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, reading_for
from gym_diamond.world_model import read_transition
from training.data.dataset import EpisodeDataset
from training.fidelity.measures import EventReport

__all__ = ["dream_calls", "dream_reading_confusion"]


@torch.no_grad()
def dream_calls(model: WorldModel, dataset: EpisodeDataset, episodes: list[int], window: int | None
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reward sign (-1, 0, 1) and end call (0, 1) of every transition of ``episodes`` (read together, a batch),
    each read one transition at a time as a dream reads it (``rew_end_window=window``): its first L frames burnt in
    (their transitions' calls left 0), then each transition stepped."""
    L = model.config.denoiser.context_length
    device = model.device
    model.rew_end.eval()
    loaded = [dataset.episode(e) for e in episodes]
    lengths = [len(episode.actions) for episode in loaded]
    longest = max(lengths)
    # every episode padded to the longest with its last frame (the padding's calls are dropped)
    frames = np.stack([np.concatenate([ep.frames, np.repeat(ep.frames[-1:], longest + 1 - len(ep.frames), 0)])
                       for ep in loaded])
    actions = np.stack([np.pad(ep.actions, (0, longest - len(ep.actions))) for ep in loaded])
    frames = to_model_frames(torch.as_tensor(frames, device=device))
    actions = torch.as_tensor(actions, device=device).long()
    reading = reading_for(model.rew_end.burn_in, model.rew_end.initial_state(len(episodes), device), window)
    reading.restart(torch.ones(len(episodes), dtype=torch.bool, device=device), frames[:, :L], actions[:, :L])
    signs = np.zeros((len(episodes), longest), np.int64)
    ends = np.zeros((len(episodes), longest), np.int64)
    for t in range(L - 1, longest):
        state, read_from = reading.before_step()
        reward_logits, end_logits, state = read_transition(model.rew_end, frames[:, t:t + 1], actions[:, t:t + 1],
                                                           frames[:, t + 1:t + 2], state, read_from)
        reading.after_step(state)
        signs[:, t] = reward_logits.argmax(-1).cpu().numpy() - 1
        ends[:, t] = end_logits.argmax(-1).cpu().numpy()
    return [(signs[i, :n], ends[i, :n]) for i, n in enumerate(lengths)]


def dream_reading_confusion(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                            window: int | None = DEFAULT_WINDOW, batch_size: int = 16) -> EventReport:
    """Reward-sign and termination confusion over every transition of ``episode_ids`` but each one's burn-in, read
    as a dream with ``rew_end_window=window`` reads them (:func:`dream_calls`)."""
    L = model.config.denoiser.context_length
    report = EventReport.empty()
    ids = [int(e) for e in episode_ids]
    for i in range(0, len(ids), batch_size):
        batch = ids[i:i + batch_size]
        for e, (signs, ends) in zip(batch, dream_calls(model, dataset, batch, window), strict=True):
            episode = dataset.episode(e)
            report.add_calls(episode.rewards[L - 1:], episode.terminated[L - 1:], signs[L - 1:], ends[L - 1:])
    return report
