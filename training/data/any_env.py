"""Real play in any registered Gymnasium environment with image observations and discrete actions.

Why: DIAMOND's world model learns from uint8 ``(64, 64, 3)`` RGB frames and integer actions, which need
not come from Atari. ``make_vector_env`` turns any env id into the vector env that
``training.data.collect.Collector`` collects from, with frames made exactly as ``gym_diamond.atari.AtariEnv``
makes them (``gym_diamond.atari.resize_frame``: area interpolation).

Where the frame comes from (``observation``):

* ``"auto"``: the observation itself when it is an RGB image (a ``Box`` of uint8 ``(H, W, 3)``), or the
  ``"image"`` entry of a ``Dict`` observation (MiniGrid with ``minigrid.wrappers.RGBImgObsWrapper``);
* ``"render"``: the env's ``render()`` in ``"rgb_array"`` mode, for envs whose observations are not images
  (CartPole's state vector): the agent then sees what a person would.

MiniGrid's own ``"image"`` is a 7x7x3 uint8 *symbolic* grid (object, colour, state ids), not pixels: wrap
the env with ``minigrid.wrappers.RGBImgObsWrapper`` (``wrappers=[RGBImgObsWrapper]``); ``ImageFrames`` warns
about observed images under 16 pixels a side.

Actions must be ``Discrete`` (starting at 0): the world model conditions on a discrete action.
Episodes end on the env's own ``terminated``/``truncated``; there are no life losses (the infos carry no
``"life_loss"``, which ``Collector`` records as False).

This module imports no env package: register your env's ids yourself before calling it (e.g.
``import minigrid`` registers the ``MiniGrid-*`` ids, ``import ale_py`` the ``ALE/*`` ones).

Example::

    import minigrid
    from minigrid.wrappers import RGBImgObsWrapper

    env = make_vector_env("MiniGrid-Empty-5x5-v0", 4, seed=0, wrappers=[RGBImgObsWrapper])
    Collector(env, EpisodeDataset("runs/minigrid/data"), RandomAgent(env.single_action_space.n)).collect(1000)
"""

from __future__ import annotations

import enum
import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from gym_diamond.atari import FRAME_SIZE, resize_frame
from gym_diamond.errors import UserError

__all__ = ["OBSERVATIONS", "ImageFrames", "env_action_meanings", "make_env", "make_vector_env"]

OBSERVATIONS = ("auto", "render")  # where ImageFrames takes its frame from: the observation, or render()

Wrapper = Callable[[gym.Env], gym.Env]
MIN_IMAGE_SIDE = 16  # smaller "images" are likely symbolic grids (MiniGrid's 7x7x3 encoding): warned about


def _check_discrete(space: spaces.Space) -> spaces.Discrete:
    """The action space, if the world model can condition on it (Discrete from 0); else ValueError."""
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise UserError(f"action space {space} starts at {int(space.start)}: only Discrete actions "
                            f"0..n-1 are supported (the collected actions are indices from 0)")
        return space
    if isinstance(space, spaces.Box):
        raise UserError(f"continuous actions ({space}) are not supported: DIAMOND's world model conditions on "
                        f"discrete actions")
    raise UserError(f"action space {space} is not supported: DIAMOND's world model conditions on one discrete "
                    f"action (a Discrete space)")


def _is_rgb_box(space: spaces.Space) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] == 3)


def _check_image_box(space: spaces.Space, what: str) -> None:
    """ValueError naming the shape when ``space`` is a uint8 image but not 3-channel RGB."""
    if isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3) \
            and not _is_rgb_box(space):
        raise UserError(f"{what} {space} is an image of shape {space.shape}, not 3-channel RGB (H, W, 3): "
                        f"DIAMOND's frames are RGB; pass observation='render' to use the env's rgb_array renders")


def _image_key(space: spaces.Space) -> str | None:
    """How ``observation="auto"`` finds the frame: None for the observation itself, ``"image"`` for that entry."""
    if _is_rgb_box(space):
        return None
    _check_image_box(space, "observation space")
    if isinstance(space, spaces.Dict):
        if "image" not in space.spaces:
            raise UserError(f"Dict observation space with keys {list(space.spaces)} has no 'image' entry; "
                            f"pass observation='render' to use the env's rgb_array renders")
        image = space.spaces["image"]
        if _is_rgb_box(image):
            return "image"
        _check_image_box(image, "the 'image' entry")
        raise UserError(f"the 'image' entry {image} of the Dict observation space is not an RGB image "
                        f"(uint8 (H, W, 3)); pass observation='render' to use the env's rgb_array renders")
    raise UserError(f"observation space {space} is not an RGB image (uint8 (H, W, 3)) nor a Dict with an 'image' "
                    f"entry; pass observation='render' to use its rgb_array renders")


