"""RunFolder: the one place a training run's folder rules live (lock, settings guard, logs, progress)."""

import re
from pathlib import Path

import pytest
from helpers import ROOT

from training.runtime.run_folder import RUN_CONFIG, FolderLock, RunFolder, RunSettingsError

TRAINERS = ["training/pipeline.py", "training/world_model/run.py", "training/agents/dream_actor_critic.py",
            "training/agents/sb3.py"]


def test_a_resume_with_other_settings_is_refused_naming_each_value(tmp_path):
    with RunFolder(tmp_path / "run", "test run") as folder:
        folder.guard({"lr": 1e-4, "steps": 10, "seed": 0}, may_grow=("steps",))
        assert folder.saved_settings() == {"lr": 1e-4, "steps": 10, "seed": 0}
        folder.guard({"lr": 1e-4, "steps": 20, "seed": 0}, may_grow=("steps",))  # a later total: the same run
        with pytest.raises(RunSettingsError, match=r"\(lr, seed\): lr: 0.0001 there, 0.001 now; seed: 0 there, 1 now"):
            folder.guard({"lr": 1e-3, "steps": 20, "seed": 1}, may_grow=("steps",))
    assert RunFolder(tmp_path / "new", "test run").saved_settings() is None


def test_a_resumed_log_drops_the_rows_past_the_saved_state(tmp_path):
    with RunFolder(tmp_path, "test run") as folder:
        log = folder.log("losses.csv")
        for step in (10, 20, 30):
            log.write({"step": step, "loss": 1.0 / step})
        assert [row["step"] for row in folder.log("losses.csv", resume_at=20).rows()] == [10, 20]
        epochs = folder.log("evaluate.csv")
        epochs.write({"epoch": 1, "score": 0.5})
        epochs.write({"epoch": 2, "score": 0.7})
        assert [row["epoch"] for row in folder.log("evaluate.csv", resume_at=1, key="epoch").rows()] == [1]


def test_a_reader_neither_locks_nor_rewrites(tmp_path):
    with RunFolder(tmp_path, "test run") as writer:
        writer.log("losses.csv").write({"step": 5, "loss": 0.1})
        writer.guard({"lr": 1e-4})
        reader = RunFolder(tmp_path, "test run", writer=False).open()  # a data-parallel run's other rank
        reader.guard({"lr": 1.0})  # the writer guards; a reader's settings are the writer's
        assert [row["step"] for row in reader.log("losses.csv", resume_at=0).rows()] == [5]
        assert reader.progress_bar(total=3).disable and not writer.progress_bar(total=3).disable
        assert writer.progress_bar(total=3, enabled=False).disable
        assert (tmp_path / RUN_CONFIG).exists()
    with FolderLock(tmp_path, "other"):  # the writer's lock is given up when its block ends
        pass


def test_every_trainer_keeps_its_folder_through_run_folder():
    """No second home: the trainers neither lock, guard, log nor draw a bar but through RunFolder."""
    for name in TRAINERS:
        text = (ROOT / name).read_text()
        assert "RunFolder(" in text, name
        found = re.findall(r"\b(FolderLock|guard_run_settings|CsvLog\(|progress_bar\(|RUN_CONFIG)", text.replace(
            "folder.progress_bar(", ""))
        assert found == [], f"{name}: {found}"
    assert not (Path(ROOT) / "training/runtime/files.py").read_text().count("class FolderLock")


def test_each_phase_of_a_run_is_held_to_its_own_settings(tmp_path):
    """The world model's networks trained together, then the reward model fine-tuned alone with its own sampling."""
    with RunFolder(tmp_path, "test run") as folder:
        folder.guard({"termination_oversampling": 0.0}, phase="both")
        folder.guard({"termination_oversampling": 0.1}, phase="rew_end")  # a new phase: its own settings
        folder.guard({"termination_oversampling": 0.0}, phase="both")  # resuming the first phase
        with pytest.raises(RunSettingsError, match=r"\(rew_end phase\).*0.1 there, 0.2 now"):
            folder.guard({"termination_oversampling": 0.2}, phase="rew_end")
        assert folder.saved_settings() == {"both": {"termination_oversampling": 0.0},
                                           "rew_end": {"termination_oversampling": 0.1}}
