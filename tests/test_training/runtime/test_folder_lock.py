"""training.runtime.run_folder.FolderLock: a dataset or run folder has one writer; a second fails at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from training.data.collect import main as collect
from training.runtime.run_folder import FolderInUseError, FolderLock

HOLD = """
import sys, time
from training.runtime.run_folder import FolderLock
FolderLock(sys.argv[1], "collection").acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path / "data"; killed (by its pid) at the end."""
    folder = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_second_writer_is_told_who_holds_the_folder(holder):
    folder, proc = holder
    with pytest.raises(FolderInUseError, match=rf"in use by another run \(pid {proc.pid}\)"):
        FolderLock(folder).acquire()
    os.kill(proc.pid, signal.SIGKILL)  # killed as in life: the kernel drops the lock with its process
    proc.wait()
    with FolderLock(folder) as lock:
        assert (folder / ".lock").read_text() == str(os.getpid())
        with FolderLock(folder):  # re-entrant within one process
            pass
        assert lock._key is not None  # the inner release left the outer hold
    other = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(folder)],
                           capture_output=True, text=True)
    assert other.returncode == 0  # released: another process takes it


def test_collect_into_a_folder_being_written_fails_in_one_line(holder, capsys):
    folder, proc = holder
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        collect(["--game", "Pong", "--out", str(folder), "--steps", "50"])
    assert exit_info.value.code == 2 and time.perf_counter() - started < 30  # at once, nothing collected
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"pid {proc.pid}" in err and err.count("\n") == 1
    assert not (folder / "index.json").exists()


def test_every_training_run_folder_takes_the_lock(holder):
    from training.agents.dream_actor_critic import DreamTrainingSettings, train_actor_critic_in_dream
    from training.agents.sb3 import train_sb3_agent
    from training.pipeline import Pipeline
    from training.world_model.run import train_world_model

    folder, proc = holder
    runs = {
        "world_model": lambda: train_world_model("Pong", folder / "nowhere", folder, 1),
        "sb3_agent": lambda: train_sb3_agent(folder / "nowhere.safetensors", steps=1, out=folder),
        "pipeline": lambda: Pipeline("Pong", folder, "micro", progress=False),
        "dream_actor_critic": lambda: train_actor_critic_in_dream(
            None, None, folder, DreamTrainingSettings(updates=1, train_in="real"), game="Pong", progress=False),
    }
    for run in runs.values():
        with pytest.raises(FolderInUseError, match=f"pid {proc.pid}"):
            run()


def test_a_pipeline_only_inspected_gives_its_folder_up_when_closed(tmp_path):
    from training.pipeline import Pipeline

    folder = tmp_path / "run"

    def another_process_takes_it() -> bool:
        proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(folder)],
                              capture_output=True, text=True)
        return proc.returncode == 0

    pipeline = Pipeline("Pong", folder, "micro", progress=False)
    assert not another_process_takes_it()
    pipeline.close()
    assert another_process_takes_it()
    with Pipeline("Pong", folder, "micro", progress=False):
        assert not another_process_takes_it()
    assert another_process_takes_it()
