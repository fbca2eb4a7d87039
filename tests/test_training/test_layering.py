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


def test_evaluation_constants_are_named_once():
    """Horizons 1/5/15, the 27,000-step real cap, the 1,000-step dream cap and the evaluation seeds' offset are
    each a named constant (FIDELITY_HORIZONS, REAL_EPISODE_CAP, DEFAULT_MAX_EPISODE_STEPS, EVALUATION_SEED_OFFSET);
    no module writes the number instead."""
    literal = re.compile(r"\(1, 5, 15\)|\[1, 5, 15\]|27_?000|max_episode_steps[^=\n]*= ?1_?000\b|"
                         r"default=1_?000\)|seed \+ 10_?000")
    found = []
    for package in ("training", "gym_diamond"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if literal.search(code) and not re.match(r"\s*[A-Z_]+ = ", code):  # the definitions themselves
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
