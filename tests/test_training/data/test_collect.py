"""training.data.collect: real episodes from a vector env into the dataset, episodes kept across calls."""

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from gym_diamond.atari import AtariEnv
from training.data.collect import Collector, main
from training.data.dataset import EpisodeDataset
from training.data.policies import RandomAgent
from training.data.vector_atari import make_vector_atari


def test_random_policy():
    obs = np.zeros((5, 64, 64, 3), np.uint8)
    a = RandomAgent(4, seed=0).act(obs)
    assert a.shape == (5,) and a.dtype == np.int64 and ((a >= 0) & (a < 4)).all()
    np.testing.assert_array_equal(a, RandomAgent(4, seed=0).act(obs))


def test_collect_across_calls(tmp_path):
    env = make_vector_atari("Breakout", 2, seed=0, done_on_life_loss=True)
    ds = EpisodeDataset(tmp_path, game="Breakout")
    collector = Collector(env, ds, RandomAgent(4, seed=0))
    first = collector.collect(300)
    second = collector.collect(201, progress=True)
    assert (first.steps, second.steps, collector.total_steps) == (300, 202, 502)
    assert first.episodes_finished + second.episodes_finished == len(ds) >= 4
    # every transition is either in the dataset or in an episode still running
    assert ds.num_steps + collector.buffered_steps == 502
    assert 0 < collector.buffered_steps
    returns = first.returns + second.returns
    np.testing.assert_allclose(ds.returns, returns)
    assert first.mean_return == pytest.approx(np.mean(first.returns))
    for i in range(len(ds)):
        ep = ds.episode(i)
        assert ep.frames.shape[1:] == (64, 64, 3)
        assert ep.terminated[-1] and ep.life_loss[-1]  # Breakout episodes end at a life loss here
        assert not ep.life_loss[:-1].any()
    env.close()


def test_episodes_continue_after_life_loss(tmp_path):
    """With one env, the next episode starts from the frame the life-loss episode ended on."""
    env = make_vector_atari("Breakout", 1, seed=1, done_on_life_loss=True)
    ds = EpisodeDataset(tmp_path)
    stats = Collector(env, ds, RandomAgent(4, seed=1)).collect(250)
    assert stats.episodes_finished >= 3
    for i in range(min(len(ds) - 1, 4)):  # the first 4 of Breakout's 5 lives do not end the game
        np.testing.assert_array_equal(ds.episode(i + 1).frames[0], ds.episode(i).frames[-1])


def test_agent_interface(tmp_path):
    class Agent:
        def __init__(self):
            self.resets = []

        def reset(self, mask):
            self.resets.append(np.array(mask))

        def act(self, obs):
            assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
            return np.zeros(len(obs), np.int32)

    agent = Agent()
    env = make_vector_atari("Breakout", 2, seed=0)
    collector = Collector(env, EpisodeDataset(tmp_path), agent)
    collector.collect(10)
    np.testing.assert_array_equal(agent.resets[0], [True, True])
    collector.policy = lambda obs: np.ones(len(obs), np.int64)  # policies can be swapped between calls
    collector.collect(4)
    with pytest.raises(ValueError, match="shape"):
        Collector(env, EpisodeDataset(tmp_path / "x"), lambda obs: np.zeros(3)).collect(2)


def test_needs_same_step_autoreset(tmp_path):
    env = SyncVectorEnv([lambda: AtariEnv("Pong")])  # gymnasium's default: NEXT_STEP
    with pytest.raises(ValueError, match="SAME_STEP"):
        Collector(env, EpisodeDataset(tmp_path), RandomAgent(6))
    env.close()


def test_command_line(tmp_path, capsys):
    main(["--game", "breakout", "--out", str(tmp_path), "--steps", "120"])
    ds = EpisodeDataset(tmp_path, game="Breakout")
    assert ds.game == "Breakout" and len(ds) >= 1
    assert "120 steps" in capsys.readouterr().out


def test_gymnasium_vector_env_of_atari_envs(tmp_path):
    """The same data from gymnasium's SyncVectorEnv over AtariEnv (life loss kept from final_info)."""
    env = SyncVectorEnv([lambda: AtariEnv("Breakout", done_on_life_loss=True, seed=2)],
                        autoreset_mode=AutoresetMode.SAME_STEP)
    ds = EpisodeDataset(tmp_path)
    Collector(env, ds, RandomAgent(4, seed=2)).collect(150)
    assert len(ds) >= 2
    for i in range(len(ds) - 1):
        assert ds.episode(i).terminated[-1] and ds.episode(i).life_loss[-1]
        np.testing.assert_array_equal(ds.episode(i + 1).frames[0], ds.episode(i).frames[-1])
    env.close()
