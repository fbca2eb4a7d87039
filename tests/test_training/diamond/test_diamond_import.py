"""training.diamond.importer / exporter: DIAMOND agent files in and out, the hub path, bad files."""

import shutil
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import DATA

import gym_diamond  # noqa: F401  (registers the ids)
from gym_diamond import load_checkpoint
from training.agents.checkpoints import load_actor_critic
from training.agents.evaluate import evaluate
from training.data.policies import ActorCriticAgent
from training.diamond import importer as imp
from training.diamond.exporter import export_diamond
from training.diamond.exporter import main as export_main
from training.diamond.format import DiamondFormatError

AGENT = DATA / "diamond" / "agent.pt"  # a small DIAMOND agent, 6 actions (Pong's)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    imp.main(["--game", "Pong", "--diamond-checkpoint", str(AGENT), "--out", str(out), "--bank-size", "12",
              "--no-progress"])
    return out


def test_import_writes_loadable_files_with_provenance(imported, capsys):
    ckpt = load_checkpoint(imported / "world_model.safetensors")
    assert ckpt.game == "Pong" and len(ckpt.action_meanings) == 6
    assert len(ckpt.start_bank) == 12
    frames = ckpt.start_bank.frames
    assert frames.shape == (12, 4, 64, 64, 3) and frames.std() > 0  # real game frames, not blanks
    assert ckpt.start_bank.actions.min() >= 0 and ckpt.start_bank.actions.max() < 6
    prov = ckpt.provenance
    assert prov["diamond_checkpoint"] == "agent.pt" and len(prov["diamond_checkpoint_sha256"]) == 64
    assert prov["start_bank"]["contexts"] == 12 and "DIAMOND actor-critic" in prov["start_bank"]["policy"]
    # the weights are DIAMOND's, unchanged
    state = torch.load(AGENT, weights_only=True)
    assert torch.equal(ckpt.world_model.denoiser.net.conv_in.weight, state["denoiser.inner_model.conv_in.weight"])
    actor_critic = load_actor_critic(imported / "actor_critic.safetensors")
    assert torch.equal(actor_critic.policy_head.weight, state["actor_critic.actor_linear.weight"])


def test_contexts_are_consecutive_real_frames(imported):
    """Each context is 4 frames of one episode: the agent's play, one step apart (not four copies)."""
    frames = load_checkpoint(imported / "world_model.safetensors").start_bank.frames.astype(int)
    steps_differ = np.abs(np.diff(frames, axis=1)).reshape(len(frames), 3, -1).max(-1)
    assert (steps_differ > 0).mean() > 0.5


def test_imported_dream_steps_through_make_and_make_vec(imported):
    ckpt = str(imported / "world_model.safetensors")
    env = gym.make("DiamondDream/Pong-v0", checkpoint=ckpt, device="cpu")
    obs, _ = env.reset(seed=0)
    for action in (0, 2, 3):
        obs, reward, terminated, truncated, _ = env.step(action)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    env.close()
    envs = gym.make_vec("DiamondDream/Pong-v0", num_envs=3, checkpoint=ckpt, device="cpu")
    obs, _ = envs.reset(seed=0)
    obs, rewards, terminated, truncated, _ = envs.step(np.array([0, 1, 2]))
    assert obs.shape == (3, 64, 64, 3) and rewards.shape == (3,)
    envs.close()


def test_imported_actor_critic_plays_the_real_game(imported):
    agent = ActorCriticAgent(load_actor_critic(imported / "actor_critic.safetensors"), 1, seed=0)
    result = evaluate(agent, "Pong", episodes=1, num_envs=1, max_steps=20)
    assert result.lengths == [20] and result.game == "Pong"


def test_export_then_import_gives_back_the_same_tensors(imported, tmp_path):
    agent, yaml = export_diamond(imported / "world_model.safetensors", tmp_path / "Pong.pt",
                                 imported / "actor_critic.safetensors")
    original = torch.load(AGENT, weights_only=True)
    exported = torch.load(agent, weights_only=True)
    assert set(exported) == set(original)
    assert all(torch.equal(exported[k], original[k]) for k in original)
    assert "channels: [8,8,8,8]" in yaml.read_text() and "lstm_dim: 32" in yaml.read_text()
    result = imp.import_diamond("Pong", agent, out=tmp_path / "again", bank_size=2, progress=False)
    again = load_checkpoint(tmp_path / "again" / "world_model.safetensors")
    first = load_checkpoint(imported / "world_model.safetensors")
    assert again.config == first.config
    for key, tensor in first.world_model.state_dict().items():
        assert torch.equal(again.world_model.state_dict()[key], tensor), key
    assert all(torch.equal(result.actor_critic.state_dict()[k], v)
               for k, v in load_actor_critic(imported / "actor_critic.safetensors").state_dict().items())


def test_export_refuses_what_diamond_cannot_compute(tmp_path, capsys):
    from helpers import make_tiny_checkpoint  # tiny test models use 2 attention heads on 8 channels

    path = make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", str(path), "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2 and "attn_head_dim" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


# -- bad files: each error names the file and the key


