"""benchmarks/lead.sh GAME train: which runs it starts, and from where, with the training itself stood in for."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, make_tiny_checkpoint

from training.runtime.run_folder import guard_run_settings

LEADS = ROOT / "benchmarks" / "leads"
LEAD = LEADS / "Pong.safetensors"

# stands in for the interpreter: records the training and closed-loop commands, skips the data collection, snapshots
# a run as the checkpoint SNAPSHOT names, runs the rest
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, shutil, sys
args = sys.argv[1:]
if args[:2] in (["-m", "training.world_model"], ["-m", "training.closed_loop"]):
    with open(os.environ["RECORD"], "a") as record:
        record.write(json.dumps(args) + "\\n")
    sys.exit(0)
if args[:2] == ["-m", "training.world_model.snapshot"]:
    shutil.copy(os.environ["SNAPSHOT"], args[args.index("--out") + 1])
    sys.exit(0)
if args[:2] == ["-m", "training.data.collect"]:
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *args])
"""


def run_lead(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``lead.sh *args`` with the stand-in interpreter (``env`` added to its own): its process and the record of the
    commands it ran (this call's only)."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    record = tmp_path / "commands.jsonl"
    record.unlink(missing_ok=True)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "lead.sh"), *args],
                          env={**os.environ, "PYTHON": str(fake), "RECORD": str(record), **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, record


def started_runs(tmp_path: Path, runs: Path, game: str = "Pong", **env: str) -> dict[str, list[str]]:
    """The training commands ``lead.sh GAME train RUNS`` starts, by run folder name (``env`` added to its own)."""
    proc, record = run_lead(tmp_path, game, "train", str(runs), **env)
    expected = proc.stdout.count("started (pid")
    deadline = time.monotonic() + 60  # the runs go to the background
    while time.monotonic() < deadline and (not record.exists() or len(record.read_text().splitlines()) < expected):
        time.sleep(0.2)
    commands = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    assert len(commands) == expected
    return {Path(args[args.index("--out") + 1]).name: args for args in commands}


def judged(tmp_path: Path, *extra: str, **env: str) -> list[str]:
    """The closed-loop command ``lead.sh Pong judge RUNS *extra`` runs on the committed lead standing in for the runs'
    last saves."""
    _, record = run_lead(tmp_path, "Pong", "judge", str(tmp_path / "runs"), *extra, SNAPSHOT=str(LEAD), **env)
    (command,) = [json.loads(line) for line in record.read_text().splitlines()]
    return command


def origin(args: list[str], flag: str = "--init-from") -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


DENOISER = "denoiser-erasure"  # the lead's denoiser run, named for its recipe
BREAKOUT_REW_END = "rew-end-leadin-os3"  # Breakout's reward/termination run, named for its recipe


@pytest.mark.skipif(not LEAD.exists(), reason="the committed Pong lead is what a new run starts from")
def test_a_new_lead_run_starts_from_the_committed_lead(tmp_path):
    runs = started_runs(tmp_path, tmp_path / "runs")
    assert Path(origin(runs[DENOISER])).resolve() == LEAD.resolve()
    assert "--branch-from" not in runs[DENOISER]
    assert "rew-end" not in runs  # the lead holds a trained reward/termination model


def test_a_run_begun_elsewhere_resumes_from_where_it_began(tmp_path):
    # the lead may be exported while a run goes on: resuming must not ask the run to have begun from it
    runs = tmp_path / "runs"
    run = runs / DENOISER
    run.mkdir(parents=True)
    # recorded as the trainer records a denoiser-only run's settings (init_from left out at its default)
    guard_run_settings(run, {"game": "Pong"}, phase="denoiser")
    args = started_runs(tmp_path, runs)[DENOISER]
    assert origin(args) is None and origin(args, "--branch-from") is None

    checkpoint = tmp_path / "an origin with spaces.safetensors"
    checkpoint.write_bytes(b"")
    for settings, flag, where in (({"init_from": str(checkpoint)}, "--init-from", str(checkpoint)),
                                  ({"branch_from": str(runs / "denoiser")}, "--branch-from", str(runs / "denoiser"))):
        (run / "config.json").unlink()
        guard_run_settings(run, {"game": "Pong", **settings}, phase="denoiser")
        args = started_runs(tmp_path, runs)[DENOISER]
        assert origin(args, flag) == where
        assert origin(args, ({"--init-from", "--branch-from"} - {flag}).pop()) is None


def test_the_lead_trains_in_bf16_only_where_the_cpu_has_bf16_units(tmp_path):
    from gym_diamond.acceleration import cpu_bf16_units

    args = started_runs(tmp_path, tmp_path / "runs")[DENOISER]
    assert origin(args, "--precision") == ("bf16" if cpu_bf16_units() else "fp32")
    assert origin(args, "--context-erasure") == "1.0"  # the recipe repairs the context (the court)
    chosen = started_runs(tmp_path, tmp_path / "runs-fp32", PRECISION="fp32")[DENOISER]
    assert origin(chosen, "--precision") == "fp32"


def test_a_game_without_a_lead_starts_both_networks_from_scratch_on_its_own_data(tmp_path):
    runs = started_runs(tmp_path, tmp_path / "runs", game="Breakout", LEAD=str(tmp_path / "no-lead.safetensors"))
    assert set(runs) == {"denoiser", BREAKOUT_REW_END}
    for args in runs.values():
        assert origin(args) is None and origin(args, "--branch-from") is None
        assert origin(args, "--game") == "Breakout"
        assert Path(origin(args, "--data")).name == "breakout-data"
    assert origin(runs["denoiser"], "--context-length") is None  # DIAMOND's 4 frames
    rew_end = runs[BREAKOUT_REW_END]
    assert "--rew-end-input-noise" not in rew_end  # noise hides a brick's few pixels
    assert origin(rew_end, "--steps") == "12000"  # at 3,000 it read 0.6 of the bricks and lives lost
    # a third of the lives lost show nothing on their last frame: more sequences that end one, with the steps before
    assert origin(rew_end, "--termination-oversampling") == "0.3" and origin(rew_end, "--termination-lead-in") == "10"
    pong = started_runs(tmp_path, tmp_path / "pong", LEAD=str(tmp_path / "no-lead.safetensors"))
    assert "--termination-lead-in" not in pong["rew-end"]


def test_breakouts_reward_model_goes_on_to_its_updates_from_its_own_run_or_from_the_lead(tmp_path):
    runs = tmp_path / "runs"
    run = runs / BREAKOUT_REW_END
    run.mkdir(parents=True)
    guard_run_settings(run, {"game": "Breakout"}, phase="rew_end")  # as the trainer records it
    no_lead = str(tmp_path / "no-lead.safetensors")
    for updates, restarted in ((10000, True), (12000, False)):  # its run stopped at 10,000, then finished
        make_tiny_checkpoint(run / "world_model.safetensors", provenance={"rew_end_steps": updates})
        started = started_runs(tmp_path, runs, game="Breakout", LEAD=no_lead)
        assert (BREAKOUT_REW_END in started) == restarted
        if restarted:  # resumed where it stopped: from its own state, not from a checkpoint
            args = started[BREAKOUT_REW_END]
            assert origin(args, "--steps") == "12000" and origin(args) is None
    lead = make_tiny_checkpoint(tmp_path / "lead.safetensors", provenance={"rew_end_steps": 8000, "denoiser_steps": 9})
    fresh = started_runs(tmp_path, tmp_path / "fresh", game="Breakout", LEAD=str(lead))
    assert origin(fresh[BREAKOUT_REW_END]) == str(lead) and origin(fresh["denoiser"]) == str(lead)  # both from it
    begun = tmp_path / "begun"  # a run begun from the lead resumes as it began (its settings record the origin)
    (begun / BREAKOUT_REW_END).mkdir(parents=True)
    guard_run_settings(begun / BREAKOUT_REW_END, {"game": "Breakout", "init_from": str(lead)}, phase="rew_end")
    assert origin(started_runs(tmp_path, begun, game="Breakout", LEAD=str(lead))[BREAKOUT_REW_END]) == str(lead)


@pytest.mark.skipif(not LEAD.exists(), reason="the committed Pong lead stands in for the runs' last saves")
def test_judge_plays_the_gates_closed_loop_with_the_euler_steps_and_start_given(tmp_path):
    from gym_diamond.checkpoint import read_metadata

    update = read_metadata(LEAD)["provenance"]["denoiser_steps"]
    default = judged(tmp_path)
    assert origin(default, "--steps") == "20000"  # the gate's own (training.gates), not a flattering shorter loop
    assert origin(default, "--denoising-steps") == "3" and "--sampler-start" not in default
    assert Path(origin(default, "--out")).name == f"closed-loop-{update}-k3.json"
    chosen = judged(tmp_path, "5", "sigma_max", JUDGE_STEPS="4000")
    assert origin(chosen, "--steps") == "4000"
    assert origin(chosen, "--denoising-steps") == "5" and origin(chosen, "--sampler-start") == "sigma_max"
    assert Path(origin(chosen, "--out")).name == f"closed-loop-{update}-k5-sigma_max.json"


def test_a_game_without_a_recipe_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "lead.sh"), "Boxing", "train", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no lead recipe for Boxing" in proc.stderr


def test_a_run_going_on_is_not_started_again_wherever_its_folder_lies_on_its_command_line(tmp_path):
    # Breakout's denoiser from scratch ends its command line with its folder: a second start would only be refused
    # by the folder's lock, after loading the data
    runs = tmp_path / "runs"
    going = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "--out", str(runs / "denoiser")])
    try:
        started = started_runs(tmp_path, runs, game="Breakout", LEAD=str(tmp_path / "no-lead.safetensors"))
    finally:
        going.kill()
        going.wait()
    assert set(started) == {BREAKOUT_REW_END}
