"""``import gym_diamond`` loads what a dream needs, not every library a user might pair it with."""

import json
import subprocess
import sys

PROBE = """
import json, sys
import gymnasium as gym
import gym_diamond
loaded = {m: m in sys.modules for m in ("stable_baselines3", "cv2", "ale_py", "training")}
registered = "DiamondDream/Pong-v0" in gym.registry and "DiamondDream/Boxing-v0" in gym.registry
from gym_diamond.envs import DreamSB3VecEnv  # on first use
after = {"stable_baselines3": "stable_baselines3" in sys.modules}
from gym_diamond.atari import game_action_meanings
game_action_meanings("Pong")
after["ale_py"] = "ale_py" in sys.modules
print(json.dumps({"before": loaded, "registered": registered, "after": after, "name": DreamSB3VecEnv.__name__}))
"""


def test_stable_baselines3_opencv_and_ale_py_load_on_first_use():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"before": {"stable_baselines3": False, "cv2": False, "ale_py": False, "training": False},
                    "registered": True, "after": {"stable_baselines3": True, "ale_py": True},
                    "name": "DreamSB3VecEnv"}
