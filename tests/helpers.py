"""Builders the tests share: tiny checkpoints made on the spot, a command run in this process."""

import importlib
import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import torch

from gym_diamond import SamplerConfig, StartBank, WorldModel, save_checkpoint, tiny_world_model_config
from gym_diamond.atari import make_atari_env
from gym_diamond.envs.core import DreamCore
from gym_diamond.nn.rew_end import RewEndOutput
from training.data.dataset import Episode, EpisodeDataset
from training.data.games import rules

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"  # fixtures, with the scripts that made them
ROOT = TESTS.parent  # the repository: examples/, benchmarks/
KILL_DRIVER = TESTS / "kill_driver.py"

PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command_here(module: str, args: list[str], threads: int = 1) -> None:
    """``python -m module args`` in this process with ``threads`` torch threads, as a subprocess with
    ``OMP_NUM_THREADS=threads`` computes, without the seconds a new interpreter takes to import torch. For the run
    after a killed subprocess: the kill needs a process of its own, the rerun does not."""
    command = importlib.import_module(module)
    if not hasattr(command, "main"):  # a package run as python -m: its __main__ module
        command = importlib.import_module(f"{module}.__main__")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        command.main(args)
    finally:
        torch.set_num_threads(before)


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


def real_breakout_data(root: Path, lives: int = 3, seed: int = 3) -> EpisodeDataset:
    """A dataset at ``root`` of real Breakout played by the ball follower (epsilon 0.1), one episode per life as the
    collector records it (the last transition of each ends it)."""
    env = make_atari_env("Breakout", seed=seed, done_on_life_loss=True)
    follower = rules("Breakout").make_policy("follower-eps0.1", env.action_space.n, seed=seed)
    dataset = EpisodeDataset(root, game="Breakout")
    obs, _ = env.reset(seed=seed)
    frames, actions = [obs], []
    while len(dataset) < lives:
        action = int(follower.act(obs[None])[0])
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs), actions.append(action)
        if terminated or truncated:
            T = len(actions)
            ends = np.zeros(T, bool)
            ends[-1] = True
            dataset.append(Episode(np.stack(frames), np.array(actions, np.int64), np.zeros(T, np.float32), ends,
                                   np.zeros(T, bool), ends.copy()))
            obs, _ = env.reset()
            frames, actions = [obs], []
    return dataset


