"""The real Atari game with DIAMOND's Atari 100k protocol, as one Gymnasium environment.

Why it lives in ``gym_diamond``: dream environments start their dreams from real game frames, and
``gym_diamond`` must never import ``training``.

Protocol (DIAMOND's ``src/envs/atari.py`` and ``config/env/atari.yaml``): the emulator runs with
``frameskip=1`` and no sticky
actions; one agent step repeats the action for 4 emulator frames, max-pools the last two raw RGB
frames (Atari sprites flicker between frames) and resizes to 64x64 RGB with area interpolation;
reset plays 1..``noop_max`` no-op frames so that episodes do not all start from the same state, and
its observation is the last of those frames alone (nothing to max-pool it with, as in DIAMOND's wrapper).

Life losses: ``info["life_loss"]`` says whether a life was lost during the step. With
``done_on_life_loss=True`` (the training protocol) a life loss also sets ``terminated``, but the game
is not restarted: the following ``reset()`` continues the same game from where it is (as DIAMOND's
collector does), so an agent sees all its lives, each as one episode: that reset plays no no-ops and
returns the observation the life-loss step returned. Evaluation uses the default
``done_on_life_loss=False``: episodes end at game over (``truncated`` after ALE's 108,000-frame limit).

When a game ends in the middle of a 4-frame step, the observation is the max-pool of the last two
frames actually played (DIAMOND's wrapper, like ``training.data.vector_atari``'s vector env, repeats the previous
observation instead); otherwise frames are pixel-identical to ``training.data.vector_atari.make_vector_atari``'s.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import ale_py
import ale_py.roms
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_diamond.errors import UserError
from gym_diamond.games import normalise_game_name

__all__ = [
    "FRAME_SIZE",
    "FRAME_SKIP",
    "NOOP_MAX",
    "AtariEnv",
    "available_games",
    "game_to_ale_id",
    "game_to_name",
    "game_to_rom_id",
    "make_atari_env",
    "resize_frame",
]

FRAME_SIZE = 64
FRAME_SKIP = 4
NOOP_MAX = 30


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Shrink an RGB uint8 ``(H, W, 3)`` frame to ``(size, size, 3)`` with area interpolation, as DIAMOND.

    Public so that frames of other games (``training.data.any_env``) are made exactly as Atari's are.
    """
    import cv2  # here, so that importing gym_diamond does not load OpenCV

    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=1)
def _games() -> dict[str, tuple[str, str]]:
    """Map a normalised name to (CamelCase name, ROM id) for every game with an ``ALE/<Name>-v5`` id."""
    gym.register_envs(ale_py)
    games = {}
    for rom in ale_py.roms.get_all_rom_ids():
        name = rom.title().replace("_", "")  # how ale_py names its gym ids
        if f"ALE/{name}-v5" in gym.registry:  # multi-player-only ROMs have no id
            games[normalise_game_name(name)] = (name, rom)
    return games


def available_games() -> list[str]:
    """CamelCase names of the games ale-py ships and registers, e.g. ``["Adventure", ..., "Pong", ...]``."""
    return sorted(name for name, _ in _games().values())


def _lookup(game: str) -> tuple[str, str]:
    if not isinstance(game, str):
        raise TypeError(f"game must be a str such as 'Pong', got {type(game).__name__}: {game!r}")
    key = normalise_game_name(game)
    games = _games()
    found = games.get(key)
    if found is None:
        close = difflib.get_close_matches(key, list(games), n=5, cutoff=0.6)
        close = [games[c][0] for c in close]
        hint = f"; did you mean {', '.join(close)}?" if close else "; see gym_diamond.atari.available_games()"
        raise UserError(f"unknown Atari game {game!r}: expected a game ale-py ships, like 'Pong'{hint}")
    return found


def game_to_ale_id(game: str) -> str:
    """Gymnasium id of a game: "Pong", "pong" or "ALE/Pong-v5" -> "ALE/Pong-v5"."""
    return f"ALE/{_lookup(game)[0]}-v5"


def game_to_name(game: str) -> str:
    """CamelCase name of a game: "ms_pacman" or "ALE/MsPacman-v5" -> "MsPacman"."""
    return _lookup(game)[0]


def game_to_rom_id(game: str) -> str:
    """ale-py's snake_case ROM id of a game ("MsPacman" -> "ms_pacman"), as its vector env wants."""
    return _lookup(game)[1]


