"""benchmarks/transfer.py: the dream's agent, random play and the real-step control, judged on the same episodes."""

import importlib.util
import json

import pytest
from helpers import ROOT

pytest.importorskip("minigrid")
pytestmark = pytest.mark.slow  # a whole pipeline and a control: `pytest -m "not slow"` skips it


def load_script():
    spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_agents_are_judged_on_the_same_episodes_and_the_control_sees_the_pipelines_real_steps(
        tmp_path, capsys, one_thread):
    out = tmp_path / "transfer"
    args = ["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
            "--preset", "micro", "--out", str(out), "--episodes", "3", "--dream-steps", "16"]
    load_script().main(args)
    summary = json.loads((out / "transfer.json").read_text())
    agents = summary["agents"]
    assert set(agents) == {"dream", "random", "real_control"}
    for record in agents.values():
        assert record["episodes"] == 3 and record["ci95"][0] <= record["mean"] <= record["ci95"][1]
        assert 0 <= record["success_ci95"][0] <= record["success"] <= record["success_ci95"][1] <= 1
    assert "dream_sign_rate" in agents["dream"] and "dream_sign_rate" not in agents["real_control"]
    # the control learnt from at least the real steps the world model saw, in whole updates of batch x 3 steps
    assert summary["real_steps"] <= agents["real_control"]["real_steps"] < summary["real_steps"] + 2 * 3
    assert (out / "learning_curve.png").stat().st_size > 5_000
    printed = capsys.readouterr().out
    assert printed.count("| minigrid:MiniGrid-Empty-5x5-v0 |") == 3 and "dream agent beats random" in printed
    load_script().main(args)  # every stage resumes: the finished run is judged again, nothing retrained
    assert json.loads((out / "transfer.json").read_text())["agents"]["real_control"] == agents["real_control"]
