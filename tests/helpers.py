"""Builders the tests share: tiny checkpoints made on the spot."""

from pathlib import Path

import numpy as np
import torch

from gym_diamond import StartBank, WorldModel, tiny_world_model_config
from gym_diamond.atari import make_atari_env
from training.data.dataset import Episode, EpisodeDataset

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"  # fixtures, with the scripts that made them
ROOT = TESTS.parent  # the repository: examples/, benchmarks/
KILL_DRIVER = TESTS / "kill_driver.py"

PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def make_tiny_checkpoint(path, game: str = "Pong", seed: int = 0, provenance: dict | None = None):
    """A tiny untrained Pong world model (6 actions) with a 5-context start bank, saved at ``path``."""
    from gym_diamond import save_checkpoint

    torch.manual_seed(seed)
    model = WorldModel(tiny_world_model_config(num_actions=len(PONG_ACTIONS)))
    with torch.no_grad():  # untrained weights give constant frames; perturb them so dreams differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(seed)
    bank = StartBank(rng.integers(0, 256, (5, 4, 64, 64, 3), dtype=np.uint8), rng.integers(0, 6, (5, 4)))
    save_checkpoint(path, model, game=game, action_meanings=PONG_ACTIONS, start_bank=bank, provenance=provenance)
    return path


def fixed_event_dream(reward: int, terminates: bool, seed: int = 0) -> tuple[WorldModel, StartBank]:
    """A tiny Pong dream whose reward/termination head always says ``reward`` and ``terminates``."""
    torch.manual_seed(seed)
    model = WorldModel(tiny_world_model_config(num_actions=len(PONG_ACTIONS))).eval()
    hidden, out = model.rew_end.head[0], model.rew_end.head[2]
    with torch.no_grad():
        hidden.weight.zero_()
        hidden.bias.fill_(1.0)  # the head sees the same positive vector whatever the frames
        out.weight.fill_(-10.0)
        out.weight[reward + 1] = 10.0  # classes: reward -1, 0, +1
        out.weight[4 if terminates else 3] = 10.0  # not terminated, terminated
    rng = np.random.default_rng(seed)
    bank = StartBank(rng.integers(0, 256, (5, 4, 64, 64, 3), dtype=np.uint8), rng.integers(0, 6, (5, 4)))
    return model, bank


def real_pong_episode(steps: int, seed: int) -> Episode:
    """``steps`` random-action transitions of real Pong, cut short (neither terminated nor truncated)."""
    env = make_atari_env("Pong", seed=seed)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, actions, rewards, lives = [obs], [], [], []
    for _ in range(steps):
        a = int(rng.integers(env.action_space.n))
        obs, r, _, _, info = env.step(a)
        frames.append(obs), actions.append(a), rewards.append(r), lives.append(info["life_loss"])
    z = np.zeros(steps, dtype=bool)
    return Episode(np.stack(frames), np.array(actions, dtype=np.int64), np.array(rewards, dtype=np.float32),
                   z, z.copy(), np.array(lives, dtype=bool))


def real_pong_data(root: Path, episodes: int = 2, steps: int = 150) -> Path:
    """A dataset at ``root`` of ``episodes`` real Pong episodes of ``steps`` random actions (seeds 0, 1, ...)."""
    dataset = EpisodeDataset(root, game="Pong")
    for seed in range(episodes):
        dataset.append(real_pong_episode(steps, seed))
    return root
