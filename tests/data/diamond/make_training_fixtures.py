"""Record DIAMOND's world-model training on toy data: the oracle of tests/test_diamond_training.py.

    python tests/data/diamond/make_training_fixtures.py --diamond-src /tmp/diamond/src \
        --out tests/data/diamond/training.safetensors

Everything is DIAMOND's unmodified code (``src/``), fp32 on the CPU, one thread:

1. its ``Denoiser.forward`` (``src/models/diffusion/denoiser.py``, one autoregressive step: 4 context
   frames, 2 targets) on a batch made by its ``make_segment`` and ``collate_segments_to_batch``
   (``src/data/utils.py``) from toy episodes, with left padding, one sample whose first target is
   padding: the loss, the gradient of every parameter and the noise it drew (recorded as drawn);
2. its ``RewEndModel.forward`` (``src/models/rew_end_model.py``) on 19-frame segments with left and right
   padding, terminations inside and at the edge of a segment (their ``final_observation``) and episodes
   that end unterminated: both losses and every gradient;
3. its ``utils.configure_opt`` groups and 3 updates of each network as its ``Trainer.train_component``
   makes them (``get_lr_sched`` with 2 warm-up steps, ``clip_grad_norm_``): learning rates, gradient
   norms, losses, the noise drawn and the parameters after;
4. its ``BatchSampler.sample`` (``src/data/batch_sampler.py``) on 9 toy episodes: the exact probability
   of every (episode, start), walked through its own code with an enumerating stand-in for
   ``np.random``, and a histogram of 100,000 real draws that agrees with it;
5. initialisation facts of fresh networks (``init_lstm`` of ``src/utils.py``, orthogonal ``Downsample``,
   zero ``conv2``, ``conv_out`` and attention outputs): in the file's metadata, as JSON.

The networks are tiny (16x16 frames) and every weight is perturbed from its initialisation, so that no
head is zero and every gradient flows. DIAMOND's package imports wandb, omegaconf, hydra and torcheval
at import time for training helpers none of which runs here: when one is not installed, a tiny
stand-in module takes its place.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diamond_stubs import stub_missing_modules
from enumerate_draws import Enumerator  # sibling modules: a script's folder is on sys.path
from safetensors.torch import save_file

SEED = 0
DENOISER_SEED = 1  # the global torch stream DIAMOND draws its training noise from
UPDATE_SEED = 2  # its denoiser updates clip the gradient at learning rates 0 and lr / 2, not at lr
NUM_ACTIONS, CONTEXT, SIZE, CHANNELS = 6, 4, 16, 3
LENGTHS = (3, 20, 12, 7, 15, 9, 18, 5, 11)  # the toy episodes' transitions, oldest first
TERMINATED, TRUNCATED = (2, 4, 6, 7), (1,)  # the others were cut short (e.g. the end of a collection)
# (episode, first frame) of each denoiser sample: 6 frames, padding before the start only (stop <= T):
# none, 2 frames, 5 (its first target is padding), 4 (the whole context), the episode's last frames
DENOISER_POSITIONS = ((1, 3), (3, -2), (0, -5), (5, -4), (4, 9))
# of each reward/termination sequence: 19 frames (18 transitions with loss), past either end
REW_END_POSITIONS = (
    (1, -4),  # left padding, the episode goes on
    (4, 3),  # terminates inside, right padding after its final observation
    (3, 0),  # ends unterminated inside: the next frame of its last transition stays grey
    (2, -6),  # terminates on the last transition of the segment: final observation as its last frame
    (6, -1),  # the termination is the 19th frame's, outside the 18 transitions: nothing replaced
    (8, 5),  # ends unterminated inside, after the start
    (7, -10),  # a whole terminated episode inside, padding on both sides
)
DENOISER_CONFIG = {"cond_channels": 16, "depths": [1, 1, 1, 1], "channels": [8, 8, 8, 8], "attn_depths": [0] * 4}
REW_END_CONFIG = {"lstm_dim": 32, "cond_channels": 16, "depths": [1, 1, 1, 1], "channels": [8, 8, 8, 8],
                  "attn_depths": [0] * 4}
ACTOR_CRITIC_CONFIG = {"lstm_dim": 32, "channels": [8, 8, 16, 16], "down": [1, 1, 1, 1]}
SIGMA_DISTRIBUTION = {"loc": -0.4, "scale": 1.2, "sigma_min": 2e-3, "sigma_max": 20.0}  # config/trainer.yaml
OPTIMIZER = {"lr": 1e-4, "weight_decay": 1e-2, "eps": 1e-8}  # config/trainer.yaml, both world-model networks
WARMUP, UPDATES = 2, 3  # learning rates 0, lr / 2, lr
MAX_GRAD_NORM = {"denoiser": 1.0, "rew_end_model": 100.0}  # config/trainer.yaml
SAMPLE_WEIGHTS = (0.1, 0.1, 0.1, 0.7)
SAMPLING = {  # name: (sample_weights, seq_length, can_sample_beyond_end), as its trainer builds its samplers
    "den_weighted": (SAMPLE_WEIGHTS, CONTEXT + 2, False),
    "den_uniform": (None, CONTEXT + 2, False),
    "rew_weighted": (SAMPLE_WEIGHTS, 19, True),
    "rew_uniform": (None, 19, True),
}
HISTOGRAM_DRAWS = 100_000


def accept_sampler_argument() -> None:
    """Its ``BatchSampler.__init__`` calls ``Sampler.__init__(dataset)``, which PyTorch accepted (and
    ignored) until the argument was removed: give it back the ignored argument."""
    if torch.utils.data.Sampler.__init__ is object.__init__:
        torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None


# ------------------------------------------------------------------------------------------- toy data


def toy_episodes(generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Episodes in gym-diamond's layout: uint8 frames (T + 1, h, w, c), the frame after the last action included."""
    episodes = []
    reward_values = torch.tensor([-1.0, 0.0, 0.0, 0.0, 1.0, 3.0])  # raw scores: DIAMOND trains on their sign
    for i, T in enumerate(LENGTHS):
        terminated, truncated = torch.zeros(T, dtype=torch.bool), torch.zeros(T, dtype=torch.bool)
        terminated[-1], truncated[-1] = i in TERMINATED, i in TRUNCATED
        episodes.append({
            "frames": torch.randint(0, 256, (T + 1, SIZE, SIZE, CHANNELS), generator=generator, dtype=torch.uint8),
            "actions": torch.randint(0, NUM_ACTIONS, (T,), generator=generator),
            "rewards": reward_values[torch.randint(0, len(reward_values), (T,), generator=generator)],
            "terminated": terminated,
            "truncated": truncated,
        })
    return episodes


