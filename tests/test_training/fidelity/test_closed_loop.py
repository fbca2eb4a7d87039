"""Closed-loop event counts: the judge on made-up rates, the counting on scripted, dreamed and real games, and a
dream that never scores failing the report against the real game."""

import dataclasses

import numpy as np
import pytest
from helpers import PONG_ACTIONS, fixed_event_dream, pong_frame

from gym_diamond import Checkpoint, save_checkpoint
from training.agents.rollouts import (
    DEFAULT_POLICIES,
    EventCounts,
    count_events,
    dream_ends_at_life_loss,
    make_dream_env,
    make_policy,
    make_real_env,
)
from training.data.scripted import BallFollower
from training.fidelity.closed_loop import RATE_FLOOR, closed_loop_report, judge_closed_loop, policy_seed

# Real Pong rates per 1,000 steps, like those measured (4,000 steps of 8 games each)
REAL_PONG = {"random": {"points_won": 1.0, "points_lost": 19.0},
             "follower": {"points_won": 1.5, "points_lost": 8.0},
             "follower-eps0.25": {"points_won": 1.5, "points_lost": 7.5},
             "follower-eps0.5": {"points_won": 2.25, "points_lost": 11.0}}


def _scaled(rates, factor):
    return {p: {e: v * factor for e, v in r.items()} for p, r in rates.items()}


# ------------------------------------------------------------------------------------------------- the judge
def test_judge_passes_equal_rates():
    verdict = judge_closed_loop(REAL_PONG, REAL_PONG, "Pong")
    assert verdict.passed and verdict.failures == []
    assert verdict.to_dict() == {"passed": True, "failures": []}


def test_judge_fails_a_dream_that_never_scores():
    never = _scaled(REAL_PONG, 0.0)
    verdict = judge_closed_loop(never, REAL_PONG, "Pong")
    assert not verdict.passed
    rates = {(f["policy"], f["event"]) for f in verdict.failures if f["check"] == "rate"}
    assert rates == {(p, e) for p in REAL_PONG for e in ("points_won", "points_lost")}
    # the real game tells random (-18) from every follower, and follower-eps0.25 (-6) from follower-eps0.5
    # (-8.75), by more than 30%; the dream ties them all at 0
    rankings = {tuple(f["policies"]) for f in verdict.failures if f["check"] == "ranking"}
    assert rankings == {*((p, "random") for p in REAL_PONG if p != "random"), ("follower-eps0.25", "follower-eps0.5")}
    assert all(f["reason"] for f in verdict.failures)


def test_judge_fails_a_rate_50_percent_off():
    dream = {p: dict(r) for p, r in REAL_PONG.items()}
    dream["follower"]["points_lost"] = 8.0 * 1.5
    verdict = judge_closed_loop(dream, REAL_PONG, "Pong")
    assert not verdict.passed
    assert [(f["check"], f["policy"], f["event"]) for f in verdict.failures] == [("rate", "follower", "points_lost")]
    assert verdict.failures[0]["dream"] == 12.0 and verdict.failures[0]["real"] == 8.0
    dream["follower"]["points_lost"] = 8.0 * 0.5  # too few as well
    assert not judge_closed_loop(dream, REAL_PONG, "Pong").passed


def test_judge_fails_a_swapped_ranking():
    # every rate within 30%, but the dream scores a (0 in the real game) above b (+4)
    real = {"a": {"points_won": 10.0, "points_lost": 10.0}, "b": {"points_won": 12.0, "points_lost": 8.0}}
    dream = {"a": {"points_won": 12.0, "points_lost": 8.0}, "b": {"points_won": 10.0, "points_lost": 10.0}}
    verdict = judge_closed_loop(dream, real, "Pong")
    assert not verdict.passed
    assert [f["check"] for f in verdict.failures] == ["ranking"]
    assert verdict.failures[0]["policies"] == ["b", "a"]
    assert verdict.failures[0]["real_score"] == [4.0, 0.0] and verdict.failures[0]["dream_score"] == [0.0, 4.0]


def test_judge_passes_within_30_percent():
    assert judge_closed_loop(_scaled(REAL_PONG, 1.25), REAL_PONG, "Pong").passed
    assert judge_closed_loop(_scaled(REAL_PONG, 0.75), REAL_PONG, "Pong").passed
    assert not judge_closed_loop(_scaled(REAL_PONG, 1.35), REAL_PONG, "Pong").passed
    # a real rate of 0 allows 0.3 * RATE_FLOOR events per 1,000 steps, not exactly none
    real = {"random": {"points_won": 0.0, "points_lost": 20.0}}
    assert judge_closed_loop({"random": {"points_won": 0.25 * RATE_FLOOR, "points_lost": 20.0}}, real, "Pong").passed
    assert not judge_closed_loop({"random": {"points_won": 0.5 * RATE_FLOOR, "points_lost": 20.0}}, real,
                                 "Pong").passed


