import numpy as np
import pytest

from training.agents.evaluate import RANDOM_HUMAN_SCORES, bootstrap_interval, evaluate, human_normalized_score
from training.data.policies import RandomAgent


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
    assert result.interval == bootstrap_interval(result.returns, seed=0)
    # Breakout's bricks are worth 1 to 7 points: the signs count the rewarded steps, never more than the points
    assert all(0 <= signs <= score for signs, score in zip(result.reward_signs, result.returns, strict=True))
    assert result.sign_rate == pytest.approx(1000 * sum(result.reward_signs) / sum(result.lengths))


def test_reward_signs_of_pong_are_its_score():
    result = evaluate(RandomAgent(6, seed=0), "Pong", episodes=1, seed=0, max_steps=400)
    assert result.reward_signs == [int(result.returns[0])]  # every Pong reward is one point, +1 or -1
    assert result.returns[0] < 0  # random play loses points within 400 steps


def test_bootstrap_interval():
    assert bootstrap_interval([3.0] * 5) == (3.0, 3.0)
    rng = np.random.default_rng(1)
    sample = rng.normal(10.0, 2.0, 30)
    low, high = bootstrap_interval(sample)
    standard_error = sample.std(ddof=1) / np.sqrt(len(sample))
    assert low < sample.mean() < high
    # close to the normal interval for a normal sample: mean +- 1.96 standard errors
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.15)
    assert bootstrap_interval(sample, seed=3) == bootstrap_interval(sample, seed=3)
    narrower = bootstrap_interval(sample, confidence=0.5)
    assert low < narrower[0] < narrower[1] < high
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(sample, confidence=1.0)


def test_evaluate_rejects_zero_episodes():
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate(RandomAgent(4), "Breakout", episodes=0)


def test_the_command_tabulates_agents_against_random(tmp_path, capsys):
    from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
    from training.agents.checkpoints import save_actor_critic
    from training.agents.evaluate import main

    path = save_actor_critic(tmp_path / "ac.safetensors", ActorCritic(ActorCriticConfig(6, (4, 4, 4, 4), 8)), "Pong")
    main(["--game", "Pong", "--agent", "random", "--actor-critic", str(path), "--episodes", "3", "--max-steps", "40",
          "--out", str(tmp_path / "scores.json")])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith('{"agent": "random", "game": "Pong", "returns": [') and out[1].endswith("(random)")
    lines = out[out.index(next(line for line in out if line.startswith("| agent"))):]
    assert lines[0].startswith("| agent | episodes | mean score | 95% interval | HNS | vs random |")
    assert lines[2].startswith("| random | 3 |") and lines[2].endswith("| - |")
    assert lines[3].startswith(f"| actor-critic:{path} | 3 |")
    assert lines[3].split("|")[-2].strip() in ("above", "below", "overlaps")
    import json

    saved = json.loads((tmp_path / "scores.json").read_text())
    assert set(saved) == {"random", f"actor-critic:{path}"} and len(saved["random"]["returns"]) == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["--game", "Pong", "--agent", "ppo:nowhere"])
    assert exit_info.value.code == 2 and "unknown agent 'ppo:nowhere'" in capsys.readouterr().err


def test_intervals_that_do_not_overlap_say_above_or_below():
    from training.agents.evaluate import Evaluation, compare_to

    def result(low, high):
        return Evaluation("Pong", [0.0], [1], 0.0, 0.0, None, (low, high), [0])

    assert compare_to(result(2, 3), result(0, 1)) == "above"
    assert compare_to(result(-3, -2), result(0, 1)) == "below"
    assert compare_to(result(0.5, 3), result(0, 1)) == "overlaps"