def to_diamond_frames(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., h, w, c) -> DIAMOND's float (..., c, h, w) frames, with its arithmetic (``src/envs/env.py``)."""
    return u8.div(255).mul(2).sub(1).movedim(-1, -3).contiguous()


def diamond_episode(data: dict[str, torch.Tensor]) -> Any:
    """DIAMOND's ``Episode``: T observations; the frame after the last action is kept, as its collector
    keeps it, as ``info["final_observation"]`` of an episode that terminated or was truncated."""
    from data import Episode  # noqa: PLC0415  (DIAMOND's package, importable once its path is set)

    T = len(data["actions"])
    dead = bool(data["terminated"][-1] or data["truncated"][-1])
    info = {"final_observation": to_diamond_frames(data["frames"][T])} if dead else {}
    return Episode(obs=to_diamond_frames(data["frames"][:T]), act=data["actions"].clone(),
                   rew=data["rewards"].clone(), end=data["terminated"].to(torch.uint8),
                   trunc=data["truncated"].to(torch.uint8), info=info)


def diamond_batch(episodes: list[Any], positions: tuple[tuple[int, int], ...], seq_length: int) -> Any:
    """DIAMOND's ``Batch`` of the segments at ``positions``, as its data loader makes it."""
    from data import SegmentId, collate_segments_to_batch, make_segment  # noqa: PLC0415

    return collate_segments_to_batch([make_segment(episodes[e], SegmentId(e, start, start + seq_length))
                                      for e, start in positions])


def frames_record(name: str, obs: torch.Tensor) -> dict[str, torch.Tensor]:
    """DIAMOND's float frames as uint8 (exact: each is a level k / 255 * 2 - 1) and where they are real.

    Grey padding (0.0) is no uint8 level; no real frame is all 0.0, so a frame is padding iff all zero.
    """
    real = obs.flatten(2).ne(0).any(dim=2)
    u8 = obs.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(to_diamond_frames(u8.movedim(-3, -1))[real], obs[real]), "frames are not uint8 levels"
    assert obs[~real].eq(0).all()
    return {f"{name}_frames": u8.movedim(-3, -1).contiguous(), f"{name}_frame_real": real}


# ---------------------------------------------------------------------------------------------- networks


