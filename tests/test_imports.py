"""``import gym_diamond`` loads what a dream needs, not every library a user might pair it with."""

import json
import subprocess
import sys

PROBE = """
import json, sys
import gym_diamond
loaded = {m: m in sys.modules for m in ("stable_baselines3", "cv2")}
from gym_diamond.envs import DreamSB3VecEnv  # on first use
print(json.dumps({"before": loaded, "after": "stable_baselines3" in sys.modules, "name": DreamSB3VecEnv.__name__}))
"""


def test_stable_baselines3_and_opencv_load_on_first_use():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"before": {"stable_baselines3": False, "cv2": False}, "after": True, "name": "DreamSB3VecEnv"}
