"""A dream of an environment that is not Atari: MiniGrid recorded, trained, opened with gym.make and stepped."""

import json

import gymnasium as gym
import numpy as np
import pytest

import gym_diamond  # noqa: F401  (registers DiamondDream/Dream-v0)
from gym_diamond import load_checkpoint
from training.data.collect import main as collect
from training.data.dataset import Episode, EpisodeDataset, environment_actions
from training.data.environments import RealEnvironment
from training.world_model.__main__ import main as train_world_model

pytest.importorskip("minigrid")

MINIGRID_ACTIONS = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]


@pytest.fixture(scope="module")
def minigrid_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("minigrid")
    collect(["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
             "--out", str(root / "data"), "--steps", "120", "--num-envs", "2"])
    train_world_model(["--data", str(root / "data"), "--out", str(root / "wm"), "--steps", "1", "--model", "tiny",
                       "--device", "cpu"])
    return root


def test_the_recording_knows_its_environment(minigrid_checkpoint):
    dataset = EpisodeDataset(minigrid_checkpoint / "data")
    assert dataset.game == "MiniGrid-Empty-5x5-v0" and dataset.num_steps == 120
    assert dataset.frame_shape == (64, 64, 3) and dataset.action_meanings == MINIGRID_ACTIONS
    assert environment_actions(dataset) == ("MiniGrid-Empty-5x5-v0", MINIGRID_ACTIONS)
    ends = [dataset.episode(i) for i in range(len(dataset))]
    assert all(e.terminated[-1] or e.truncated[-1] for e in ends)  # MiniGrid's own ends, or the cut at --steps


def test_the_checkpoint_knows_its_environment_and_any_face_opens_it(minigrid_checkpoint):
    path = minigrid_checkpoint / "wm" / "world_model.safetensors"
    ckpt = load_checkpoint(path)
    assert (ckpt.game, ckpt.env_id, ckpt.frame_size) == ("MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-5x5-v0", 64)
    assert ckpt.action_meanings == MINIGRID_ACTIONS and ckpt.config.num_actions == 7

    env = gym.make("DiamondDream/Dream-v0", checkpoint=path, device="cpu")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.action_space == gym.spaces.Discrete(7)
    assert env.unwrapped.get_action_meanings() == MINIGRID_ACTIONS
    obs, reward, terminated, truncated, _ = env.step(2)
    assert obs.shape == (64, 64, 3) and reward in (-1.0, 0.0, 1.0)
    env.close()

    envs = gym.make_vec("DiamondDream/Dream-v0", num_envs=3, checkpoint=path, device="cpu")
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3)
    assert envs.step(np.array([0, 1, 2]))[0].shape == (3, 64, 64, 3)
    envs.close()

    from gym_diamond.envs import DreamSB3VecEnv

    sb3 = DreamSB3VecEnv.from_checkpoint(path, num_envs=2, device="cpu")
    assert sb3.reset().shape == (2, 64, 64, 3) and sb3.game == "MiniGrid-Empty-5x5-v0"
    sb3.close()


def test_the_any_dream_id_needs_a_checkpoint():
    with pytest.raises(ValueError, match="Dream-v0', checkpoint=PATH"):
        gym.make("DiamondDream/Dream-v0")


def test_a_recording_of_another_environment_without_action_names_is_a_clear_error(tmp_path):
    dataset = EpisodeDataset(tmp_path, game="MyGridWorld-v0")
    dataset.append(Episode(np.zeros((3, 64, 64, 3), np.uint8), np.zeros(2, np.int64), np.zeros(2, np.float32),
                           np.zeros(2, bool), np.array([False, True]), np.zeros(2, bool)))
    with pytest.raises(ValueError, match="records no action names.*--env-id"):
        environment_actions(dataset)
    EpisodeDataset(tmp_path / "other", game="X-v0", action_meanings=["a", "b"]).append(dataset.episode(0))
    assert EpisodeDataset(tmp_path / "other").action_meanings == ["a", "b"]
    with pytest.raises(ValueError, match="has the actions"):
        EpisodeDataset(tmp_path / "other", action_meanings=["a", "c"])