def build_networks() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """DIAMOND's denoiser, reward/termination model and actor-critic, freshly initialised."""
    from models.actor_critic import ActorCritic, ActorCriticConfig  # noqa: PLC0415
    from models.diffusion import Denoiser, DenoiserConfig, InnerModelConfig, SigmaDistributionConfig  # noqa: PLC0415
    from models.rew_end_model import RewEndModel, RewEndModelConfig  # noqa: PLC0415

    inner = InnerModelConfig(img_channels=CHANNELS, num_steps_conditioning=CONTEXT, num_actions=NUM_ACTIONS,
                             **DENOISER_CONFIG)
    denoiser = Denoiser(DenoiserConfig(inner_model=inner, sigma_data=0.5, sigma_offset_noise=0.3))
    denoiser.setup_training(SigmaDistributionConfig(**SIGMA_DISTRIBUTION))
    rew_end = RewEndModel(RewEndModelConfig(img_channels=CHANNELS, img_size=SIZE, num_actions=NUM_ACTIONS,
                                            **REW_END_CONFIG))
    actor_critic = ActorCritic(ActorCriticConfig(img_channels=3, img_size=64, num_actions=NUM_ACTIONS,
                                                 **ACTOR_CRITIC_CONFIG))
    return denoiser, rew_end, actor_critic


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every parameter off its initialisation, so that no zero-initialised layer hides a gradient."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))


def orthogonality_error(w: torch.Tensor) -> float:
    """max |W W^T - I| over the smaller side of W flattened to (rows, the rest): 0 for an orthogonal init."""
    m = w.detach().flatten(1).double()
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max())


def lstm_facts(lstm: torch.nn.Module) -> dict[str, Any]:
    """What ``init_lstm`` sets: Xavier-uniform input weights, orthogonal recurrent weights, zero biases
    but the forget gate's input bias at 1 (gates ordered input, forget, cell, output)."""
    params = dict(lstm.named_parameters())
    suffix = "_l0" if "weight_ih_l0" in params else ""
    w_ih, w_hh = params["weight_ih" + suffix].detach(), params["weight_hh" + suffix].detach()
    bias_ih, bias_hh = params["bias_ih" + suffix].detach(), params["bias_hh" + suffix].detach()
    bound = math.sqrt(6 / sum(w_ih.shape))
    return {
        "weight_ih_max_over_xavier_bound": float(w_ih.abs().max() / bound),
        "weight_ih_std_over_xavier_std": float(w_ih.std() / (bound / math.sqrt(3))),
        "weight_ih_numel": w_ih.numel(),
        "weight_hh_orthogonality_error": orthogonality_error(w_hh),
        "bias_ih_gates": [[float(g.min()), float(g.max())] for g in bias_ih.chunk(4)],
        "bias_hh_gates": [[float(g.min()), float(g.max())] for g in bias_hh.chunk(4)],
    }


def init_facts(denoiser: torch.nn.Module, rew_end: torch.nn.Module, actor_critic: torch.nn.Module) -> dict[str, Any]:
    """Facts of freshly initialised networks, keyed by DIAMOND's agent state-dict keys."""
    named = {f"{prefix}.{k}": p for prefix, model in (("denoiser", denoiser), ("rew_end_model", rew_end),
                                                       ("actor_critic", actor_critic))
             for k, p in model.named_parameters()}
    downsamples = {k: orthogonality_error(p) for k, p in named.items()
                   if ".downsamples." in k and k.endswith("conv.weight")}
    assert len(downsamples) == 6, sorted(downsamples)
    return {
        "zero_parameters": sorted(k for k, p in named.items() if not p.detach().any()),
        "nonzero_parameters": sorted(k for k, p in named.items() if p.detach().any()),
        # std of each nonzero tensor of 32 values or more: the kind of initialisation (PyTorch's default
        # bounds, Xavier, orthogonal, normal embeddings) without the random draw
        "std": {k: float(p.detach().std()) for k, p in named.items() if p.detach().any() and p.numel() >= 32},
        "numel": {k: p.numel() for k, p in named.items()},
        "rew_end_lstm": lstm_facts(rew_end.lstm),
        "actor_critic_lstm": lstm_facts(actor_critic.lstm),
        "downsample_orthogonality_error": downsamples,
    }


