"""training.data.games: one entry per game that gym-diamond knows; every other game and environment gets plain rules."""

import numpy as np
import pytest

from training.data.games import games_with, rules, scripted_players


def test_each_known_game_locates_its_own_objects_in_a_real_frame():
    from gym_diamond.atari import make_atari_env

    for game in games_with("locate"):
        frames = np.stack([make_atari_env(game).reset(seed=0)[0]])
        located = rules(game).locate(frames)
        assert set(located) == set(rules(game).objects), game
        for visible, xy in located.values():
            assert visible.shape == (1,) and xy.shape == (1, 2)


def test_rules_follow_the_game_however_spelt_and_default_to_plain_ones():
    assert rules("pong") == rules("Pong") and rules("ALE/Pong-v5").name == "Pong"
    assert rules("Pong").points([-21.0, -5.0, 3.0]) == [0.0, 16.0, 21.0]  # points won per game
    assert rules("Breakout").transfer_margin == 3.0 and rules("Breakout").score({"bricks": 12.0}) == 12.0
    plain = rules("MiniGrid-Empty-6x6-v0")
    assert (plain.objects, plain.policies, plain.points([1.0, 0.5]), plain.measure) == ((), ("random",), [1.0, 0.5],
                                                                                        "mean return")
    assert plain.score({"positive_rewards": 3.0, "negative_rewards": 1.0}) == 2.0
    assert scripted_players() == {"chaser": ("Boxing",), "follower": ("Breakout", "Pong")}


def test_a_scripted_player_plays_its_own_games_only():
    assert rules("Boxing").make_policy("chaser-eps0.5", 18).epsilon == 0.5
    with pytest.raises(ValueError, match="plays Boxing only, not Pong"):
        rules("Pong").make_policy("chaser", 6)
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        rules("Pong").make_policy("greedy", 6)
