"""The real environment behind a dream: an Atari game played by DIAMOND's protocol, or any Gymnasium environment.

Every stage that touches the real thing (collection, evaluation, an agent trained on real steps) needs the same
answers: which actions there are, a vector env to collect from, an env to judge agents in. ``RealEnvironment``
gives them for both kinds, so that the pipeline, the evaluation command and the agents' trainers take an
Atari game (``RealEnvironment(game="Pong")``) and a MiniGrid maze
(``RealEnvironment(env_id="minigrid:MiniGrid-Empty-6x6-v0", wrappers=("minigrid.wrappers:RGBImgObsWrapper",))``)
alike. A world model records where its data came from (``training.data.collect``'s log in its provenance), and
``RealEnvironment.of_checkpoint`` reads it back, so any checkpoint can be judged in its own environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name

__all__ = ["RealEnvironment", "add_environment_arguments", "environment_from_arguments"]


@dataclass(frozen=True)
class RealEnvironment:
    """An Atari ``game`` or a Gymnasium ``env_id`` (``MODULE:ID`` imports MODULE first) with its frames' source
    (``observation``, ``training.data.any_env``), ``wrappers`` given as ``MODULE:CLASS`` specs and ``make_kwargs``
    for ``gym.make`` (JSON values, e.g. MiniGrid's ``{"highlight": false}``)."""

    game: str | None = None
    env_id: str | None = None
    observation: str = "auto"
    wrappers: tuple[str, ...] = ()
    make_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.game is None) == (self.env_id is None):
            raise UserError("name the real environment once: an Atari game (--game) or a Gymnasium id (--env-id)")
        object.__setattr__(self, "wrappers", tuple(self.wrappers))
        if self.game is not None:
            from gym_diamond.atari import game_to_name

            if self.observation != "auto" or self.wrappers or self.make_kwargs:
                raise UserError("--observation, --wrapper and --env-kwargs apply to --env-id environments, not Atari "
                                "games")
            object.__setattr__(self, "game", game_to_name(self.game))  # a misspelt game names its close matches
        else:
            from training.data.any_env import OBSERVATIONS, check_env_id

            if self.observation not in OBSERVATIONS:
                raise UserError(f"observation must be one of {OBSERVATIONS}, got {self.observation!r}")
            check_env_id(self.env_id)

    @classmethod
    def of_checkpoint(cls, game: str, provenance: dict[str, Any]) -> RealEnvironment:
        """The environment a checkpoint's data was collected in: the one its pipeline run names, else the last
        ``--env-id`` run of its collection log, else the Atari game it names."""
        described = provenance.get("environment")
        if described:
            return cls(**{k: tuple(v) if k == "wrappers" else v for k, v in described.items()})
        for run in reversed(provenance.get("data_collection") or []):
            if run.get("env_id"):
                return cls(env_id=run["env_id"], observation=run.get("observation", "auto"),
                           wrappers=tuple(run.get("wrappers") or ()), make_kwargs=run.get("make_kwargs") or {})
        if atari_game_name(game) is None:
            raise UserError(f"the checkpoint's game {game!r} is no Atari game and its provenance does not say which "
                            f"Gymnasium environment its data came from: name it (--env-id, --wrapper, --observation)")
        return cls(game=game)

    @property
    def is_atari(self) -> bool:
        return self.game is not None

    @property
    def name(self) -> str:
        """The name datasets and checkpoints carry: the Atari game, or the id without its module."""
        return self.game if self.game is not None else self.env_id.rpartition(":")[2]

    def describe(self) -> dict[str, Any]:
        """JSON-ready, for run configs and reports."""
        if self.is_atari:
            return {"game": self.game}
        described = {"env_id": self.env_id, "observation": self.observation, "wrappers": list(self.wrappers)}
        if self.make_kwargs:  # left out when empty: as environments were described before the option
            described["make_kwargs"] = dict(self.make_kwargs)
        return described

    def action_meanings(self) -> list[str]:
        if self.is_atari:
            from gym_diamond.atari import game_action_meanings

            return game_action_meanings(self.game)
        from training.data.any_env import env_action_meanings

        return env_action_meanings(self.env_id, **self.make_kwargs)

    def _wrappers(self) -> Sequence[Any]:
        from training.runtime.cli import import_object

        return [import_object(spec) for spec in self.wrappers]

    def collector_env(self, num_envs: int, *, seed: int | None = None, life_loss: bool = True) -> gym.vector.VectorEnv:
        """``num_envs`` environments for ``training.data.collect.Collector`` (uint8 64x64 frames, SAME_STEP autoreset).

        Atari: DIAMOND's training protocol, an episode ending at each life loss unless ``life_loss`` is False.
        """
        if self.is_atari:
            from training.data.vector_atari import make_vector_atari

            return make_vector_atari(self.game, num_envs, done_on_life_loss=life_loss, seed=seed)
        from training.data.any_env import make_vector_env

        return make_vector_env(self.env_id, num_envs, observation=self.observation, seed=seed,
                               wrappers=self._wrappers(), **self.make_kwargs)

    def eval_env(self) -> gym.Env:
        """One environment to judge an agent in: full episodes (Atari: to game over), uint8 64x64 frames."""
        if self.is_atari:
            from gym_diamond.atari import make_atari_env

            return make_atari_env(self.game)
        from training.data.any_env import make_env

        return make_env(self.env_id, observation=self.observation, wrappers=self._wrappers(), **self.make_kwargs)


def add_environment_arguments(parser: argparse.ArgumentParser, *, game_default: str | None = None,
                              required: bool = True) -> None:
    """``--game`` or ``--env-id`` (with ``--observation`` and ``--wrapper``), the same in every command; one of them
    is ``required`` unless ``game_default`` names a game."""
    from training.data.any_env import OBSERVATIONS
    from training.runtime.cli import json_object

    source = parser.add_mutually_exclusive_group(required=required and game_default is None)
    source.add_argument("--game", default=game_default,
                        help="an Atari game, played with DIAMOND's protocol, e.g. Breakout"
                             + (f" (default: {game_default})" if game_default else ""))
    source.add_argument("--env-id", help="any registered Gymnasium environment with RGB image observations (or "
                                         "renders) and discrete actions; 'module:Id' imports the module first, e.g. "
                                         "minigrid:MiniGrid-Empty-5x5-v0")
    parser.add_argument("--observation", choices=OBSERVATIONS, default="auto",
                        help="--env-id: frames from the observation (an RGB image, or a Dict's 'image' entry) or "
                             "from render() (rgb_array)")
    parser.add_argument("--wrapper", action="append", default=[], metavar="MODULE:CLASS",
                        help="--env-id: a wrapper applied before the frames are read (repeatable), e.g. "
                             "minigrid.wrappers:RGBImgObsWrapper")
    parser.add_argument("--env-kwargs", type=json_object, default={}, metavar="JSON",
                        help="--env-id: keyword arguments of gym.make, a JSON object, e.g. '{\"highlight\": false}' "
                             "(MiniGrid without its view highlight)")


def environment_from_arguments(args: argparse.Namespace) -> RealEnvironment:
    """The ``RealEnvironment`` that ``add_environment_arguments``' flags name."""
    return RealEnvironment(game=args.game if args.env_id is None else None, env_id=args.env_id,
                           observation=args.observation, wrappers=tuple(args.wrapper), make_kwargs=args.env_kwargs)
