"""``python -m training.diamond.importer``: DIAMOND's agent files become gym-diamond checkpoints.

    python -m training.diamond.importer --game Pong --diamond-checkpoint Pong.pt --out runs/Pong-diamond
    python -m training.diamond.importer --game Breakout --from-hub          # needs gym-diamond[hub] and a network

A DIAMOND agent file (its released ``atari_100k/models/<Game>.pt`` or a run's ``agent_epoch_*.pt``) is
read with ``torch.load(..., weights_only=True)`` only. Every network's config is inferred from the
tensor shapes. The imported agent then plays the real game to fill the start-context bank that our
dreams begin from. Written:

- ``--out DIR``: ``DIR/world_model.safetensors`` (``gym.make(..., checkpoint=...)``) and
  ``DIR/actor_critic.safetensors`` (``training.agents.checkpoints.load_actor_critic``);
- ``--install`` (implied by ``--from-hub`` without ``--out``): ``<Game>.safetensors`` and
  ``<Game>.actor_critic.safetensors`` in the folder ``gym.make("DiamondDream/<Game>-v0")`` searches
  (``$GYM_DIAMOND_HOME``, else the per-user cache, see ``gym_diamond.registration.user_dir``).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gym_diamond.atari import game_action_meanings, game_to_name, make_atari_env
from gym_diamond.checkpoint import StartBank, save_checkpoint
from gym_diamond.errors import UserError
from gym_diamond.nn.actor_critic import ActorCritic
from gym_diamond.registration import install_dir
from gym_diamond.world_model import WorldModel
from training.agents.checkpoints import save_actor_critic
from training.agents.evaluate import RANDOM_HUMAN_SCORES
from training.data.policies import ActorCriticAgent
from training.diamond.format import DiamondFormatError, check_diamond_state, from_diamond
from training.runtime.cli import user_errors
from training.runtime.progress import progress_bar

HUB_REPO = "eloialonso/diamond"
ATARI_100K_GAMES = sorted(RANDOM_HUMAN_SCORES)  # the games DIAMOND released a model for
DEFAULT_BANK_SIZE = 1000
CONTEXT_STRIDE = 4  # agent steps between two contexts taken from one game: nearby contexts are near copies
BANK_EPSILON = 0.01  # DIAMOND's collection epsilon: the agent's play, with a little exploration


def hub_filename(game: str) -> str:
    """The path of a game's agent file inside DIAMOND's Hugging Face repository."""
    return f"atari_100k/models/{game_to_name(game)}.pt"


def hub_url(game: str) -> str:
    return f"https://huggingface.co/{HUB_REPO}/resolve/main/{hub_filename(game)}"


def download_from_hub(game: str) -> Path:
    """Download (or find in the Hugging Face cache) DIAMOND's agent file for ``game``."""
    name = game_to_name(game)
    if name not in ATARI_100K_GAMES:
        raise UserError(f"DIAMOND released models for the 26 Atari 100k games only, not {name}: "
                        f"{', '.join(ATARI_100K_GAMES)}")
    manual = (f"or download {hub_url(name)} yourself and run: python -m training.diamond.importer --game {name} "
              f"--diamond-checkpoint {name}.pt --install")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise RuntimeError(f"--from-hub needs the optional huggingface_hub package: pip install "
                           f"'gym-diamond[hub]'; {manual}") from e
    try:
        return Path(hf_hub_download(repo_id=HUB_REPO, filename=hub_filename(name)))
    except Exception as e:  # offline, proxy, missing file: the library raises many types
        raise RuntimeError(f"could not download {hub_filename(name)} from {HUB_REPO} ({type(e).__name__}: {e}); "
                           f"offline? {manual}") from e


