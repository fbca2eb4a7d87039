"""python -m training.closed_loop: the closed-loop gate alone, as lines and as JSON."""

import json

import pytest
from helpers import PONG_ACTIONS, fixed_event_dream

from gym_diamond import save_checkpoint
from training.closed_loop import main, report_lines


@pytest.fixture
def never_scoring_pong(tmp_path):
    model, bank = fixed_event_dream(reward=0, terminates=False)
    path = tmp_path / "Pong.safetensors"
    save_checkpoint(path, model, game="Pong", action_meanings=PONG_ACTIONS, start_bank=bank)
    return path


def test_a_dream_that_never_scores_fails_and_says_why(never_scoring_pong, tmp_path, capsys):
    out = tmp_path / "closed_loop.json"
    main(["--checkpoint", str(never_scoring_pong), "--steps", "1000", "--num-envs", "8", "--policies", "random",
          "--denoising-steps", "1", "--out", str(out)])
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    # progress off a terminal: plain lines, the last of them the whole play (1,000 steps in the dream and the game)
    assert "\r" not in captured.err and "closed loop Pong: random in the game" in captured.err
    assert "2000/2000" in captured.err.splitlines()[-1]
    report = json.loads(out.read_text())
    assert report["game"] == "Pong" and report["denoising_steps"] == 1 and report["steps_per_policy"] == 1000
    assert report["sampler_start"] == "unit" and "1 denoising steps from unit noise" in printed[0]
    assert list(report["policies"]) == ["random"]
    dream, real = report["policies"]["random"]["dream"], report["policies"]["random"]["real"]
    assert dream["negative_rewards"] == 0 and real["negative_rewards"] > 0  # random play loses points in the game
    assert not report["passed"]
    assert printed == report_lines(report)
    assert printed[1].split()[0] == "random" and "points_lost 0.00 /" in printed[1]
    assert printed[2].startswith("failed (") and any("points_lost" in line for line in printed[3:])


def test_the_sampler_may_start_from_sigma_max(never_scoring_pong, tmp_path, capsys):
    out = tmp_path / "closed_loop.json"
    main(["--checkpoint", str(never_scoring_pong), "--steps", "16", "--num-envs", "2", "--policies", "random",
          "--denoising-steps", "2", "--sampler-start", "sigma_max", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["sampler_start"] == "sigma_max" and report["denoising_steps"] == 2
    assert report["checkpoint"] == str(never_scoring_pong)
    assert "2 denoising steps from sigma_max noise" in capsys.readouterr().out.splitlines()[0]


def test_the_dream_reads_rewards_and_endings_as_asked(never_scoring_pong, tmp_path, capsys, monkeypatch):
    import training.fidelity.closed_loop as closed_loop
    from gym_diamond.envs.rew_end_reading import CarriedReading, StaggeredReading

    opened = []

    def make_dream_env(*args, **kwargs):
        env = make(*args, **kwargs)
        opened.append(env.core.rew_end_reading)
        return env

    make = closed_loop.make_dream_env
    monkeypatch.setattr(closed_loop, "make_dream_env", make_dream_env)
    out = tmp_path / "closed_loop.json"
    for argv, kind, window, words in (([], StaggeredReading, 19, "staggered every 19 transitions"),
                                      (["--rew-end-window", "7"], StaggeredReading, 7, "staggered every 7"),
                                      (["--rew-end-window", "carried"], CarriedReading, None, "one state carried")):
        main(["--checkpoint", str(never_scoring_pong), "--steps", "4", "--num-envs", "2", "--policies", "random",
              "--denoising-steps", "1", "--out", str(out), *argv])
        assert isinstance(opened[-1], kind) and getattr(opened[-1], "window", None) == window
        assert json.loads(out.read_text())["rew_end_window"] == window
        assert words in capsys.readouterr().out.splitlines()[0]


def test_report_lines_of_a_passing_report_end_with_passed():
    side = {"per_1000": {"points_won": 1.0, "points_lost": 4.0}, "ball_shown": 0.9}
    report = {"game": "Pong", "steps_per_policy": 100, "num_envs": 2, "denoising_steps": 3, "sampler_start": "unit",
              "seed": 0,
              "events": ["points_won", "points_lost"], "policies": {"follower": {"dream": side, "real": side}},
              "passed": True, "failures": []}
    assert report_lines(report)[1:] == ["  follower       points_won 1.00 / 1.00, points_lost 4.00 / 4.00, "
                                        "ball_shown 0.900 / 0.900", "passed"]


@pytest.mark.parametrize("argv, message", [(["--steps", "0"], "--steps must be >= 1"),
                                           (["--denoising-steps", "0"], "--denoising-steps must be >= 1"),
                                           (["--rew-end-window", "1"], "at least 2 transitions"),
                                           (["--rew-end-window", "all"], "or 'carried'")])
def test_bad_numbers_are_refused_before_playing(never_scoring_pong, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(never_scoring_pong), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "nothing.safetensors")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no checkpoint at") and len(err.strip().splitlines()) == 1