def test_judge_allows_what_chance_allows_at_a_small_budget_but_never_a_dream_that_never_scores():
    real = {"follower": {"points_won": 1.25, "points_lost": 8.0}}
    seed_apart = {"follower": {"points_won": 1.25, "points_lost": 4.0}}  # the same real player, another seed
    assert not judge_closed_loop(seed_apart, real, "Pong").passed  # 30% alone: noise fails a faithful dream
    assert judge_closed_loop(seed_apart, real, "Pong", steps=4_000).passed  # within 3 standard errors at 4,000
    assert not judge_closed_loop(seed_apart, real, "Pong", steps=400_000).passed  # not at 100x the budget
    never = {"follower": {"points_won": 0.0, "points_lost": 0.0}}
    verdict = judge_closed_loop(never, real, "Pong", steps=4_000)  # 5 points won in 4,000 steps: within chance of 0
    assert not verdict.passed and {f["event"] for f in verdict.failures} == {"points_lost"}
    verdict = judge_closed_loop(never, real, "Pong", steps=20_000)
    assert not verdict.passed and {f["event"] for f in verdict.failures} == {"points_won", "points_lost"}


def test_judge_breakout_judges_bricks_and_lives_and_ranks_by_bricks():
    real = {"random": {"bricks": 6.0, "lives_lost": 26.0, "terminations": 26.0},
            "follower": {"bricks": 22.0, "lives_lost": 7.0, "terminations": 7.0}}
    dream = {"random": {"bricks": 6.0, "lives_lost": 26.0, "terminations": 500.0},  # terminations: not judged
             "follower": {"bricks": 22.0, "lives_lost": 12.0, "terminations": 7.0}}
    verdict = judge_closed_loop(dream, real, "Breakout")
    assert [(f["policy"], f["event"]) for f in verdict.failures] == [("follower", "lives_lost")]
    swapped = {"random": dict(real["follower"]), "follower": dict(real["random"])}
    kinds = {f["check"] for f in judge_closed_loop(swapped, real, "Breakout").failures}
    assert kinds == {"rate", "ranking"}
    missing = judge_closed_loop({"random": real["random"]}, real, "Breakout")
    assert [(f["check"], f["policy"]) for f in missing.failures] == [("missing", "follower")]


# ---------------------------------------------------------------------------------------------- counting
class _ScriptedVectorEnv:
    """Two environments whose rewards, ends and life losses follow a script."""

    def __init__(self, script, life_loss: bool):
        self.num_envs, self.script, self.life_loss, self.t = 2, script, life_loss, 0

    def reset(self, *, seed=None):
        self.t = 0
        return np.zeros((2, 64, 64, 3), np.uint8), {}

    def step(self, actions):
        assert actions.shape == (2,) and actions.dtype == np.int64
        rewards, terminated, truncated, life_loss = self.script[self.t % len(self.script)]
        self.t += 1
        infos = {"life_loss": np.array(life_loss)} if self.life_loss else {}
        return (np.zeros((2, 64, 64, 3), np.uint8), np.array(rewards, np.float32), np.array(terminated),
                np.array(truncated), infos)


class _RecordingPolicy:
    def __init__(self):
        self.resets = []

    def reset(self, mask):
        self.resets.append(np.asarray(mask).tolist())

    def act(self, obs):
        return np.zeros(len(obs), np.int64)


SCRIPT = [([1.0, 0.0], [False, False], [False, False], [False, False]),
          ([-1.0, 4.0], [False, True], [False, False], [False, True]),
          ([0.0, -2.0], [True, False], [False, True], [True, False])]


