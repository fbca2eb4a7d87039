import numpy as np
import pytest

from training.agents import RandomAgent
from training.evaluate import RANDOM_HUMAN_SCORES, evaluate, human_normalized_score


def test_hns_by_hand():
    assert len(RANDOM_HUMAN_SCORES) == 26
    assert human_normalized_score("Pong", 20.4) == pytest.approx((20.4 + 20.7) / (14.6 + 20.7))
    assert human_normalized_score("ALE/Breakout-v5", 132.5) == pytest.approx((132.5 - 1.7) / 28.8)
    assert human_normalized_score("Breakout", 1.7) == 0.0
    with pytest.raises(ValueError, match="26 Atari 100k games"):
        human_normalized_score("Tetris", 10)


class CountingAgent(RandomAgent):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resets = []

    def reset(self, mask):
        self.resets.append(np.asarray(mask).copy())


def test_evaluate_plays_full_episodes_to_game_over():
    agent = CountingAgent(4, seed=0)
    result = evaluate(agent, "Breakout", episodes=3, num_envs=2, seed=0)
    assert len(result.returns) == 3 and len(result.lengths) == 3
    assert result.mean == pytest.approx(np.mean(result.returns))
    assert result.hns == pytest.approx(human_normalized_score("Breakout", result.mean))
    # a Breakout game has 5 lives: full episodes are far longer than one life (~30-50 steps at random)
    assert min(result.lengths) > 60
    # one reset for the first two episodes, then one for the third when an environment frees up
    assert len(agent.resets) == 2 and agent.resets[0].all() and agent.resets[1].sum() == 1


def test_evaluate_rejects_zero_episodes():
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate(RandomAgent(4), "Breakout", episodes=0)
