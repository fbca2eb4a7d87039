"""Every ``python -m training.*`` command answers a user's mistake with one line, ``error: ...``, and exit 2."""

import importlib

import pytest

COMMANDS = {  # module under training: a bad argument for it (a game that does not exist, a missing file)
    "data.collect": ["--game", "NoSuchGame", "--out", "{tmp}/data", "--steps", "10"],
    "world_model.__main__": ["--game", "NoSuchGame", "--data", "{tmp}/missing-data", "--out", "{tmp}/wm",
                             "--steps", "1"],
    "pipeline": ["--game", "NoSuchGame", "--preset", "micro", "--out", "{tmp}/run"],
    "agents.sb3": ["--checkpoint", "{tmp}/missing.safetensors", "--steps", "10", "--out", "{tmp}/sb3"],
    "agents.evaluate": ["--game", "NoSuchGame", "--agent", "random"],
    "gates": ["--checkpoint", "{tmp}/missing.safetensors", "--test-data", "{tmp}/data", "--out", "{tmp}/gates"],
    "diamond.importer": ["--game", "Pong", "--diamond-checkpoint", "{tmp}/missing.pt", "--out", "{tmp}/imported"],
    "diamond.exporter": ["--checkpoint", "{tmp}/missing.safetensors", "--out", "{tmp}/x.pt"],
    "ship": ["--checkpoint", "{tmp}/missing.safetensors", "--out", "{tmp}/shipped.safetensors"],
    "runtime.report": ["{tmp}/no-run"],
    "ppo_real": ["--game", "NoSuchGame", "--steps", "1", "--out", "{tmp}/ppo"],
    "fidelity.__main__": ["--checkpoint", "{tmp}/missing.safetensors", "--data", "{tmp}/data"],
    "agents.dream_actor_critic": ["--checkpoint", "{tmp}/missing.safetensors", "--data", "{tmp}/data", "--out",
                                  "{tmp}/ac", "--updates", "1"],
    "world_model.combine": ["--denoiser", "{tmp}/missing.safetensors", "--rew-end", "{tmp}/missing.safetensors",
                            "--out", "{tmp}/c.safetensors"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_argument_is_one_line_not_a_traceback(command, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GYM_DIAMOND_TRACEBACK", raising=False)
    main = importlib.import_module(f"training.{command}").main
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(tmp=tmp_path) for arg in COMMANDS[command]])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, (command, exit_info.value.code)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (command, err)
    assert "NoSuchGame" in lines[0] or "missing" in lines[0] or "no-run" in lines[0], (command, lines[0])


def test_a_traceback_on_request(tmp_path, monkeypatch):
    from training.agents.evaluate import main

    monkeypatch.setenv("GYM_DIAMOND_TRACEBACK", "1")
    with pytest.raises(ValueError, match="unknown Atari game 'NoSuchGame'"):
        main(["--game", "NoSuchGame", "--agent", "random"])  # for a bug report: the whole story


def test_a_bug_keeps_its_traceback_while_a_refusal_is_one_line(capsys, monkeypatch):
    import numpy as np

    from gym_diamond.errors import UserError
    from training.runtime.cli import user_errors

    monkeypatch.delenv("GYM_DIAMOND_TRACEBACK", raising=False)

    @user_errors
    def buggy() -> None:
        np.zeros(3).reshape(2, 2)  # numpy's ValueError: our mistake, not the user's

    with pytest.raises(ValueError, match="reshape"):
        buggy()

    @user_errors
    def refusing() -> None:
        raise UserError("--steps 0 trains nothing")

    with pytest.raises(SystemExit) as stopped:
        refusing()
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: --steps 0 trains nothing\n"


OTHER_NAMES = {"--envs": "--num-envs", "--world-model": "--checkpoint", "--config": "--model",
               "--ppo-kwargs": "--algo-kwargs"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_one_name_per_concept_across_the_commands(command, capsys):
    main = importlib.import_module(f"training.{command}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for other, name in OTHER_NAMES.items():
        assert f"{other} " not in help_text + " ", f"{command} says {other} where the others say {name}"
    if "--device" in help_text:  # the same default everywhere: CUDA when there is one
        assert "default: cuda if available, else cpu" in help_text, command


ALGO_KWARGS_COMMANDS = {  # the commands that build an SB3 algorithm from --algo-kwargs
    "agents.sb3": ["--checkpoint", "{tmp}/x.safetensors", "--steps", "10"],
    "gates": ["--checkpoint", "{tmp}/x.safetensors", "--test-data", "{tmp}/data", "--out", "{tmp}/gates"],
    "ppo_real": ["--game", "Pong", "--steps", "1", "--out", "{tmp}/ppo"],
}


@pytest.mark.parametrize("command", sorted(ALGO_KWARGS_COMMANDS))
@pytest.mark.parametrize("bad", ['[1, 2]', '{"n_steps": '])
def test_algo_kwargs_that_are_not_a_json_object_are_one_line(command, bad, tmp_path, capsys):
    main = importlib.import_module(f"training.{command}").main
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(tmp=tmp_path) for arg in ALGO_KWARGS_COMMANDS[command]] + ["--algo-kwargs", bad])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "argument --algo-kwargs" in lines[-1], (command, lines)
    assert not any("Traceback" in line for line in lines)