def decay_groups(model: torch.nn.Module, prefix: str) -> dict[str, list[str]]:
    """DIAMOND's ``configure_opt`` groups of ``model``, by name: (decayed, not decayed)."""
    from utils import configure_opt  # noqa: PLC0415

    names = {id(p): f"{prefix}.{k}" for k, p in model.named_parameters()}
    opt = configure_opt(model, **OPTIMIZER)
    assert [g["weight_decay"] for g in opt.param_groups] == [OPTIMIZER["weight_decay"], 0.0]
    return {"decay": [names[id(p)] for p in opt.param_groups[0]["params"]],
            "no_decay": [names[id(p)] for p in opt.param_groups[1]["params"]]}


# ---------------------------------------------------------------------------------------- recording


@contextlib.contextmanager
def recording_randn() -> Iterator[list[torch.Tensor]]:
    """``torch.randn`` and ``torch.randn_like`` as they are, keeping every tensor they return, in order."""
    drawn: list[torch.Tensor] = []
    randn, randn_like = torch.randn, torch.randn_like

    def keep(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = fn(*args, **kwargs)
            drawn.append(out.detach().clone())
            return out
        return wrapped

    torch.randn, torch.randn_like = keep(randn), keep(randn_like)
    try:
        yield drawn
    finally:
        torch.randn, torch.randn_like = randn, randn_like


def denoiser_draws(drawn: list[torch.Tensor], num_targets: int) -> dict[str, torch.Tensor]:
    """DIAMOND's draws per target, in order (``sample_sigma``: randn(b); ``apply_noise``: randn(b, c, 1, 1),
    randn_like(x)) as gym-diamond's ``TrainingNoise``: sigma, offset times sigma_offset_noise, noise."""
    assert len(drawn) == 3 * num_targets, len(drawn)
    s = SIGMA_DISTRIBUTION
    sigma = [(drawn[3 * i] * s["scale"] + s["loc"]).exp().clip(s["sigma_min"], s["sigma_max"])
             for i in range(num_targets)]
    return {"sigma": torch.stack(sigma), "offset": torch.stack([0.3 * drawn[3 * i + 1] for i in range(num_targets)]),
            "noise": torch.stack([drawn[3 * i + 2] for i in range(num_targets)])}


def grads(model: torch.nn.Module, prefix: str, name: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, p in model.named_parameters():
        assert p.grad is not None and p.grad.any(), f"{prefix}.{k} has no gradient"
        out[f"{name}/{prefix}.{k}"] = p.grad.detach().clone()
    return out


def record_denoiser(denoiser: torch.nn.Module, episodes: list[Any]) -> dict[str, torch.Tensor]:
    """Part 1: the loss, every gradient and the noise of one ``Denoiser.forward``."""
    batch = diamond_batch(episodes, DENOISER_POSITIONS, CONTEXT + 2)
    denoiser.zero_grad(set_to_none=True)
    torch.manual_seed(DENOISER_SEED)
    with recording_randn() as drawn:
        loss, _ = denoiser(batch)
    loss.backward()
    out = {"den_loss": loss.detach().clone(), "den_seed": torch.tensor(DENOISER_SEED), "den_act": batch.act.clone(),
           "den_mask": batch.mask_padding.clone(), **frames_record("den", batch.obs),
           **{f"den_{k}": v for k, v in denoiser_draws(drawn, 2).items()}, **grads(denoiser, "denoiser", "den_grad")}
    denoiser.zero_grad(set_to_none=True)
    return out


def record_rew_end(rew_end: torch.nn.Module, episodes: list[Any]) -> dict[str, torch.Tensor]:
    """Part 2: both losses and every gradient of one ``RewEndModel.forward``."""
    batch = diamond_batch(episodes, REW_END_POSITIONS, 19)
    rew_end.zero_grad(set_to_none=True)
    loss, metrics = rew_end(batch)
    loss.backward()
    out = {"rew_loss_rew": metrics["loss_rew"].clone(), "rew_loss_end": metrics["loss_end"].clone(),
           "rew_act": batch.act.clone(), "rew_rew": batch.rew.clone(), "rew_end": batch.end.clone(),
           "rew_mask": batch.mask_padding.clone(),
           # its observations after forward, which writes each final observation into them in place
           **frames_record("rew", batch.obs), **grads(rew_end, "rew_end_model", "rew_grad")}
    rew_end.zero_grad(set_to_none=True)
    return out


def record_updates(model: torch.nn.Module, prefix: str, episodes: list[Any], name: str) -> dict[str, torch.Tensor]:
    """Part 3: ``UPDATES`` updates as ``Trainer.train_component`` makes them, on the part 1 or 2 batch."""
    from utils import configure_opt, get_lr_sched  # noqa: PLC0415

    model = copy.deepcopy(model)
    if prefix == "denoiser":
        model.sample_sigma_training = None  # its closure is rebuilt: deepcopy keeps the same function
        from models.diffusion import SigmaDistributionConfig  # noqa: PLC0415
        model.setup_training(SigmaDistributionConfig(**SIGMA_DISTRIBUTION))
    opt = configure_opt(model, **OPTIMIZER)
    lr_sched = get_lr_sched(opt, WARMUP)
    model.train()
    opt.zero_grad()
    torch.manual_seed(UPDATE_SEED)
    lrs, norms, losses, draws = [], [], [], []
    for _ in range(UPDATES):
        positions, seq_length = (DENOISER_POSITIONS, CONTEXT + 2) if prefix == "denoiser" else (REW_END_POSITIONS, 19)
        batch = diamond_batch(episodes, positions, seq_length)
        with recording_randn() as drawn:
            loss, _ = model(batch)
        if prefix == "denoiser":
            draws.append(denoiser_draws(drawn, 2))
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM[prefix]))
        opt.step()
        opt.zero_grad()
        lrs.append(lr_sched.get_last_lr()[0])
        lr_sched.step()
        losses.append(loss.detach())
    out = {f"{name}_lr": torch.tensor(lrs, dtype=torch.float64), f"{name}_grad_norm": torch.stack(norms),
           f"{name}_loss": torch.stack(losses), f"{name}_seed": torch.tensor(UPDATE_SEED),
           **{f"{name}_after/{prefix}.{k}": p.detach().clone() for k, p in model.named_parameters()}}
    if draws:
        out.update({f"{name}_{k}": torch.stack([d[k] for d in draws]) for k in draws[0]})
    return out