def test_collect_refuses_what_it_cannot_record(tmp_path, capsys):
    with pytest.raises(SystemExit):
        collect(["--env-id", "Pendulum-v1", "--out", str(tmp_path / "p"), "--steps", "10"])
    assert "continuous actions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collect(["--env-id", "CartPole-v1", "--out", str(tmp_path / "c"), "--steps", "10"])
    assert "not an RGB image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collect(["--env-id", "CartPole-v1", "--policy", "follow", "--out", str(tmp_path / "f"), "--steps", "10"])
    assert "Atari games (--game) only" in capsys.readouterr().err


def test_a_minari_recording_trains_a_world_model(minigrid_checkpoint, tmp_path, capsys):
    pytest.importorskip("minari")
    collect(["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
             "--out", str(tmp_path / "data"), "--steps", "60", "--format", "minari"])
    assert "Minari dataset:" in capsys.readouterr().out
    train_world_model(["--data", str(tmp_path / "data" / "minari"), "--out", str(tmp_path / "wm"), "--steps", "1",
                       "--model", "tiny", "--device", "cpu"])
    converted = EpisodeDataset(tmp_path / "wm" / "data")  # the Minari dataset, converted once for the trainer
    original = EpisodeDataset(tmp_path / "data")
    assert converted.num_steps == original.num_steps == 60 and converted.action_meanings == MINIGRID_ACTIONS
    ckpt = load_checkpoint(tmp_path / "wm" / "world_model.safetensors")
    assert ckpt.game == "MiniGrid-Empty-5x5-v0" and ckpt.action_meanings == MINIGRID_ACTIONS


MINIGRID = ["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper"]


def test_the_pipeline_runs_any_environment_end_to_end_and_judges_against_random(tmp_path, capsys, one_thread):
    from training.data.environments import RealEnvironment
    from training.pipeline import main as pipeline

    out = tmp_path / "run"
    pipeline([*MINIGRID, "--preset", "micro", "--out", str(out), "--device", "cpu"])
    report = json.loads((out / "report.json").read_text())
    for name in ("final_evaluation", "random_evaluation"):
        evaluation = report[name]
        low, high = evaluation["ci95"]
        assert low <= evaluation["mean"] <= high and evaluation["episodes"] == len(evaluation["returns"]) >= 1
        assert evaluation["hns"] is None  # no human scores outside Atari
    assert report["environment"]["env_id"] == "minigrid:MiniGrid-Empty-5x5-v0"
    printed = capsys.readouterr().out
    assert "random agent, the same episodes" in printed and "DiamondDream/Dream-v0" in printed
    checkpoint = load_checkpoint(out / "world_model.safetensors")
    environment = RealEnvironment.of_checkpoint(checkpoint.game, checkpoint.provenance)
    assert environment == RealEnvironment(env_id="minigrid:MiniGrid-Empty-5x5-v0",
                                          wrappers=("minigrid.wrappers:RGBImgObsWrapper",))
    pipeline([*MINIGRID, "--preset", "micro", "--out", str(out), "--device", "cpu"])  # a finished run: its report
    with pytest.raises(SystemExit):  # the same folder with another environment is refused
        pipeline(["--env-id", "minigrid:MiniGrid-Empty-6x6-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
                  "--preset", "micro", "--out", str(out), "--device", "cpu"])
    assert "other settings" in capsys.readouterr().err