def test_count_events_counts_what_the_env_gives():
    policy = _RecordingPolicy()
    counts = count_events(_ScriptedVectorEnv(SCRIPT, life_loss=True), policy, 11, "Breakout")
    # ceil(11 / 2) = 6 vector steps: the script twice
    assert counts == EventCounts("Breakout", 12, positive_rewards=4, negative_rewards=4, lives_lost=4,
                                 terminations=4, episodes=6, frames_with_ball=0,
                                 frames_with_extra_balls=0, court_kept=0.0)  # black frames: no ball, no walls
    assert counts.events() == {"bricks": 4, "lives_lost": 4}
    assert counts.per_1000() == {"bricks": 4000 / 12, "lives_lost": 4000 / 12, "terminations": 4000 / 12,
                                 "episodes": 6000 / 12}
    assert policy.resets[0] == [True, True] and policy.resets[1:3] == [[False, True], [True, True]]
    pong = count_events(_ScriptedVectorEnv(SCRIPT, life_loss=True), _RecordingPolicy(), 12, "Pong")
    assert pong.events() == {"points_won": 4, "points_lost": 4}
    # an env that reports no life losses (the dream): its terminations are lives lost only when told so
    dream = _ScriptedVectorEnv(SCRIPT, life_loss=False)
    assert count_events(dream, _RecordingPolicy(), 12, "Breakout").lives_lost == 0
    assert count_events(dream, _RecordingPolicy(), 12, "Breakout", terminations_are_life_losses=True).lives_lost == 4
    with pytest.raises(ValueError, match="steps"):
        count_events(dream, _RecordingPolicy(), 0, "Breakout")
    maze = count_events(dream, _RecordingPolicy(), 12, "MiniGrid-Empty-6x6-v0")  # any environment's dream
    assert maze.game == "MiniGrid-Empty-6x6-v0" and maze.positive_rewards == 4
    assert maze.frames_with_ball is None and "ball_shown" not in maze.to_dict()  # no ball to look for
    assert maze.frames_with_extra_balls is None and "extra_balls_share" not in maze.to_dict()
    assert maze.court_kept is None and "court_kept_share" not in maze.to_dict()
    assert count_events(dream, _RecordingPolicy(), 12, "ALE/Pong-v5").game == "Pong"


class _PongScriptEnv:
    """One Pong environment whose frames, rewards and ends follow a script of (ball x after the step, reward,
    terminated); it starts with the ball at ``start_x``."""

    num_envs = 1

    def __init__(self, script, start_x):
        self.script, self.start_x, self.t = script, start_x, 0

    def reset(self, *, seed=None):
        self.t = 0
        return pong_frame(self.start_x)[None], {}

    def step(self, actions):
        ball_x, reward, terminated = self.script[self.t]
        self.t += 1
        return (pong_frame(ball_x)[None], np.array([reward], np.float32), np.array([terminated]),
                np.array([False]), {})


def test_count_events_tells_points_the_ball_scored_from_points_paid_elsewhere():
    script = [(40, 0, False), (50, 0, False), (60, 0, False), (None, -1, False),  # crossed the player's line: scored
              (None, 0, False), (None, 0, False), (30, -1, False),  # 4 frames after the ball crossed: paid elsewhere
              (20, 0, False), (3, 0, False), (None, 1, False),  # crossed the opponent's line: won
              (30, 0, False), (40, 0, False), (50, 0, False), (60, 1, False),  # won, the ball nowhere near its line
              (60, 0, False), (30, 0, True), (30, -1, False)]  # the ball past the line, then an end: the next episode's
    counts = count_events(_PongScriptEnv(script, start_x=30), _RecordingPolicy(), len(script), "Pong")
    assert (counts.positive_rewards, counts.negative_rewards) == (2, 3)
    assert counts.rewards_at_goal == 2
    assert counts.to_dict()["rewards_at_goal_share"] == 0.4
    assert count_events(_PongScriptEnv(script, start_x=30), _RecordingPolicy(), len(script),
                        "Breakout").rewards_at_goal is None  # a game without goal lines


class _TwoBallEnv(_PongScriptEnv):
    """The scripted Pong env, with a second ball painted at (20, 45) after every other step (a drifting dream's)."""

    def step(self, actions):
        obs, *rest = super().step(actions)
        if self.t % 2:
            obs[0, 45, 20] = 236
        return (obs, *rest)


def test_count_events_counts_the_frames_with_extra_balls():
    script = [(40, 0, False), (50, 0, False), (None, 0, False), (60, 0, False)]
    counts = count_events(_TwoBallEnv(script, start_x=30), _RecordingPolicy(), 4, "Pong")
    assert counts.frames_with_extra_balls == 1  # step 1 shows two balls; step 3, one (its own ball gone)
    assert counts.frames_with_ball == 4 and counts.to_dict()["extra_balls_share"] == 0.25