class AtariEnv(gym.Env):
    """One real Atari game: 64x64 RGB uint8 observations, 4-frame action repeat, no-op starts.

    ``info`` always holds ``"lives"`` and ``"life_loss"``; ``reset`` adds ``"noops"`` (how many no-op
    frames it played; 0 when it continued the game after a life loss).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}

    def __init__(
        self,
        game: str,
        *,
        done_on_life_loss: bool = False,
        noop_max: int = NOOP_MAX,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(noop_max, int) or noop_max < 0:
            raise UserError(f"noop_max must be an int >= 0, got {noop_max!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise UserError(f"render_mode must be one of {modes} or None, got {render_mode!r}")
        self.game = game_to_name(game)
        self.done_on_life_loss = done_on_life_loss
        self.noop_max = noop_max
        self.render_mode = render_mode
        gym.register_envs(ale_py)
        # The emulator itself: one frame per act, no sticky actions, minimal action set. We drive its
        # ALEInterface directly (fewer screen copies than stepping the gym env frame by frame).
        self._env = gym.make(
            game_to_ale_id(game),
            frameskip=1,
            repeat_action_probability=0.0,
            full_action_space=False,
            render_mode=render_mode,
            disable_env_checker=True,
        )
        self._ale_env = self._env.unwrapped
        self.ale = self._ale_env.ale
        self._action_set = self._ale_env._action_set
        self.action_space = spaces.Discrete(len(self._action_set))
        self.observation_space = spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        h, w = self.ale.getScreenDims()
        self._screens = np.zeros((2, h, w, 3), np.uint8)  # the last two raw frames, for max-pooling
        self._slot = 0  # which of the two buffers the next screen goes to
        self._last_obs = np.zeros(self.observation_space.shape, np.uint8)
        self._init_seed = seed
        self._lives = 0
        self._continue_game = False  # True after a life-loss termination: reset() goes on playing

    def get_action_meanings(self) -> list[str]:
        """Names of the minimal action set, in action order, e.g. ``["NOOP", "FIRE", "RIGHT", "LEFT"]``."""
        return self._ale_env.get_action_meanings()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new game with 1..noop_max no-op frames, or continue it after a life loss.

        Passing a seed always starts a new game. The first reset uses the constructor's seed if
        none is given.
        """
        if seed is None and self._init_seed is not None:
            seed = self._init_seed
        self._init_seed = None
        super().reset(seed=seed)
        if self._continue_game and seed is None and not self.ale.game_over():
            self._continue_game = False
            return self._last_obs.copy(), {"lives": self._lives, "life_loss": False, "noops": 0}
        self._continue_game = False
        self._env.reset(seed=seed)  # seeds the emulator too when a seed is given
        noops = int(self.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            self.ale.act(ale_py.Action.NOOP)
            if self.ale.game_over():  # the game ended during the no-ops: start it again without them
                self._env.reset()
                break
        # The first observation is the last frame alone: the other max-pool buffer is black.
        self._screens[:] = 0
        self._grab()
        self._lives = self.ale.lives()
        return self._observe(), {"lives": self._lives, "life_loss": False, "noops": noops}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Repeat ``action`` for 4 emulator frames (fewer if the game ends) and sum their rewards."""
        if not self.action_space.contains(action):
            raise UserError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        reward = 0.0
        action_id = self._action_set[int(action)]
        for _ in range(FRAME_SKIP):
            reward += self.ale.act(action_id)
            self._grab()
            if self.ale.game_over():  # game over or the 108k-frame limit
                break
        lives = self.ale.lives()
        life_loss = lives < self._lives
        self._lives = lives
        game_over = self.ale.game_over(with_truncation=False)
        truncated = self.ale.game_truncated() and not game_over
        terminated = game_over or (self.done_on_life_loss and life_loss)
        self._continue_game = terminated and not game_over
        return self._observe(), float(reward), terminated, truncated, {"lives": lives, "life_loss": life_loss}

    def render(self) -> np.ndarray | None:
        """The full-resolution (210, 160, 3) screen for "rgb_array"; ALE draws its own window for "human"."""
        if self.render_mode == "rgb_array":
            return self.ale.getScreenRGB()
        return None

    def close(self) -> None:
        self._env.close()

    def _grab(self) -> None:
        """Copy the current screen into the older of the two screen buffers."""
        self.ale.getScreenRGB(self._screens[self._slot])
        self._slot ^= 1

    def _observe(self) -> np.ndarray:
        """Max-pool the last two screens and shrink them to 64x64 (area interpolation, as DIAMOND)."""
        pooled = np.maximum(self._screens[0], self._screens[1])
        self._last_obs = resize_frame(pooled, FRAME_SIZE)
        return self._last_obs


def make_atari_env(
    game: str,
    *,
    done_on_life_loss: bool = False,
    noop_max: int = NOOP_MAX,
    seed: int | None = None,
    render_mode: str | None = None,
) -> AtariEnv:
    """The real game ``game`` ("Pong", "ALE/Pong-v5") with DIAMOND's preprocessing; see ``AtariEnv``."""
    return AtariEnv(
        game, done_on_life_loss=done_on_life_loss, noop_max=noop_max, seed=seed, render_mode=render_mode
    )


def game_action_meanings(game: str) -> list[str]:
    """The minimal action set of ``game`` as ALE names it (``["NOOP", "FIRE", ...]``)."""
    env = make_atari_env(game)
    try:
        return env.get_action_meanings()
    finally:
        env.close()
