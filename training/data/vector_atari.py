"""Batched real Atari games for fast data collection.

``make_vector_atari`` runs ``num_envs`` games with the same protocol as ``gym_diamond.atari.AtariEnv``
(4-frame action repeat, max-pool of the last two RGB frames, 64x64 area resize, no-op starts, no
sticky actions, minimal action set) on ale-py's native C++ vector environment, which steps the games
in its own threads and does the preprocessing in C++.

Why the native backend: measured on this machine (2 CPU cores, shared with other jobs; Pong, random
actions, ``python -m training.data.vector_atari --benchmark``), in agent steps per second, all environments together:

    num_envs   native AtariVectorEnv   SyncVectorEnv(AtariEnv)   AsyncVectorEnv(AtariEnv)
           1                    1967                      2146                      1517
           2                    4152                      2247                      2707
           4                    4751                      2262                      2894
           8                    4992                      2205                      2663

One game is as fast either way (the pipeline's collection uses one); the native backend pulls ahead
from two games on.

The native frames are pixel-identical to ``AtariEnv``'s for the same no-ops and actions, the first
observation of a game included (the last no-op frame alone, as in DIAMOND's wrapper); the action set
is the same minimal one. Remaining differences from ``AtariEnv``, all at episode borders: ale-py draws
0..noop_max-1 no-op frames at reset (``AtariEnv`` and DIAMOND: 1..noop_max; ale-py offers no way to
shift it); when a game ends in the middle of a 4-frame step ale-py returns the
previous observation as the final one (as DIAMOND's own wrapper does; ``AtariEnv`` returns the true last
frame); a life loss on the step that ends the game is inferred from the lives before that step.

Vector contract: observations uint8 ``(n, 64, 64, 3)``; ``autoreset_mode`` SAME_STEP: when an episode
ends, ``obs`` is already the next episode's first observation and ``infos["final_obs"]`` (uint8
``(n, 64, 64, 3)``, valid where ``infos["_final_obs"]``) holds the ended episode's last one. Infos always
hold ``"lives"`` (int32) and ``"life_loss"`` (bool, a life was lost during this step). With
``done_on_life_loss=True`` a life loss terminates the episode but the game goes on, so the next
episode's first observation equals the final one (as ``AtariEnv.reset`` does after a life loss);
only a game over (or ALE's 108,000-frame limit) starts a new game with no-ops. Rewards are raw game
scores (float32, not clipped).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ale_py import Action
from ale_py.vector_env import AtariVectorEnv
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gym_diamond.atari import FRAME_SIZE, FRAME_SKIP, NOOP_MAX, game_to_name, game_to_rom_id
from gym_diamond.errors import UserError

__all__ = ["NativeAtariVectorEnv", "make_vector_atari"]


class NativeAtariVectorEnv(VectorEnv):
    """``num_envs`` real games on ale-py's ``AtariVectorEnv``, DIAMOND's preprocessing, life losses."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        done_on_life_loss: bool = False,
        noop_max: int = NOOP_MAX,
        seed: int | None = None,
        num_threads: int = 0,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise UserError(f"num_envs must be a positive int, got {num_envs!r}")
        if not isinstance(noop_max, (int, np.integer)) or noop_max < 0:
            raise UserError(f"noop_max must be an int >= 0, got {noop_max!r}")
        num_envs, noop_max = int(num_envs), int(noop_max)
        self.game = game_to_name(game)
        self.num_envs = num_envs
        self.done_on_life_loss = done_on_life_loss
        self._env = AtariVectorEnv(
            game_to_rom_id(game),
            num_envs,
            num_threads=num_threads,
            repeat_action_probability=0.0,
            full_action_space=False,
            autoreset_mode=AutoresetMode.SAME_STEP,
            img_height=FRAME_SIZE,
            img_width=FRAME_SIZE,
            grayscale=False,
            stack_num=1,
            frameskip=FRAME_SKIP,
            maxpool=True,
            noop_max=max(noop_max, 1),  # ale-py plays 0..noop_max-1 no-ops; 1 means none
            episodic_life=False,  # it would restart the game at each life loss; we end episodes ourselves
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=False,
        )
        self.single_observation_space = spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        self.single_action_space = spaces.Discrete(self._env.single_action_space.n)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._lives = np.zeros(num_envs, np.int32)
        self._pending_seed = seed

    def get_action_meanings(self) -> list[str]:
        """Names of the minimal action set, in action order (the same as ``AtariEnv``'s)."""
        names = {action: name for name, action in Action.__members__.items()}
        return [names[action] for action in self._env.ale.get_action_set()]

    def reset(
        self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new games; an int seed gives game i the seed ``seed + i`` (ale-py's convention).

        The first reset without a seed uses the constructor's ``seed``.
        """
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        if isinstance(seed, np.integer):
            seed = int(seed)  # ale-py accepts only a Python int or an array
        obs, info = self._env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, bool) if options is None else options.get("reset_mask", True)
        self._lives = np.where(mask, info["lives"], self._lives).astype(np.int32)
        return obs[:, 0], self._infos(info, np.zeros(self.num_envs, bool))

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,):
            raise UserError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        obs, rewards, terminated, truncated, info = self._env.step(actions)
        obs = obs[:, 0]
        lives = info["lives"]
        ended = terminated | truncated
        # After a game over ale-py has already restarted the game, so its lives are the new game's:
        # a game over with lives left before the step counts as losing the last one.
        life_loss = np.where(ended, terminated & (self._lives > 0), lives < self._lives)
        self._lives = lives.astype(np.int32)
        infos = self._infos(info, life_loss)
        if ended.any():
            infos["final_obs"] = np.array(info["final_obs"][:, 0])
            infos["_final_obs"] = ended
        if self.done_on_life_loss:
            continued = life_loss & ~ended  # the game goes on: the next episode starts from this frame
            if continued.any():
                if "final_obs" not in infos:
                    infos["final_obs"] = np.zeros_like(obs)
                infos["final_obs"][continued] = obs[continued]
                infos["_final_obs"] = ended | continued
                terminated = terminated | continued
        return obs, rewards.astype(np.float32), terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        self._env.close(**kwargs)

    def _infos(self, info: dict[str, Any], life_loss: np.ndarray) -> dict[str, Any]:
        return {
            "lives": self._lives.copy(),
            "life_loss": life_loss,
            "episode_frame_number": info["episode_frame_number"],
        }


def make_vector_atari(
    game: str,
    num_envs: int,
    *,
    done_on_life_loss: bool = True,
    seed: int | None = None,
    noop_max: int = NOOP_MAX,
    num_threads: int = 0,
) -> NativeAtariVectorEnv:
    """``num_envs`` real games (see the module docstring for the contract).

    ``seed`` seeds the first ``reset()`` (game i gets ``seed + i``); call ``reset()`` before stepping.
    ``done_on_life_loss`` defaults to True, the training protocol (data collection); evaluation wants
    False. ``num_threads=0`` lets ale-py use one thread per core.
    """
    return NativeAtariVectorEnv(
        game, num_envs, done_on_life_loss=done_on_life_loss, noop_max=noop_max, seed=seed, num_threads=num_threads
    )


def _benchmark(game: str, counts: list[int], steps: int, repeats: int) -> None:
    """Print agent steps/s (best of ``repeats``) of the native backend and of gymnasium's Sync/Async
    vectors over ``AtariEnv``; the repeats are interleaved so that load from other jobs hits all alike."""
    import time

    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    from gym_diamond.atari import AtariEnv

    def run(env: VectorEnv, n: int) -> float:
        env.reset(seed=0)
        actions = np.random.default_rng(0).integers(env.single_action_space.n, size=(steps, n))
        env.step(actions[0])  # start-up costs (async workers) out of the timing
        start = time.perf_counter()
        for a in actions[1:]:
            env.step(a)
        rate = (steps - 1) * n / (time.perf_counter() - start)
        env.close()
        return rate

    def atari() -> AtariEnv:
        return AtariEnv(game, done_on_life_loss=True)

    backends = {
        "native": lambda n: make_vector_atari(game, n),
        "sync": lambda n: SyncVectorEnv([atari] * n, autoreset_mode=AutoresetMode.SAME_STEP),
        "async": lambda n: AsyncVectorEnv([atari] * n, autoreset_mode=AutoresetMode.SAME_STEP),
    }
    print(f"{game}, agent steps/s of all envs together, best of {repeats}")
    print("num_envs " + " ".join(f"{name:>7}" for name in backends))
    for n in counts:
        best = dict.fromkeys(backends, 0.0)
        for _ in range(repeats):
            for name, make in backends.items():
                best[name] = max(best[name], run(make(n), n))
        print(f"{n:8d} " + " ".join(f"{rate:7.0f}" for rate in best.values()), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Measure the vector backends' throughput.")
    parser.add_argument("--benchmark", "--bench", action="store_true", help="run the benchmark")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=1000, help="vector steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.benchmark:
        _benchmark(args.game, args.num_envs, args.steps, args.repeats)
    else:
        parser.print_help()
