"""benchmarks/dream_pictures.py: real | dream | difference pictures, and the reward model's reads at rewarded
transitions on the real next frame and on the dream's."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import PONG_ACTIONS, fixed_event_dream, load_benchmark, pong_frame
from PIL import Image

from gym_diamond import load_checkpoint, save_checkpoint, to_model_frames, to_uint8_frames
from training.data.dataset import Episode, EpisodeDataset
from training.data.objects import find_objects

dream_pictures = load_benchmark("dream_pictures")


@pytest.fixture
def rewarded_data(tmp_path):
    """One 40-step episode of random frames, rewarded (+1) at steps 10 and 25 only."""
    rng = np.random.default_rng(0)
    rewards = np.zeros(40, np.float32)
    rewards[[10, 25]] = 1.0
    z = np.zeros(40, bool)
    data = EpisodeDataset(tmp_path / "data", game="Pong")
    data.append(Episode(rng.integers(0, 256, (41, 64, 64, 3), dtype=np.uint8), rng.integers(0, 6, 40), rewards,
                        z, z.copy(), z.copy()))
    return tmp_path / "data"


def _dream(tmp_path, reward):
    model, bank = fixed_event_dream(reward=reward, terminates=False)
    return save_checkpoint(tmp_path / f"reward{reward}.safetensors", model, game="Pong", action_meanings=PONG_ACTIONS,
                           start_bank=bank)


@pytest.mark.parametrize("reward", [1, 0])
def test_rewarded_reads_compare_the_reward_models_sign_with_the_real_one(tmp_path, rewarded_data, capsys, reward,
                                                                         one_thread):
    out = tmp_path / "punches.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, reward)), "--data", str(rewarded_data), "--out",
                         str(out), "--rewarded", "--windows", "3", "--scale", "1", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    assert figures["rewarded_transitions"] == 64  # every draw has 4 real frames before its reward
    expected = 1.0 if reward == 1 else 0.0  # a model that always says +1 reads every +1; one that says 0, none
    assert figures["reward_read_on_real_next_frame"] == figures["reward_read_on_dream_next_frame"] == expected
    assert figures["any_reward_on_dream_next_frame"] == expected
    with Image.open(out) as picture:
        assert picture.size == (4 * 64 + dream_pictures.GAP, 3 * 64)


def test_horizon_rows_show_real_dream_and_difference_at_each_horizon(tmp_path, rewarded_data, one_thread):
    out = tmp_path / "dream.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 0)), "--data", str(rewarded_data), "--out", str(out),
                         "--windows", "2", "--device", "cpu"])
    with Image.open(out) as picture:
        assert picture.size == (2 * (9 * 64 + 2 * dream_pictures.GAP), 2 * 2 * 64)
        pixels = np.asarray(picture.convert("RGB"))[::2, ::2]
    real, dream, difference = pixels[:64, :64], pixels[:64, 64:128], pixels[:64, 128:192]
    assert np.array_equal(difference, np.abs(real.astype(int) - dream.astype(int)).astype(np.uint8))


def test_after_point_rows_show_the_steps_after_a_point_real_dream_and_difference(tmp_path, rewarded_data, capsys,
                                                                                one_thread):
    out = tmp_path / "serve.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 0)), "--data", str(rewarded_data), "--out", str(out),
                         "--after-point", "--windows", "2", "--scale", "1", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    assert figures["windows"] == 2 and 0 <= figures["ball_back_real"] <= 1 and 0 <= figures["ball_back_dream"] <= 1
    with Image.open(out) as picture:
        assert picture.size == (9 * 64, 2 * 3 * 64 + dream_pictures.GAP)
        pixels = np.asarray(picture.convert("RGB"))
    # only the point at step 10 has 20 steps after it: its first real cell is frame 13, 2 steps after frame 11
    frames = EpisodeDataset(rewarded_data).episode(0).frames
    assert np.array_equal(pixels[:64, :64], frames[13]) and np.array_equal(pixels[:64, 64:128], frames[15])
    real, dream, difference = pixels[:64, :64], pixels[64:128, :64], pixels[128:192, :64]
    assert np.array_equal(difference, np.abs(real.astype(int) - dream.astype(int)).astype(np.uint8))


@pytest.mark.parametrize("reward", [1, 0])
def test_an_agent_plays_its_dream_and_each_reward_is_drawn_with_the_frames_before_it(tmp_path, capsys, reward,
                                                                                    one_thread):
    from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
    from training.agents.checkpoints import save_actor_critic

    agent = save_actor_critic(tmp_path / "agent.safetensors",
                              ActorCritic(ActorCriticConfig(len(PONG_ACTIONS), channels=(4, 4, 4, 4), lstm_dim=8)),
                              game="Pong")
    out = tmp_path / "paid.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, reward)), "--agent", str(agent), "--out", str(out),
                         "--steps", "16", "--windows", "3", "--scale", "1", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    if reward == 0:  # a dream that never pays: nothing to draw
        assert figures["rewards"] == [] and not out.exists()
        return
    # a dream that pays +1 on every step: 8 dreams x 2 steps, 3 of them drawn with the frames before
    assert len(figures["rewards"]) == 16 and {r["sign"] for r in figures["rewards"]} == {1}
    with Image.open(out) as picture:
        assert picture.size == ((dream_pictures.BEFORE + 1) * 64 + dream_pictures.GAP, 3 * 64)
    with pytest.raises(SystemExit):
        dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 1)), "--out", str(out)])  # neither --data nor --agent


def test_a_gate_policy_plays_its_dream_and_rewards_paid_in_a_row_are_counted(tmp_path, capsys, one_thread):
    out = tmp_path / "paid.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 1)), "--policy", "follower", "--out", str(out),
                         "--steps", "24", "--windows", "2", "--scale", "1", "--device", "cpu",
                         "--denoising-steps", "2"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    assert figures["denoising_steps"] == 2  # the sampler as asked, not the checkpoint's own
    # a dream that pays +1 on every step: 8 dreams x 3 steps, of which the second and third follow a reward
    assert figures["policy"] == "follower" and len(figures["rewards"]) == 24
    assert figures["rewards_right_after_another"] == 16
    assert all(0 <= r["balls"] <= 4 for r in figures["rewards"])  # Pong has a ball: each paid frame's balls counted
    with Image.open(out) as picture:
        assert picture.size == ((dream_pictures.BEFORE + 1) * 64 + dream_pictures.GAP, 2 * 64)
    # two players, open and closed loop at once, a policy Pong has not, no sampler step
    for wrong in (["--policy", "follower", "--agent", "agent.safetensors"], ["--policy", "follower", "--data", "d"],
                  ["--policy", "chaser"], ["--policy", "follower", "--denoising-steps", "0"]):
        with pytest.raises(SystemExit):
            dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 1)), "--out", str(out), *wrong])


def test_repeated_draws_only_the_rewards_paid_right_after_another(tmp_path, capsys, one_thread):
    out = tmp_path / "twice.png"
    args = ["--checkpoint", str(_dream(tmp_path, 1)), "--policy", "follower", "--out", str(out), "--repeated",
            "--windows", "8", "--scale", "1", "--device", "cpu", "--denoising-steps", "1"]
    dream_pictures.main([*args, "--steps", "8"])  # one step a dream: every reward is a first
    assert "no reward paid right after another in the dream: no picture" in capsys.readouterr().out
    assert not out.exists()
    dream_pictures.main([*args, "--steps", "16"])  # the second step's 8 rewards each follow one
    capsys.readouterr()
    with Image.open(out) as picture:
        rows = np.asarray(picture)
    assert rows.shape[:2] == (8 * 64, (dream_pictures.BEFORE + 1) * 64 + dream_pictures.GAP)
    for row in np.split(rows, 8):  # the frame before the paid one is the frame the first reward was paid on
        assert row[:, (dream_pictures.BEFORE - 1) * 64:dream_pictures.BEFORE * 64].any()
        assert not row[:, (dream_pictures.BEFORE - 3) * 64:(dream_pictures.BEFORE - 2) * 64].any()  # none before
    with pytest.raises(SystemExit):
        dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 1)), "--data", "d", "--out", str(out), "--repeated"])


def test_rewards_right_after_another_are_counted_per_dream():
    paid = [{"step": 3, "dream": 0, "sign": 1}, {"step": 4, "dream": 0, "sign": 1}, {"step": 4, "dream": 1, "sign": -1},
            {"step": 6, "dream": 0, "sign": -1}, {"step": 5, "dream": 2, "sign": 1}]
    assert dream_pictures.rewards_right_after_another(paid) == 1  # dream 0's step 4; dream 1's and 2's stand alone
    assert dream_pictures.rewards_right_after_another([]) == 0


def test_lost_returns_are_the_windows_the_dream_does_not_return(tmp_path, capsys, one_thread, monkeypatch):
    # three rallies, each returned at 2 moments; a stand-in dream redraws the real frames of the first two rallies'
    # moments (returned) and drops the ball in the third's (lost)
    data = EpisodeDataset(tmp_path / "rallies", game="Pong")
    for y in (20, 30, 40):
        xs = [30, 34, 38, 42, 46, 50, 54, 50, 46, 42, 38, 34]
        data.append(Episode(np.stack([pong_frame(x, ball_y=y) for x in xs]), np.zeros(11, np.int64),
                            np.zeros(11, np.float32), *(np.zeros(11, bool) for _ in range(3))))

    def redraw_or_drop(model, precision, frames, actions, L, H):
        real = frames[:, L:L + H].clone()
        ball_y = find_objects("Pong", to_uint8_frames(frames[:, L - 1]).numpy()).ball_xy[:, 1]
        real[torch.as_tensor(ball_y == 40)] = to_model_frames(torch.as_tensor(pong_frame(None)))
        return SimpleNamespace(frames={h: real[:, h - 1] for h in range(1, H + 1)})

    monkeypatch.setattr(dream_pictures, "imagine", redraw_or_drop)
    model = load_checkpoint(_dream(tmp_path, 0)).world_model
    every_episode = np.arange(3)
    picture, figures = dream_pictures.at_paddle_rows(model, data, 4, 0, every_episode, lost_only=True)
    assert figures == {"windows": 2, "returned_dream": 4 / 6, "returns_dreamt": 6}
    assert picture.shape[0] == 2 * 3 * 64 + dream_pictures.GAP  # the third rally's two moments only
    assert (find_objects("Pong", picture[None, :64, :64]).ball_xy[0, 1]) == 40  # the real frame of a lost window
    assert not find_objects("Pong", picture[None, 64:128, :64]).ball_visible[0]  # the dream's, without its ball
    every, figures = dream_pictures.at_paddle_rows(model, data, 4, 0, every_episode)
    assert figures == {"windows": 4, "returned_dream": 0.5} and every.shape[0] == 4 * 3 * 64 + 3 * dream_pictures.GAP
    redrawn = EpisodeDataset(tmp_path / "returned", game="Pong")
    redrawn.append(data.episode(0))
    assert dream_pictures.at_paddle_rows(model, redrawn, 4, 0, np.arange(1), lost_only=True)[0] is None
    with pytest.raises(SystemExit):
        dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 0)), "--data", str(tmp_path / "rallies"),
                             "--out", str(tmp_path / "x.png"), "--lost"])
    assert "--lost goes with --at-paddle" in capsys.readouterr().err


def test_at_paddle_rows_show_the_steps_after_a_return(tmp_path, capsys, one_thread):
    # one rally: the ball reaches the player's paddle at frames 5 (50) and 6 (54) and comes back
    xs = [30, 34, 38, 42, 46, 50, 54, 50, 46, 42, 38, 34]
    data = EpisodeDataset(tmp_path / "rally", game="Pong")
    data.append(Episode(np.stack([pong_frame(x) for x in xs]), np.zeros(11, np.int64), np.zeros(11, np.float32),
                        *(np.zeros(11, bool) for _ in range(3))))
    out = tmp_path / "bounce.png"
    dream_pictures.main(["--checkpoint", str(_dream(tmp_path, 0)), "--data", str(tmp_path / "rally"), "--out",
                         str(out), "--at-paddle", "--windows", "3", "--scale", "1", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    assert figures == {"checkpoint": str(_dream(tmp_path, 0)), "data": str(tmp_path / "rally"), "windows": 2,
                       "returned_dream": 0.0}  # both moments; the fixed dream draws no ball
    with Image.open(out) as picture:
        assert picture.size == (4 * 64, 2 * 3 * 64 + dream_pictures.GAP)  # Pong's 4 steps after the moment
        pixels = np.asarray(picture.convert("RGB"))
    assert find_objects("Pong", pixels[None, :64, 3 * 64:]).ball_xy[0, 0] < 50  # the real ball, 4 steps on: back
    with pytest.raises(ValueError, match="no return of the ball"):
        still = EpisodeDataset(tmp_path / "still", game="Pong")
        still.append(Episode(np.stack([pong_frame(20)] * 12), np.zeros(11, np.int64), np.zeros(11, np.float32),
                             *(np.zeros(11, bool) for _ in range(3))))
        dream_pictures.at_paddle_rows(load_checkpoint(_dream(tmp_path, 0)).world_model, still, 2, 0,
                                      np.arange(len(still)))


def test_windows_come_from_the_episodes_the_checkpoint_did_not_train_on(tmp_path, capsys, one_thread):
    # two episodes, rewarded in the first only; a checkpoint that records training on the first judges the second,
    # which holds no reward: refused, where every episode would have flattered it with the one it learnt
    rng = np.random.default_rng(1)
    data = EpisodeDataset(tmp_path / "data", game="Pong")
    for rewarded in (True, False):
        rewards = np.zeros(30, np.float32)
        rewards[12] = float(rewarded)
        z = np.zeros(30, bool)
        data.append(Episode(rng.integers(0, 256, (31, 64, 64, 3), dtype=np.uint8), rng.integers(0, 6, 30), rewards,
                            z, z.copy(), z.copy()))
    model, bank = fixed_event_dream(reward=1, terminates=False)
    trained = {"trained_episode_fingerprints": data.fingerprints([0])}
    checkpoint = save_checkpoint(tmp_path / "trained.safetensors", model, game="Pong", action_meanings=PONG_ACTIONS,
                                 start_bank=bank, provenance=trained)
    args = ["--checkpoint", str(checkpoint), "--data", str(data.root), "--out", str(tmp_path / "x.png"), "--rewarded",
            "--device", "cpu"]
    with pytest.warns(UserWarning, match="1 of the 2 episodes"), pytest.raises(SystemExit):
        dream_pictures.main(args)
    assert "no transition of the dataset" in capsys.readouterr().err
    untrained = save_checkpoint(tmp_path / "untrained.safetensors", model, game="Pong", action_meanings=PONG_ACTIONS,
                                start_bank=bank)
    dream_pictures.main([*args[:1], str(untrained), *args[2:]])
    assert json.loads(capsys.readouterr().out.splitlines()[0])["rewarded_transitions"] == 64


def test_break_rows_show_the_step_that_breaks_a_brick_and_the_dreams(tmp_path, capsys, one_thread):
    from helpers import breakout_play, make_tiny_checkpoint

    from training.data.bricks import brick_wall

    frames, rewards = breakout_play()
    data = EpisodeDataset(tmp_path / "breakout", game="Breakout")
    for first, last in ((0, 300), (300, 600)):
        z = np.zeros(last - first, bool)
        data.append(Episode(frames[first:last + 1], np.zeros(last - first, np.int64),
                            rewards[first + 1:last + 1].astype(np.float32), z, z.copy(), z.copy()))
    checkpoint = make_tiny_checkpoint(tmp_path / "Breakout.safetensors", game="Breakout")
    out = tmp_path / "bricks.png"
    dream_pictures.main(["--checkpoint", str(checkpoint), "--data", str(data.root), "--out", str(out), "--breaks",
                         "--windows", "3", "--scale", "1", "--denoising-steps", "1", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.splitlines()[0])
    assert figures["windows"] == 3 and figures["break_drawn"] == 0.0  # an untrained dream draws no wall of the game
    with Image.open(out) as picture:
        assert picture.size == (4 * 64 + dream_pictures.GAP, 3 * 64)
        pixels = np.asarray(picture.convert("RGB"))
    start, real = pixels[None, :64, :64], pixels[None, :64, 64 + dream_pictures.GAP:128 + dream_pictures.GAP]
    assert brick_wall(start).sum() == brick_wall(real).sum() + 1  # the real next frame lost the brick
    pong = EpisodeDataset(tmp_path / "pong", game="Pong")
    with pytest.raises(ValueError, match="bricks are Breakout's: the dataset is of Pong"):
        dream_pictures.break_rows(load_checkpoint(checkpoint).world_model, pong, 2, 0, np.arange(0))