# ---------------------------------------------------------------------------------------------- sampling


class EnumeratingNumpy(types.ModuleType):
    """numpy, but ``random.choice`` and ``random.randint`` (of one value each) draw from an ``Enumerator``."""

    def __init__(self, enumerator: Enumerator) -> None:
        super().__init__("numpy")
        self.random = types.SimpleNamespace(choice=self._choice, randint=self._randint)
        self._e = enumerator

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def _choice(self, a: np.ndarray, size: int, replace: bool = True, p: np.ndarray | None = None) -> np.ndarray:
        assert size == 1 and replace
        probs = list(p) if p is not None else [1 / len(a)] * len(a)
        return np.array([a[self._e.pick(probs)]])

    def _randint(self, low: int, high: int | np.ndarray, size: int | None = None) -> np.ndarray:
        high = int(np.asarray(high).reshape(-1)[0])
        assert size in (None, 1) and high > low
        return np.array([low + self._e.pick([1 / (high - low)] * (high - low))])


def toy_dataset() -> Any:
    """A stand-in for DIAMOND's ``Dataset``, holding what ``BatchSampler`` reads (lengths only)."""
    from data import Dataset  # noqa: PLC0415

    class ToyDataset(Dataset):
        def __init__(self) -> None:  # no folder, no episodes: only the sizes
            self.num_episodes = len(LENGTHS)
            self.lengths = np.array(LENGTHS, dtype=np.int64)
            self.num_steps = int(self.lengths.sum())

    return ToyDataset()


def record_sampling() -> dict[str, torch.Tensor]:
    """Part 4: exact (episode, start) probabilities of ``BatchSampler.sample`` and a histogram of real draws."""
    import data.batch_sampler as batch_sampler_module  # noqa: PLC0415
    from data import BatchSampler  # noqa: PLC0415

    out = {}
    for name, (weights, seq_length, beyond_end) in SAMPLING.items():
        weights = list(weights) if weights is not None else None
        enumerator = Enumerator()
        batch_sampler_module.np = EnumeratingNumpy(enumerator)
        try:
            sampler = BatchSampler(toy_dataset(), 0, 1, 1, seq_length, weights, can_sample_beyond_end=beyond_end)
            probs: dict[tuple[int, int], float] = {}
            while True:
                (segment,) = sampler.sample()
                assert segment.stop - segment.start == seq_length
                key = (int(segment.episode_id), int(segment.start))
                probs[key] = probs.get(key, 0.0) + enumerator.prob
                if not enumerator.next_run():
                    break
        finally:
            batch_sampler_module.np = np
        keys = sorted(probs)
        p = np.array([probs[k] for k in keys])
        assert abs(p.sum() - 1) < 1e-12, p.sum()
        np.random.seed(SEED)
        sampler = BatchSampler(toy_dataset(), 0, 1, HISTOGRAM_DRAWS, seq_length, weights,
                               can_sample_beyond_end=beyond_end)
        index = {k: i for i, k in enumerate(keys)}
        counts = np.zeros(len(keys), dtype=np.int64)
        for segment in sampler.sample():
            counts[index[(int(segment.episode_id), int(segment.start))]] += 1  # KeyError: not enumerated
        z = np.abs(counts - HISTOGRAM_DRAWS * p) / np.sqrt(HISTOGRAM_DRAWS * p * (1 - p))
        assert z.max() < 5, f"{name}: the histogram departs from the enumeration by {z.max():.1f} standard errors"
        print(f"sampling {name}: {len(keys)} (episode, start) pairs, histogram within {z.max():.2f} standard errors")
        out.update({f"sample_{name}_episode": torch.tensor([k[0] for k in keys]),
                    f"sample_{name}_start": torch.tensor([k[1] for k in keys]),
                    f"sample_{name}_prob": torch.from_numpy(p), f"sample_{name}_count": torch.from_numpy(counts)})
    return out