@cache
def breakout_play(steps: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T+1, 64, 64, 3) of real Breakout played by the ball follower (epsilon 0.1: a dozen bricks in 600
    steps, no life lost), and the reward of the step into each (0 for the first)."""
    env = make_atari_env("Breakout", seed=seed)
    obs, _ = env.reset(seed=seed)
    player = rules("Breakout").make_policy("follower-eps0.1", int(env.action_space.n), seed=seed)
    frames, rewards = [obs], [0.0]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(player.act(obs[None])[0]))
        assert not (terminated or truncated)
        frames.append(obs), rewards.append(reward)
    env.close()
    return np.stack(frames), np.array(rewards)


class PixelCodeOracle(torch.nn.Module):
    """Reads the reward sign and the termination that the test wrote into pixel (0, 0) of the next frame."""

    def __init__(self, blind: bool = False) -> None:
        super().__init__()
        self.blind = blind

    def forward(self, frames, actions, next_frames, state=None):
        code = ((next_frames[:, :, 0, 0, 0] + 1) * 127.5).round().long().clamp(0, 255)  # written as 10 * class
        reward_class, end = (code // 10) % 3, (code // 30).clamp(max=1)
        if self.blind:
            reward_class, end = torch.ones_like(reward_class), torch.zeros_like(end)
        return RewEndOutput(torch.nn.functional.one_hot(reward_class, 3).float(),
                            torch.nn.functional.one_hot(end, 2).float(), None)


BANDIT_ACTIONS = ["NOOP", "PAY", "NOTHING"]


def make_bandit_checkpoint(path) -> None:
    """A tiny world model whose reward model pays +1 for action 1 only and never terminates.

    The denoiser is random (perturbed so frames vary); only ``rew_end`` is trained, on frames the dream
    itself produces, with labels reward = [action == 1], terminated = False. One denoising step keeps
    the dream fast on a CPU.
    """
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=3).replace(sampler=SamplerConfig(num_steps=1)))
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(0)
    bank = StartBank(rng.integers(0, 256, (5, 4, 64, 64, 3), dtype=np.uint8), rng.integers(0, 3, (5, 4)))
    core = DreamCore(model, bank, num_envs=8)
    core.reset(seed=0)
    frames = [core.frames[:, -1].clone()]
    for _ in range(16):
        core.step(torch.randint(0, 3, (8,)))
        frames.append(core.frames[:, -1].clone())
    frames = torch.stack(frames, 1)  # (8, 17, c, h, w) in [-1, 1]: what the dream shows
    rew_end = model.rew_end.train()
    opt = torch.optim.Adam(rew_end.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for it in range(80):
        rows, t0 = slice(4 * (it % 2), 4 * (it % 2) + 4), it % 9
        actions = torch.randint(0, 3, (4, 8), generator=g)
        never = torch.zeros(4, 8, dtype=torch.bool)
        loss_r, loss_e = rew_end.loss(frames[rows, t0:t0 + 8], actions, frames[rows, t0 + 1:t0 + 9],
                                      (actions == 1).float(), never, ~never)
        opt.zero_grad()
        (loss_r + loss_e).backward()
        opt.step()
    assert loss_r.item() < 0.2 and loss_e.item() < 0.05
    save_checkpoint(path, model.eval(), game="Bandit", action_meanings=BANDIT_ACTIONS, start_bank=bank)


def pong_frame(ball_x: float | None, ball_y: int = 30) -> np.ndarray:
    """A Pong frame in the game's colours (``training.data.objects`` reads it): the player's paddle at column 56,
    rows 38-42, and the ball one white pixel at (ball_x, ball_y), or none."""
    frame = np.empty((64, 64, 3), np.uint8)
    frame[:] = (144, 72, 17)  # the court
    frame[7:10] = frame[60:] = 236  # the bars, with their blended edges
    frame[10], frame[59] = (177, 131, 96), (225, 216, 209)
    frame[38:43, 56] = (92, 186, 92)
    if ball_x is not None and 0 <= ball_x < 64:
        frame[ball_y, int(round(ball_x))] = 236
    return frame


def first_denoiser_update(dataset: EpisodeDataset, monkeypatch, **config) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames a tiny denoiser's first update trains on (context and targets, as the loss reads them) and its
    weights after that update, with ``WorldModelTrainingConfig(warmup_steps=0, **config)``."""
    from training.world_model.trainer import WorldModelTrainer
    from training.world_model.training_config import WorldModelTrainingConfig

    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=6))
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(warmup_steps=0, **config))
    seen = {}
    loss = model.denoiser.autoregressive_loss

    def spy(frames, *args, **kwargs):
        seen["frames"] = frames.clone()
        return loss(frames, *args, **kwargs)

    monkeypatch.setattr(model.denoiser, "autoregressive_loss", spy)
    trainer.denoiser_step()
    return seen["frames"], torch.cat([p.detach().flatten() for p in model.denoiser.parameters()])


class CountingReader(torch.nn.Module):
    """A stand-in reward/termination model whose state counts the transitions it has read: it calls an ending once
    that count passes ``window`` (what a reader carried past its training length does) and never a reward."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def initial_state(self, n, device=None):
        return torch.zeros(1, n, 1), torch.zeros(1, n, 1)

    def forward(self, frames, actions, next_frames, state=None):
        n, t = actions.shape
        start = state[0] if state is not None else torch.zeros(1, n, 1)
        counts = start[0] + torch.arange(1, t + 1, dtype=torch.float32)  # (n, t): transitions read at each step
        end_logits = torch.stack([torch.zeros_like(counts), counts - self.window - 0.5], -1)
        reward_logits = torch.stack([torch.zeros_like(counts), torch.ones_like(counts), torch.zeros_like(counts)], -1)
        last = counts[:, -1:].T.unsqueeze(-1)
        return RewEndOutput(reward_logits, end_logits, (last, last.clone()))

    def burn_in(self, context, actions, state=None):
        return self(context[:, :-1], actions[:, :-1], context[:, 1:], state).state


def counting_model(context_length: int, window: int) -> SimpleNamespace:
    """A world model as the readers of whole episodes see it: a :class:`CountingReader` and a context length."""
    return SimpleNamespace(rew_end=CountingReader(window), device=torch.device("cpu"),
                           config=SimpleNamespace(denoiser=SimpleNamespace(context_length=context_length)))
