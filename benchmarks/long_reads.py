"""Rewards and endings read over whole held-out episodes, as a long dream reads them: three ways to keep the
reward/termination LSTM state.

DIAMOND trains the reward/termination model on sequences of 19 transitions from a zero state and imagines 15 steps
after a burn-in of 3, so its reader never runs past that length; ``training.fidelity --events`` judges it the same
way (fresh sequences of 19). A gymnasium dream runs for hundreds of steps. This reads every held-out episode one
transition at a time, from its first L frames burnt in, as ``gym_diamond``'s dreams do, and counts the rewards and
endings read against the game's:

- ``fresh``: consecutive sequences of ``--window`` transitions, each from a zero state (``--events``' reading);
- ``carried``: one state carried over the whole episode (``rew_end_window=None``, DIAMOND's ``WorldModelEnv``);
- ``staggered``: two states restarted in turn every ``--window`` transitions, the older read (the dreams' default).

The first L - 1 transitions of each episode (the burn-in) are left out of every count.

    python benchmarks/long_reads.py --data DATA --checkpoint WM [--window 19] [--episodes N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from gym_diamond import WorldModel
from gym_diamond.checkpoint import read_metadata
from gym_diamond.envs.core import to_model_frames
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, check_window, reading_for
from gym_diamond.world_model import read_logits
from training.data.dataset import EpisodeDataset
from training.fidelity.held_out import judged_data
from training.fidelity.measures import EventReport, episode_calls
from training.runtime.cli import add_device_argument, user_errors

READINGS = ("fresh", "carried", "staggered")


@torch.no_grad()
def dream_calls(model: WorldModel, dataset: EpisodeDataset, episodes: list[int], window: int | None
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reward sign (-1, 0, 1) and end call (0, 1) of every transition of ``episodes`` (a batch, read together),
    each episode read one transition at a time as a dream reads it (``rew_end_window=window``): its first L frames
    burnt in (their transitions' calls left 0), then each transition stepped."""
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
        copies = state[0].shape[1] // len(episodes)
        out = model.rew_end(frames[:, t:t + 1].repeat(copies, 1, 1, 1, 1), actions[:, t:t + 1].repeat(copies, 1),
                            frames[:, t + 1:t + 2].repeat(copies, 1, 1, 1, 1), state)
        reading.after_step(out.state)
        signs[:, t] = read_logits(out.reward_logits[:, 0], read_from).argmax(-1).cpu().numpy() - 1
        ends[:, t] = read_logits(out.end_logits[:, 0], read_from).argmax(-1).cpu().numpy()
    return [(signs[i, :n], ends[i, :n]) for i, n in enumerate(lengths)]


def long_read_report(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int],
                     window: int = DEFAULT_WINDOW, batch_size: int = 16) -> dict[str, dict[str, object]]:
    """Reward and termination recall / precision (``EventReport``) of each reading over ``episode_ids``, the
    burn-in's transitions left out."""
    L = model.config.denoiser.context_length
    reports = {name: EventReport.empty() for name in READINGS}
    ids = [int(e) for e in episode_ids]
    for i in range(0, len(ids), batch_size):
        batch = ids[i:i + batch_size]
        calls = {"carried": dream_calls(model, dataset, batch, None),
                 "staggered": dream_calls(model, dataset, batch, window),
                 "fresh": [episode_calls(model, dataset, e, sequence_length=window) for e in batch]}
        for j, e in enumerate(batch):
            episode = dataset.episode(e)
            read = slice(L - 1, None)
            for name, report in reports.items():
                signs, ends = calls[name][j]
                report.add_calls(episode.rewards[read], episode.terminated[read], signs[read], ends[read])
    return {name: report.to_dict() for name, report in reports.items()}


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset (python -m training.data.collect)")
    parser.add_argument("--checkpoint", required=True, help="the world model whose reward/termination model reads")
    parser.add_argument("--game", default=None, help="the dataset's game (default: the checkpoint's)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="transitions between restarts (fresh, staggered; default DIAMOND's 19)")
    parser.add_argument("--episodes", type=int, default=None, help="read only the first N held-out episodes")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="the held-out fraction (default: the checkpoint's record)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    check_window(args.window)
    game = args.game or read_metadata(args.checkpoint)["game"]
    model, dataset, episodes = judged_data(args.data, game, args.checkpoint, args.test_fraction, args.device)
    episodes = episodes[:args.episodes] if args.episodes else episodes
    print(json.dumps({"data": args.data, "checkpoint": args.checkpoint, "window": args.window,
                      "episodes": int(len(episodes)), **long_read_report(model, dataset, episodes, args.window)}))


if __name__ == "__main__":
    main()