class _RecordingEnv:
    """Passes a vector env through, keeping what it returned."""

    def __init__(self, env):
        self.env, self.num_envs = env, env.num_envs
        self.rewards, self.life_loss, self.terminated = [], [], []

    def reset(self, *, seed=None):
        return self.env.reset(seed=seed)

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self.rewards.append(np.array(rewards))
        self.life_loss.append(np.array(infos["life_loss"]))
        self.terminated.append(np.array(terminated))
        return obs, rewards, terminated, truncated, infos


def test_count_events_in_real_pong_matches_the_rewards():
    env = _RecordingEnv(make_real_env("Pong", 2, seed=0))
    counts = count_events(env, make_policy("random", "Pong", 6, seed=0), 600, "Pong", seed=0)
    env.env.close()
    rewards = np.stack(env.rewards)
    assert rewards.shape == (300, 2) and counts.steps == 600
    assert counts.negative_rewards == int((rewards < 0).sum()) > 0  # random play loses points
    assert counts.positive_rewards == int((rewards > 0).sum())
    assert counts.lives_lost == 0  # Pong counts no lives
    assert counts.per_1000()["points_lost"] == 1000 * counts.negative_rewards / 600
    assert 0.5 < counts.to_dict()["ball_shown"] < 1  # in play most of the time, away after each point
    # the game pays a point only when the ball has just crossed a goal line
    assert counts.rewards_at_goal == counts.positive_rewards + counts.negative_rewards
    assert counts.to_dict()["rewards_at_goal_share"] == 1.0
    assert counts.frames_with_extra_balls == 0 and counts.to_dict()["extra_balls_share"] == 0.0  # one ball at most
    assert counts.to_dict()["court_kept_share"] == 1.0  # the walls in every frame
    assert counts.rewards_repeated == 0 and counts.to_dict()["repeated_rewards_share"] == 0.0  # a point paid once


def test_count_events_in_real_breakout_counts_life_losses():
    env = _RecordingEnv(make_real_env("Breakout", 2, seed=0))
    counts = count_events(env, make_policy("random", "Breakout", 4, seed=0), 400, "Breakout", seed=0)
    env.env.close()
    assert counts.lives_lost == int(np.stack(env.life_loss).sum()) > 0
    assert counts.terminations == counts.lives_lost  # episodes end at each life loss, as the training data's
    assert counts.positive_rewards == int((np.stack(env.rewards) > 0).sum())


def test_policies_by_name():
    assert type(make_policy("random", "Pong", 6)).__name__ == "RandomAgent"
    follower = make_policy("follower", "Pong", 6)
    assert isinstance(follower, BallFollower) and follower.epsilon == 0.0
    assert make_policy("follower-eps0.25", "Breakout", 4).epsilon == 0.25
    assert len(DEFAULT_POLICIES) >= 4
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", "Pong", 6)
    with pytest.raises(ValueError, match="plays Breakout, Pong only"):
        make_policy("follower", "Seaquest", 18)


def test_dream_terminations_follow_how_the_data_ended_episodes():
    assert dream_ends_at_life_loss({})  # DIAMOND's protocol
    assert dream_ends_at_life_loss({"data_collection": [{"policy": "random", "life_loss_ends_episodes": True}]})
    assert not dream_ends_at_life_loss({"data_collection": [{"life_loss_ends_episodes": False}]})


def test_a_reward_paid_again_on_the_next_step_is_counted_unless_an_episode_ended_between():
    # env 0 pays +1 on two steps running, then -1 (another sign); env 1 pays -1, ends, and pays -1 in its next episode
    script = [([1.0, -1.0], [False, True], [False, False], [False, False]),
              ([1.0, -1.0], [False, False], [False, False], [False, False]),
              ([-1.0, 0.0], [False, False], [False, False], [False, False])]
    counts = count_events(_ScriptedVectorEnv(script, life_loss=False), _RecordingPolicy(), 6, "Breakout")
    assert counts.rewards_repeated == 1
    assert counts.to_dict()["repeated_rewards_share"] == round(1 / 5, 4)
    nothing = [([0.0, 0.0], [False, False], [False, False], [False, False])]
    quiet = count_events(_ScriptedVectorEnv(nothing, life_loss=False), _RecordingPolicy(), 2, "Breakout")
    assert "repeated_rewards_share" not in quiet.to_dict()  # no rewards, no share