def load_diamond_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A DIAMOND agent state dict, read with ``weights_only=True`` (no code runs); errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: pass the agent file itself (e.g. {path}/Pong.pt)")
    if not path.is_file():
        raise FileNotFoundError(f"no DIAMOND agent file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign bytes (UnpicklingError, KeyError, ...)
        raise DiamondFormatError(f"{path} is not a DIAMOND agent file (torch.load with weights_only=True "
                                 f"refused it: {str(e).splitlines()[0]})") from e
    return check_diamond_state(state, str(path))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class BankCollection:
    bank: StartBank
    env_steps: int


def collect_start_bank(actor_critic: ActorCritic, game: str, size: int, *, seed: int = 0, num_envs: int = 8,
                       stride: int = CONTEXT_STRIDE, progress: bool = True) -> BankCollection:
    """``size`` real contexts of L = 4 frames (and the actions taken at them) from ``actor_critic``'s play.

    ``num_envs`` games run side by side; from each, a context is kept every ``stride`` steps once it
    has L frames of the current episode, so no context spans a reset.
    """
    if size < 1:
        raise UserError(f"the bank needs at least one context, got size={size}")
    L = 4
    envs = [make_atari_env(game, seed=seed + i) for i in range(num_envs)]
    agent = ActorCriticAgent(actor_critic, num_envs, epsilon=BANK_EPSILON, seed=seed)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    agent.reset(np.ones(num_envs, dtype=bool))
    history: list[list[tuple[np.ndarray, int]]] = [[] for _ in range(num_envs)]
    frames, actions = [], []
    steps = 0
    bar = progress_bar(total=size, desc=f"start contexts ({game_to_name(game)}, DIAMOND's agent)", disable=not progress)
    try:
        while len(frames) < size:
            chosen = agent.act(obs)
            restarted = np.zeros(num_envs, dtype=bool)
            for i, env in enumerate(envs):
                history[i] = history[i][-(L - 1):] + [(obs[i].copy(), int(chosen[i]))]
                if len(history[i]) == L and len(frames) < size and steps % stride == 0:
                    frames.append(np.stack([f for f, _ in history[i]]))
                    actions.append([a for _, a in history[i]])
                    bar.update(1)
                obs[i], _, terminated, truncated, _ = env.step(int(chosen[i]))
                if terminated or truncated:
                    obs[i] = env.reset()[0]
                    history[i], restarted[i] = [], True
            if restarted.any():
                agent.reset(restarted)
            steps += 1
    finally:
        bar.close()
        for env in envs:
            env.close()
    bank = StartBank(np.stack(frames), np.asarray(actions, dtype=np.int64))
    return BankCollection(bank, steps * num_envs)


@dataclass
class ImportResult:
    world_model: WorldModel
    actor_critic: ActorCritic
    paths: list[Path]
    seconds: float


def import_diamond(game: str, diamond_checkpoint: str | Path, *, out: str | Path | None = None,
                   install: bool = False, bank_size: int = DEFAULT_BANK_SIZE, seed: int = 0,
                   progress: bool = True, provenance: dict | None = None) -> ImportResult:
    """Convert a DIAMOND agent file into our world model and actor-critic files (see the module docstring)."""
    if out is None and not install:
        raise UserError("say where to write: out=DIR, install=True, or both")
    t0 = time.perf_counter()
    name = game_to_name(game)
    source = Path(diamond_checkpoint)
    state = load_diamond_file(source)
    meanings = game_action_meanings(name)
    world_model, actor_critic = from_diamond(state, str(source), num_actions=len(meanings))
    collection = collect_start_bank(actor_critic, name, bank_size, seed=seed, progress=progress)
    meta = {
        "source": "DIAMOND (Alonso et al., NeurIPS 2024), imported by training.diamond.importer",
        "diamond_checkpoint": source.name,
        "diamond_checkpoint_sha256": sha256(source),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "start_bank": {"contexts": len(collection.bank), "env_steps": collection.env_steps, "seed": seed,
                       "policy": f"the imported DIAMOND actor-critic, epsilon {BANK_EPSILON}",
                       "stride": CONTEXT_STRIDE},
        **(provenance or {}),
    }
    targets = []
    if out is not None:
        targets.append((Path(out) / "world_model.safetensors", Path(out) / "actor_critic.safetensors"))
    if install:
        folder = install_dir()
        targets.append((folder / f"{name}.safetensors", folder / f"{name}.actor_critic.safetensors"))
    paths = []
    for wm_path, ac_path in targets:
        wm_path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(save_checkpoint(wm_path, world_model, game=name, action_meanings=meanings,
                                     start_bank=collection.bank, provenance=meta))
        paths.append(save_actor_critic(ac_path, actor_critic, name))
    return ImportResult(world_model, actor_critic, paths, time.perf_counter() - t0)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", required=True, help="e.g. Pong, Breakout (one of the 26 for --from-hub)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--diamond-checkpoint", help="a DIAMOND agent .pt file")
    source.add_argument("--from-hub", action="store_true",
                        help=f"download atari_100k/models/<Game>.pt from {HUB_REPO} (pip install 'gym-diamond[hub]')")
    parser.add_argument("--out", help="write world_model.safetensors and actor_critic.safetensors here")
    parser.add_argument("--install", action="store_true",
                        help="also write <Game>.safetensors where gym.make looks (default: with --from-hub, no --out)")
    parser.add_argument("--bank-size", type=int, default=DEFAULT_BANK_SIZE,
                        help="real start contexts to collect with the imported agent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    install = args.install or (args.from_hub and args.out is None)
    if args.out is None and not install:
        parser.error("say where to write: --out DIR and/or --install")
    provenance = None
    if args.from_hub:
        path = download_from_hub(args.game)
        provenance = {"hub": {"repo": HUB_REPO, "filename": hub_filename(args.game)}}
    else:
        path = Path(args.diamond_checkpoint)
    result = import_diamond(args.game, path, out=args.out, install=install, bank_size=args.bank_size,
                            seed=args.seed, progress=not args.no_progress, provenance=provenance)
    counts = {**result.world_model.num_parameters(),
              "actor_critic": sum(p.numel() for p in result.actor_critic.parameters())}
    name = game_to_name(args.game)
    print(f"imported {path} ({name}, {result.world_model.config.num_actions} actions) in {result.seconds:.1f} s")
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    for p in result.paths:
        print(f"wrote {p}")
    hint = "" if install else f", checkpoint={str(result.paths[0])!r}"
    print(f'use it: gym.make("DiamondDream/{name}-v0"{hint}); its agent: '
          f"training.agents.checkpoints.load_actor_critic({str(result.paths[1])!r})")

if __name__ == "__main__":
    main()