class ImageFrames(gym.ObservationWrapper):
    """An env's observations as uint8 ``(size, size, 3)`` frames, resized as Atari frames are.

    Why a wrapper: ``Collector`` and the world model see only frames, so the env's own observation
    (a Dict, a state vector) is replaced by its picture; see the module docstring for ``observation``.
    Raises ``ValueError`` for envs the world model cannot learn (non-RGB images, non-Discrete actions).
    """

    def __init__(self, env: gym.Env, *, size: int = FRAME_SIZE, observation: str = "auto") -> None:
        super().__init__(env)
        if observation not in OBSERVATIONS:
            raise UserError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise UserError(f"size must be a positive int, got {size!r}")
        _check_discrete(env.action_space)
        self.size, self.mode = int(size), observation
        self._key: str | None = None
        if observation == "auto":
            self._key = _image_key(env.observation_space)
            image = env.observation_space if self._key is None else env.observation_space[self._key]
            if min(image.shape[:2]) < MIN_IMAGE_SIDE:
                warnings.warn(f"the observed image {image} is under {MIN_IMAGE_SIDE} pixels a side: if it is a "
                              f"symbolic encoding rather than pixels (MiniGrid's raw 'image' is), wrap the env "
                              f"with minigrid.wrappers.RGBImgObsWrapper or pass observation='render'",
                              stacklevel=2)
        elif env.render_mode != "rgb_array":
            raise UserError(f"observation='render' needs an env made with render_mode='rgb_array', "
                            f"got render_mode={env.render_mode!r}")
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        if self.mode == "render":
            frame = self.env.render()
            if frame is None:
                raise UserError("render() returned None: make the env with render_mode='rgb_array'")
        else:
            frame = observation if self._key is None else observation[self._key]
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise UserError(f"frames must be 3-channel RGB images (H, W, 3), got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise UserError(f"frames must be uint8 RGB images, got dtype {frame.dtype}")
        return resize_frame(np.ascontiguousarray(frame), self.size)


def make_env(
    env_id: str,
    *,
    frame_size: int = FRAME_SIZE,
    observation: str = "auto",
    wrappers: Sequence[Wrapper] = (),
    **make_kwargs: Any,
) -> gym.Env:
    """``gym.make(env_id, **make_kwargs)``, then ``wrappers`` in order, then ``ImageFrames``.

    ``wrappers`` (e.g. ``[minigrid.wrappers.RGBImgObsWrapper]``) are callables env -> env, applied before
    the frames are taken. ``observation="render"`` makes the env with ``render_mode="rgb_array"`` unless
    ``make_kwargs`` says otherwise. An unknown ``env_id`` raises gymnasium's own error.
    """
    if observation not in OBSERVATIONS:
        raise UserError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
    if observation == "render":
        make_kwargs.setdefault("render_mode", "rgb_array")
    env = gym.make(env_id, **make_kwargs)
    try:
        for wrap in wrappers:
            env = wrap(env)
        return ImageFrames(env, size=frame_size, observation=observation)
    except BaseException:
        env.close()
        raise


class _SeededSyncVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` whose first ``reset()`` without a seed uses the constructor's one (``Collector``
    resets without a seed, as ``make_vector_atari``'s env does)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], *, seed: int | None) -> None:
        super().__init__(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
        self._pending_seed = seed

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return super().reset(seed=seed, options=options)


def check_env_id(env_id: str) -> None:
    """Raise UserError, in one line that says how to name it, unless ``env_id`` is a registered environment.

    ``MODULE:ID`` imports MODULE first (gymnasium's own rule), which is how a package's ids get registered; an id
    whose package was not imported is the common mistake (``MiniGrid-Empty-6x6-v0`` for
    ``minigrid:MiniGrid-Empty-6x6-v0``).
    """
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)  # ModuleNotFoundError names the missing package
    try:
        gym.spec(name)
    except gym.error.Error as error:
        hint = ""
        if not module and isinstance(error, (gym.error.NamespaceNotFound, gym.error.NameNotFound)) and \
                "Did you mean" not in str(error):
            example = f"{name.split('-')[0].lower()}:{name}" if "/" not in name else f"MODULE:{name}"
            hint = f"; if a package registers it, name it MODULE:ID so that it is imported first, e.g. {example}"
        raise UserError(f"unknown Gymnasium environment {env_id!r} ({error}){hint}") from None


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    frame_size: int = FRAME_SIZE,
    observation: str = "auto",
    seed: int | None = None,
    wrappers: Sequence[Wrapper] = (),
    **make_kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id, ...)`` as a ``SyncVectorEnv`` with autoreset SAME_STEP.

    Observations are uint8 ``(num_envs, frame_size, frame_size, 3)``; an ended env's last frame is in
    ``infos["final_obs"]``. The first ``reset()`` uses ``seed`` (env i gets ``seed + i``) if given.
    """
    if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise UserError(f"num_envs must be a positive int, got {num_envs!r}")

    def make() -> gym.Env:
        return make_env(env_id, frame_size=frame_size, observation=observation, wrappers=wrappers,
                        **make_kwargs)

    return _SeededSyncVectorEnv([make] * int(num_envs), seed=seed)


def env_action_meanings(env_id: str, **make_kwargs: Any) -> list[str]:
    """The names of ``env_id``'s actions in action order, for logs and for people playing the dream.

    ALE-like envs tell them with ``get_action_meanings()``; MiniGrid envs with ``unwrapped.actions`` (an
    IntEnum: its member names in value order). Otherwise ``["ACTION_0", ..., "ACTION_{n-1}"]``.
    """
    env = gym.make(env_id, **make_kwargs)
    try:
        n = int(_check_discrete(env.action_space).n)
        base = env.unwrapped
        names: list[str] | None = None
        getter = getattr(base, "get_action_meanings", None)
        actions = getattr(base, "actions", None)
        if callable(getter):
            names = [str(name) for name in getter()]
        elif isinstance(actions, enum.EnumMeta) and issubclass(actions, enum.IntEnum):
            names = [member.name for member in sorted(actions, key=int)]
        if names is None or len(names) != n:
            names = [f"ACTION_{i}" for i in range(n)]
        return names
    finally:
        env.close()
