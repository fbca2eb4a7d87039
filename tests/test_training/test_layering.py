"""training's subpackages import only gym_diamond and the stages before them; gym_diamond never imports training."""

import re
from pathlib import Path

from helpers import ROOT

STAGES = ["runtime", "data", "agents", "fidelity", "world_model", "diamond"]  # then the modules on top


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else len(STAGES)


def _imports(path: Path) -> list[str]:
    return re.findall(r"^\s*(?:from|import) ((?:training|gym_diamond|benchmarks)(?:\.\w+)*)", path.read_text(), re.M)


def test_no_stage_imports_a_later_one():
    upward = []
    for path in sorted((ROOT / "training").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        upward += [f"{module} -> {imported}" for imported in _imports(path)
                   if imported.startswith("benchmarks") or
                   (imported.startswith("training.") and _stage(imported) > _stage(module))]
    assert upward == []


def test_gym_diamond_imports_neither_training_nor_benchmarks():
    found = [f"{path.relative_to(ROOT)} -> {imported}" for path in sorted((ROOT / "gym_diamond").rglob("*.py"))
             for imported in _imports(path) if not imported.startswith("gym_diamond")]
    assert found == []
