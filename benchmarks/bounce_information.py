"""Is the outcome of a bounce in the frames? How well the positions a dream sees predict return or miss.

A dream that returns half the balls the game returns (``python -m training.fidelity --returns``) either has not
learnt the bounce or is asked for something the 64x64 frames do not say (where on the paddle the ball lands, sub-pixel
timing); the fix differs (more updates or emphasis, against a sampler that draws one of several outcomes). This asks
the data: at every moment the ball reaches the player's paddle (``training.data.ball_paths.paddle_moments``), the
ball's and the paddle's positions over the last ``--frames`` frames (``training.data.objects.find_objects``) and the
actions until the outcome feed a small classifier trained on the training episodes; its share right on the held-out
episodes, against always answering the commoner outcome, bounds from below what the frames tell.

    python benchmarks/bounce_information.py --data DATA [--test-fraction 0.1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from training.data.ball_paths import paddle_moments, return_geometry
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects


def bounce_table(dataset: EpisodeDataset, episode_ids: np.ndarray, frames: int = 4,
                 num_actions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, f) float32, outcomes (n,) 1 return / 0 miss) of the paddle moments of ``episode_ids``.

    Features: the ball's position relative to the paddle and the ball's own at the last ``frames`` frames, their
    steps between frames, and the actions (one-hot) from the first of those frames until the game's return horizon.
    Moments where the ball or the paddle is not found in every one of those frames are left out."""
    horizon = return_geometry(dataset.game).horizon
    found = paddle_moments(dataset, episode_ids, frames)
    n_actions = num_actions or int(max(dataset.episode(int(e)).actions.max(initial=0) for e in episode_ids)) + 1
    rows, outcomes, objects = [], [], {}
    for outcome, kind in ((1, "returns"), (0, "misses")):
        for e, s in found[kind]:
            if e not in objects:
                episode = dataset.episode(int(e))
                objects[e] = (find_objects(dataset.game, episode.frames), episode.actions)
            seen, actions = objects[e]
            last = slice(s - frames + 1, s + 1)
            ball, paddle = seen.ball_xy[last], seen.paddle_xy[last]
            taken = actions[s - frames + 1:s + horizon]
            if np.isnan(ball).any() or np.isnan(paddle).any() or len(taken) < frames + horizon - 1:
                continue
            rows.append(np.concatenate([(ball - paddle).ravel(), ball.ravel(), np.diff(ball, axis=0).ravel(),
                                        np.diff(paddle, axis=0).ravel(), np.eye(n_actions)[taken].ravel()]))
            outcomes.append(outcome)
    width = 2 * frames * 2 + 2 * (frames - 1) * 2 + n_actions * (frames + horizon - 1)
    return np.array(rows, np.float32).reshape(-1, width), np.array(outcomes, np.float32)


def held_out_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *,
                      hidden: int = 128, steps: int = 3000, seed: int = 0) -> dict[str, float]:
    """A one-hidden-layer classifier fit on ``train`` (features, outcomes), judged on ``test``: the share right,
    of returns called returns, of misses called misses, and the share of always answering the commoner outcome."""
    (x, y), (x_test, y_test) = train, test
    if len(x) == 0 or len(x_test) == 0 or len(np.unique(y)) < 2:
        raise ValueError(f"need returns and misses to train on and moments to judge, got {len(x)} ({y.sum():.0f} "
                         f"returns) and {len(x_test)}")
    mean, std = x.mean(0), x.std(0) + 1e-6
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    for p in net.parameters():  # seeded initialisation: the same figures on every run
        torch.nn.init.normal_(p, std=(1 / p.shape[-1]) ** 0.5, generator=generator)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)
    inputs, targets = torch.as_tensor((x - mean) / std), torch.as_tensor(y)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(inputs).squeeze(1), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        called = (net(torch.as_tensor((x_test - mean) / std)).squeeze(1) > 0).numpy()
    truth = y_test == 1
    commoner = float(y.mean() >= 0.5)
    return {"accuracy": float((called == truth).mean()), "returns_called": float(called[truth].mean()),
            "misses_called": float((~called[~truth]).mean()), "commoner_outcome": float((y_test == commoner).mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="episodes of Pong or Breakout")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="the held-out episodes (EpisodeDataset.split, seed 0: those a training run holds out)")
    parser.add_argument("--frames", type=int, default=4, help="frames of positions before the ball reaches the paddle")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = EpisodeDataset(args.data)
    train_ids, test_ids = dataset.split(args.test_fraction, seed=0)
    n_actions = int(max(dataset.episode(int(e)).actions.max(initial=0) for e in range(len(dataset)))) + 1
    train = bounce_table(dataset, train_ids, args.frames, n_actions)
    test = bounce_table(dataset, test_ids, args.frames, n_actions)
    figures = held_out_accuracy(train, test, seed=args.seed)
    print(f"{dataset.game}: {len(train[1])} moments at the paddle to learn from ({train[1].mean():.2f} returns), "
          f"{len(test[1])} held out ({test[1].mean():.2f} returns)")
    print(f"held out: right {figures['accuracy']:.3f} (the commoner outcome alone {figures['commoner_outcome']:.3f}), "
          f"returns called returns {figures['returns_called']:.3f}, misses called misses "
          f"{figures['misses_called']:.3f}")


if __name__ == "__main__":
    main()
