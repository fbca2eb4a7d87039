"""benchmarks/life_loss_timing.py: the lives Breakout takes without the episode's last frame showing it, the steps
since the ball left, what stand-in termination models that read the digit, or the game's own labels, make of them,
and ALE's count of emulator frames from the ball's last sight to the life lost."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import load_benchmark

from gym_diamond import to_uint8_frames
from gym_diamond.atari import make_atari_env
from training.data.dataset import Episode, EpisodeDataset

timing = load_benchmark("life_loss_timing")


@pytest.fixture(scope="module")
def lives(tmp_path_factory) -> tuple[EpisodeDataset, list[np.ndarray]]:
    """Two games of real Breakout played by a random policy that fires often, an episode a life (DIAMOND's
    protocol), and the first frame of each life."""
    env = make_atari_env("Breakout", done_on_life_loss=True, seed=3)
    rng = np.random.default_rng(3)
    dataset = EpisodeDataset(tmp_path_factory.mktemp("lives"), game="Breakout")
    firsts = []
    for game in range(2):
        obs, info = env.reset(seed=3 + game)
        while True:
            frames, actions, rewards = [obs], [], []
            firsts.append(obs)
            while True:
                action = 1 if rng.random() < 0.3 else int(rng.integers(0, 4))
                obs, reward, terminated, truncated, info = env.step(action)
                frames.append(obs), actions.append(action), rewards.append(reward)
                if terminated or truncated:
                    break
            end = np.zeros(len(actions), bool)
            end[-1] = True
            dataset.append(Episode(np.stack(frames), np.array(actions, np.int64), np.array(rewards, np.float32),
                                   end, np.zeros_like(end), end.copy()))
            if info["lives"] == 0:
                break
            obs, info = env.reset()  # the next life goes on from the frame the game is at
    env.close()
    return dataset, firsts


def test_a_life_lost_shows_on_the_last_frame_or_only_on_the_next_lifes_first(lives):
    dataset, firsts = lives
    digit = timing.LIVES_DIGIT
    kinds = {"shown": 0, "unshown": 0}
    for e in range(len(dataset)):
        lost = timing.lives_lost(dataset, e)
        frames = dataset.episode(e).frames
        (t,) = np.flatnonzero(dataset.episode(e).terminated)
        if e + 1 < len(dataset) and (e + 1) % 5:  # a life follows within the game: its first frame shows the count
            after = firsts[e + 1][digit]
            assert (frames[t + 1][digit] != frames[t][digit]).any() == (t in lost["shown"])
            assert (after != frames[t][digit]).any()  # ... one fewer than the last life's frames, by then
            if t in lost["unshown"]:
                assert (frames[t + 1][digit] == frames[t][digit]).all()
        kinds["shown"] += len(lost["shown"])
        kinds["unshown"] += len(lost["unshown"])
        gone = timing.steps_since_ball(dataset, e, int(t))
        assert gone is None or gone >= 3  # the ball left steps before the life is counted
    assert len(dataset) == 10 and kinds["shown"] >= 1 and kinds["unshown"] >= 1
    report = timing.timing_report(dataset, list(range(len(dataset))))
    assert report["lives_lost"] == 10 and report["unshown"] == kinds["unshown"]
    assert sum(report["steps_since_the_ball"].values()) == 10 and "read_shown" not in report


class StandInEnds(torch.nn.Module):
    """Ends on a step where ``ends(frame, next frame)`` (uint8) holds, and never pays: the reward/termination model's
    call signature."""

    def __init__(self, ends) -> None:
        super().__init__()
        self.ends = ends

    def forward(self, frames, actions, next_frames):
        now, then = (to_uint8_frames(f.flatten(0, 1)).numpy() for f in (frames, next_frames))
        end = torch.as_tensor([int(self.ends(a, b)) for a, b in zip(now, then, strict=True)])
        shape = frames.shape[:2]
        no_reward = torch.ones(shape, dtype=torch.long)  # class 1: reward 0
        return SimpleNamespace(end_logits=torch.nn.functional.one_hot(end, 2).float().view(*shape, 2),
                               reward_logits=torch.nn.functional.one_hot(no_reward, 3).float())


def _model(ends) -> SimpleNamespace:
    return SimpleNamespace(rew_end=StandInEnds(ends), device=torch.device("cpu"))


def test_a_model_that_reads_the_digit_misses_the_unshown_lives_and_one_that_reads_the_game_does_not(lives):
    dataset, _ = lives
    digit = timing.LIVES_DIGIT
    episodes = list(range(len(dataset)))
    digit_reader = _model(lambda frame, after: (frame[digit] != after[digit]).any())
    report = timing.timing_report(dataset, episodes, digit_reader)
    assert report["read_shown"] == 1.0 and report["read_unshown"] == 0.0
    ended = {(e.frames[t].tobytes(), e.frames[t + 1].tobytes())
             for e in map(dataset.episode, episodes) for t in np.flatnonzero(e.terminated)}
    game_reader = _model(lambda frame, after: (frame.tobytes(), after.tobytes()) in ended)
    report = timing.timing_report(dataset, episodes, game_reader)
    assert report["read_shown"] == report["read_unshown"] == 1.0


def test_ale_counts_a_life_30_emulator_frames_after_the_ball_leaves():
    delays = timing.emulator_delays(4000, seed=0)
    assert sum(delays.values()) >= 10
    assert max(delays, key=delays.get) == 30


def test_the_command_counts_the_held_out_lives(lives, capsys):
    dataset, _ = lives
    timing.main(["--data", str(dataset.root), "--test-fraction", "0.5"])
    line = json.loads(capsys.readouterr().out)
    held = dataset.split(0.5, seed=0)[1]
    assert line["episodes"] == len(held) == line["lives_lost"]