def record(diamond_src: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor worth comparing, and the metadata (JSON): init facts, decay groups, settings."""
    stub_missing_modules()
    accept_sampler_argument()
    sys.path.insert(0, str(diamond_src))
    torch.manual_seed(SEED)
    denoiser, rew_end, actor_critic = build_networks()
    init = init_facts(denoiser, rew_end, actor_critic)
    groups = {"denoiser": decay_groups(denoiser, "denoiser"), "rew_end_model": decay_groups(rew_end, "rew_end_model"),
              "actor_critic": decay_groups(actor_critic, "actor_critic")}
    generator = torch.Generator().manual_seed(SEED)
    perturb(denoiser, generator)
    perturb(rew_end, generator)
    data = toy_episodes(generator)
    episodes = [diamond_episode(d) for d in data]
    out = {f"episode{i}/{k}": v for i, d in enumerate(data) for k, v in d.items()}
    out.update({f"weights/denoiser.{k}": v.clone() for k, v in denoiser.state_dict().items()})
    out.update({f"weights/rew_end_model.{k}": v.clone() for k, v in rew_end.state_dict().items()})
    out.update({"den_positions": torch.tensor(DENOISER_POSITIONS), "rew_positions": torch.tensor(REW_END_POSITIONS)})
    out.update(record_denoiser(denoiser, episodes))
    out.update(record_rew_end(rew_end, episodes))
    out.update(record_updates(denoiser, "denoiser", episodes, "opt_den"))
    out.update(record_updates(rew_end, "rew_end_model", episodes, "opt_rew"))
    out.update(record_sampling())
    settings = {"num_actions": NUM_ACTIONS, "context": CONTEXT, "size": SIZE, "denoiser": DENOISER_CONFIG,
                "rew_end": REW_END_CONFIG, "actor_critic": ACTOR_CRITIC_CONFIG, "sigma": SIGMA_DISTRIBUTION,
                "optimizer": OPTIMIZER, "warmup": WARMUP, "max_grad_norm": MAX_GRAD_NORM,
                "sampling": {k: list(v) for k, v in SAMPLING.items()}}
    metadata = {"made_by": "tests/data/diamond/make_training_fixtures.py", "torch": torch.__version__,
                "settings": json.dumps(settings), "init": json.dumps(init), "decay_groups": json.dumps(groups)}
    return {k: v.contiguous() for k, v in out.items()}, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diamond-src", required=True, type=Path, help="the src folder of a DIAMOND checkout")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if not (args.diamond_src / "data" / "batch_sampler.py").exists():
        raise SystemExit(f"{args.diamond_src} is not DIAMOND's src folder (no data/batch_sampler.py)")
    torch.set_num_threads(1)
    tensors, metadata = record(args.diamond_src.resolve())
    save_file(tensors, str(args.out), metadata=metadata)
    print(f"denoiser loss {float(tensors['den_loss']):.6f}; reward loss {float(tensors['rew_loss_rew']):.6f}, "
          f"termination loss {float(tensors['rew_loss_end']):.6f}")
    for name in ("opt_den", "opt_rew"):
        print(f"{name}: lr {tensors[f'{name}_lr'].tolist()}, grad norm before clipping "
              f"{[round(x, 4) for x in tensors[f'{name}_grad_norm'].tolist()]}, "
              f"loss {[round(x, 5) for x in tensors[f'{name}_loss'].tolist()]}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