# ------------------------------------------------------------------------------------------------- dreams
def test_count_events_in_a_dream_counts_its_rewards_and_ends():
    model, bank = fixed_event_dream(reward=1, terminates=True)
    env = make_dream_env(Checkpoint(model, "Pong", PONG_ACTIONS, bank), 2)
    counts = count_events(env, make_policy("follower", "Pong", 6, seed=0), 6, "Pong", seed=0,
                          terminations_are_life_losses=True)
    env.close()
    assert dataclasses.replace(counts, frames_with_ball=None, rewards_at_goal=None,
                               frames_with_extra_balls=None, court_kept=None) == EventCounts(
        "Pong", 6, positive_rewards=6, negative_rewards=0, lives_lost=6, terminations=6, episodes=6)
    assert 0 <= counts.frames_with_ball <= 6  # the dream's frames are looked at for a ball
    model, bank = fixed_event_dream(reward=0, terminates=False)
    env = make_dream_env(Checkpoint(model, "Pong", PONG_ACTIONS, bank), 2, max_episode_steps=2)
    counts = count_events(env, make_policy("random", "Pong", 6, seed=0), 6, "Pong", seed=0)
    env.close()
    assert dataclasses.replace(counts, frames_with_ball=None, rewards_at_goal=None,
                               frames_with_extra_balls=None, court_kept=None) == EventCounts(
        "Pong", 6, 0, 0, 0, terminations=0, episodes=2)  # truncated at 2 steps
    for override in ({"denoising_steps": 2}, {"sampler_start": "sigma_max"}):  # set on a loaded model, not here
        with pytest.raises(ValueError, match="apply to a checkpoint path"):
            make_dream_env(Checkpoint(model, "Pong", PONG_ACTIONS, bank), 2, **override)


@pytest.mark.slow
def test_a_dream_that_never_scores_fails_the_report(tmp_path):
    model, bank = fixed_event_dream(reward=0, terminates=False)
    path = tmp_path / "Pong.safetensors"
    save_checkpoint(path, model, game="Pong", action_meanings=PONG_ACTIONS, start_bank=bank)
    report = closed_loop_report(path, "Pong", steps=800, num_envs=8, seed=0, policies=("random", "follower"),
                                denoising_steps=1)
    assert not report["passed"]
    assert report["denoising_steps"] == 1 and report["events"] == ["points_won", "points_lost"]
    assert report["steps_per_policy"] == 800
    for policy in ("random", "follower"):
        dream = report["policies"][policy]["dream"]
        assert dream["positive_rewards"] == dream["negative_rewards"] == 0
    assert report["policies"]["random"]["real"]["negative_rewards"] >= 8  # random play loses points, often
    failing = [f for f in report["failures"] if f["check"] == "rate"]
    assert ("random", "points_lost") in {(f["policy"], f["event"]) for f in failing}
    assert all(f["dream"] == 0 and f["real"] > f["allowed_difference"] for f in failing)
    # the dream scores every policy 0: where the game tells two policies apart, the dream cannot
    assert all(f["policies"] == ["follower", "random"] for f in report["failures"] if f["check"] == "ranking")
    import json

    assert json.loads(json.dumps(report)) == report


def test_each_policy_plays_the_seed_of_its_name():
    # the gate's policies keep the seeds of their places (the figures recorded with them stand); others go past them
    assert [policy_seed(7, p, "Pong") for p in DEFAULT_POLICIES] == [7, 1007, 2007, 3007]
    other = policy_seed(0, "follower-eps0.1", "Pong")
    assert other >= 4000 and other % 1000 == 0 and other == policy_seed(0, "follower-eps0.1", "Breakout")
    assert policy_seed(5, "follower-eps0.1", "Pong") == other + 5
    assert policy_seed(0, "follower-eps0.2", "Pong") != other


def test_a_policy_judged_alone_plays_what_it_plays_among_the_others(tmp_path):
    model, bank = fixed_event_dream(reward=1, terminates=False)
    path = tmp_path / "Pong.safetensors"
    save_checkpoint(path, model, game="Pong", action_meanings=PONG_ACTIONS, start_bank=bank)
    played = {"steps": 200, "num_envs": 2, "denoising_steps": 1}  # past the serve: the ball seen depends on the seed
    alone = closed_loop_report(path, "Pong", seed=0, policies=("follower-eps0.5",), **played)
    among = closed_loop_report(path, "Pong", seed=0, policies=("random", "follower-eps0.5"), **played)
    # (played on its place in the list, seed 0 alone and 1000 among, the real game's ball differed)
    assert alone["policies"]["follower-eps0.5"] == among["policies"]["follower-eps0.5"]