def test_the_pipeline_trains_an_sb3_agent_in_the_dream_and_resumes_it(tmp_path, capsys, one_thread):
    from stable_baselines3 import PPO

    from training.pipeline import Pipeline
    from training.pipeline import main as pipeline
    from training.presets import get_preset

    out = tmp_path / "ppo"
    args = [*MINIGRID, "--preset", "micro", "--out", str(out), "--device", "cpu", "--agent", "ppo"]
    environment = RealEnvironment(env_id=MINIGRID[1], wrappers=(MINIGRID[3],))
    Pipeline(environment, out, "micro", device="cpu", agent="ppo", progress=False).run(stop_after_epochs=1)
    first = PPO.load(out / "sb3_model.zip")
    micro = get_preset("micro").imagination
    assert first.num_timesteps == micro.batch_size * micro.backup_every  # an actor-critic update's imagined steps
    pipeline(args)  # resumed from the saved model: it learns on rather than again
    report = json.loads((out / "report.json").read_text())
    assert report["agent"] == "PPO" and report["actor_critic"] is None and report["actor_critic_updates"] is None
    assert report["imagined_steps"] == 2 * first.num_timesteps  # micro's two epochs
    assert report["agent_file"].endswith("policy.safetensors") and (out / "policy.json").exists()
    assert report["final_evaluation"]["episodes"] >= 1
    assert json.loads((out / "config.json").read_text())["agent"] == "ppo"
    assert "agent (PPO)" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the same folder with DIAMOND's actor-critic is another run
        pipeline(args[:-2])
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pipeline([*MINIGRID, "--preset", "micro", "--out", str(tmp_path / "x"), "--agent", "ppq"])
    assert "did you mean ppo" in capsys.readouterr().err


def test_make_kwargs_reach_every_env_and_are_recorded_with_the_data(tmp_path, capsys):
    from training.data.collect import read_collection_log

    plain = RealEnvironment(env_id=MINIGRID[1], wrappers=(MINIGRID[3],), make_kwargs={"highlight": False})
    lit = RealEnvironment(env_id=MINIGRID[1], wrappers=(MINIGRID[3],))
    dark, bright = plain.eval_env().reset(seed=0)[0], lit.eval_env().reset(seed=0)[0]
    assert dark.mean() < bright.mean()  # MiniGrid's view highlight is off
    assert plain.describe()["make_kwargs"] == {"highlight": False} and "make_kwargs" not in lit.describe()
    collect([*MINIGRID, "--env-kwargs", '{"highlight": false}', "--out", str(tmp_path / "data"), "--steps", "20"])
    (run,) = read_collection_log(tmp_path / "data")
    assert RealEnvironment.of_checkpoint("MiniGrid-Empty-5x5-v0", {"data_collection": [run]}) == plain
    frame = EpisodeDataset(tmp_path / "data").episode(0).frames[0]
    assert np.array_equal(frame, dark)  # the recording is of the environment made with them
    with pytest.raises(SystemExit):
        collect(["--game", "Pong", "--env-kwargs", '{"full_action_space": true}', "--out", str(tmp_path / "pong"),
                 "--steps", "1"])
    with pytest.raises(SystemExit):
        collect([*MINIGRID, "--env-kwargs", "[1]", "--out", str(tmp_path / "x"), "--steps", "1"])
    assert "expected a JSON object" in capsys.readouterr().err


def test_a_checkpoint_of_a_recording_names_its_environment(minigrid_checkpoint):
    from training.data.environments import RealEnvironment

    checkpoint = load_checkpoint(minigrid_checkpoint / "wm" / "world_model.safetensors")
    environment = RealEnvironment.of_checkpoint(checkpoint.game, checkpoint.provenance)
    assert environment.env_id == "minigrid:MiniGrid-Empty-5x5-v0" and environment.name == "MiniGrid-Empty-5x5-v0"
    assert environment.action_meanings() == MINIGRID_ACTIONS
    frame, _ = environment.eval_env().reset(seed=0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_an_sb3_agent_trains_in_any_dream_and_is_judged_in_its_own_environment(minigrid_checkpoint, tmp_path):
    from training.agents.sb3 import train_sb3_agent

    run = train_sb3_agent(minigrid_checkpoint / "wm" / "world_model.safetensors", steps=32, out=tmp_path / "sb3",
                          num_envs=2, algo_kwargs={"n_steps": 16, "batch_size": 32}, device="cpu", eval_every=32,
                          eval_episodes=1, max_episode_steps=20, progress=False)
    (row,) = run.evaluations
    assert row["episodes"] == 1 and 0 <= row["mean_return"] <= 1  # MiniGrid's return, played in MiniGrid