def _save(tmp_path, state, name="bad.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def _fixture():
    return torch.load(AGENT, weights_only=True)


def test_not_a_diamond_agent(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DiamondFormatError, match="notes.pt is not a DIAMOND agent file"):
        imp.load_diamond_file(text)
    with pytest.raises(DiamondFormatError, match="bad.pt is not a DIAMOND agent.*none of its 1 keys"):
        imp.load_diamond_file(_save(tmp_path, {"model.weight": torch.zeros(2)}))
    with pytest.raises(DiamondFormatError, match="bad.pt.*'epoch' holds a int"):
        imp.load_diamond_file(_save(tmp_path, {**_fixture(), "epoch": 3}))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        imp.load_diamond_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        imp.load_diamond_file(tmp_path / "missing.pt")


def test_pickled_code_is_refused(tmp_path):
    path = _save(tmp_path, {"denoiser.inner_model.x": torch.zeros(1), "obj": types.SimpleNamespace(a=1)})
    with pytest.raises(DiamondFormatError, match="bad.pt is not a DIAMOND agent file.*weights_only"):
        imp.load_diamond_file(path)


@pytest.mark.parametrize("key", ["rew_end_model.lstm.weight_hh_l0", "actor_critic.critic_linear.bias",
                                 "denoiser.inner_model.unet.u_blocks.1.resblocks.2.conv2.bias"])
def test_missing_key(tmp_path, key):
    state = _fixture()
    del state[key]
    path = _save(tmp_path, state)
    with pytest.raises(DiamondFormatError, match=f"bad.pt: missing key '{key}'"):
        imp.import_diamond("Pong", path, out=tmp_path / "out", bank_size=1, progress=False)


def test_unknown_key(tmp_path):
    path = _save(tmp_path, {**_fixture(), "denoiser.inner_model.extra.weight": torch.zeros(3)})
    with pytest.raises(DiamondFormatError, match="bad.pt: unknown key 'denoiser.inner_model.extra.weight'"):
        imp.import_diamond("Pong", path, out=tmp_path / "out", bank_size=1, progress=False)


@pytest.mark.parametrize("key, shape", [
    ("denoiser.inner_model.unet.d_blocks.1.resblocks.0.conv2.weight", (8, 8, 5, 5)),
    ("rew_end_model.lstm.weight_ih_l0", (128, 100)),
    ("denoiser.inner_model.noise_emb.weight", (1, 7)),
])
def test_shape_that_fits_no_config(tmp_path, key, shape):
    path = _save(tmp_path, {**_fixture(), key: torch.zeros(shape)})
    with pytest.raises(DiamondFormatError, match=f"bad.pt: key '{key}'"):
        imp.import_diamond("Pong", path, out=tmp_path / "out", bank_size=1, progress=False)


def test_game_with_another_action_count(tmp_path):
    with pytest.raises(DiamondFormatError, match=r"agent.pt: key '.*act_emb.*' is for 6 actions but the game has 4"):
        imp.import_diamond("Breakout", AGENT, out=tmp_path / "out", bank_size=1, progress=False)


# -- the hub: never the network; a stand-in huggingface_hub serves a copy of the fixture


def test_from_hub_installs_where_gym_make_looks(tmp_path, monkeypatch):
    calls = []

    def hf_hub_download(repo_id, filename):
        calls.append((repo_id, filename))
        target = tmp_path / "hub" / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(AGENT, target))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    home = tmp_path / "home"
    monkeypatch.setenv("GYM_DIAMOND_HOME", str(home))
    imp.main(["--game", "Pong", "--from-hub", "--bank-size", "3", "--no-progress"])
    assert calls == [("eloialonso/diamond", "atari_100k/models/Pong.pt")]
    assert (home / "Pong.safetensors").is_file() and (home / "Pong.actor_critic.safetensors").is_file()
    assert load_checkpoint(home / "Pong.safetensors").provenance["hub"]["repo"] == "eloialonso/diamond"
    env = gym.make("DiamondDream/Pong-v0", device="cpu")  # no checkpoint argument: found in $GYM_DIAMOND_HOME
    env.reset(seed=0)
    assert env.step(0)[0].shape == (64, 64, 3)
    env.close()


def test_from_hub_without_gym_diamond_home_uses_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(
        hf_hub_download=lambda repo_id, filename: str(AGENT)))
    monkeypatch.delenv("GYM_DIAMOND_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    imp.main(["--game", "Pong", "--from-hub", "--bank-size", "2", "--no-progress"])
    assert (tmp_path / "cache" / "gym-diamond" / "Pong.safetensors").is_file()
    env = gym.make("DiamondDream/Pong-v0", device="cpu")
    assert env.reset(seed=0)[0].shape == (64, 64, 3)
    env.close()


def test_from_hub_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'gym-diamond\[hub\]'.*resolve/main/atari_100k/models/Pong.pt"):
        imp.download_from_hub("Pong")


def test_from_hub_offline_says_which_file_to_download(monkeypatch):
    def offline(repo_id, filename):
        raise OSError("Network is unreachable")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=offline))
    with pytest.raises(RuntimeError, match=r"Network is unreachable.*offline\?.*models/Breakout.pt.*--install"):
        imp.download_from_hub("Breakout")


def test_from_hub_only_for_the_26_games():
    with pytest.raises(ValueError, match="26 Atari 100k games only, not Tetris"):
        imp.download_from_hub("Tetris")


def test_evaluate_command_scores_the_imported_agent(imported, capsys):
    from training.agents.evaluate import main as evaluate_main

    evaluate_main(["--game", "Pong", "--actor-critic", str(imported / "actor_critic.safetensors"), "--episodes", "2",
                   "--max-steps", "15"])
    out = capsys.readouterr().out
    assert '"lengths": [15, 15]' in out and "Pong:" in out and "over 2 episodes, HNS" in out
