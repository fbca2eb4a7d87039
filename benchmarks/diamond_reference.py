"""Our imagined step beside DIAMOND's own code, in one run, on this machine (paper config, CPU or GPU).

    git clone https://github.com/eloialonso/diamond /tmp/diamond
    python benchmarks/diamond_reference.py --diamond-src /tmp/diamond/src --batch 16

DIAMOND's step (its ``WorldModelEnv.step``): ``DiffusionSampler.sample`` (3 Euler steps of its
``Denoiser``) then ``RewEndModel.predict_rew_end`` on the new frame. Its modules are imported from the
checkout given, unmodified; the two modules of its package that pull in training-only dependencies
(``utils``: omegaconf and wandb; ``torcheval``) are replaced by stand-ins holding the few names its
model files import, none of which runs in a forward pass. Both sides get the same paper-size
architecture (DIAMOND's ``config/agent/default.yaml``) and random weights (speed does not depend on
them), and are timed in
alternation, ``--repeats`` times each: DIAMOND's as published (fp32, NCHW, eager), ours in fp32 eager
NCHW (the same computation) and in the device default (bf16 on a CPU with native bf16, channels_last).
One JSON line per timing, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from training_speed import updates_per_s  # this folder's timing loop (run as a script from here)

from gym_diamond import BatchedGenerator, WorldModel, WorldModelConfig
from gym_diamond.acceleration import Acceleration


def import_diamond(src: Path, num_actions: int, device: torch.device):
    """DIAMOND's sampler and reward/termination model, built from its own classes."""
    if not (src / "models" / "diffusion" / "diffusion_sampler.py").exists():
        raise SystemExit(f"{src} is not DIAMOND's src folder (no models/diffusion/diffusion_sampler.py)")
    stand_in = types.ModuleType("utils")  # its training helpers: none is used by a forward pass
    stand_in.LossAndLogs = tuple
    stand_in.StateDictMixin = type("StateDictMixin", (), {})
    stand_in.init_lstm = lambda lstm: None
    sys.modules["utils"] = stand_in
    for name in ("torcheval", "torcheval.metrics", "torcheval.metrics.functional"):
        module = types.ModuleType(name)
        module.multiclass_confusion_matrix = None
        sys.modules[name] = module
    sys.path.insert(0, str(src))
    from models.diffusion import (  # noqa: PLC0415  (DIAMOND's package, importable only now)
        DenoiserConfig,
        DiffusionSampler,
        DiffusionSamplerConfig,
        InnerModelConfig,
    )
    from models.diffusion.denoiser import Denoiser  # noqa: PLC0415
    from models.rew_end_model import RewEndModel, RewEndModelConfig  # noqa: PLC0415

    inner = InnerModelConfig(img_channels=3, num_steps_conditioning=4, cond_channels=256, depths=[2, 2, 2, 2],
                             channels=[64, 64, 64, 64], attn_depths=[0, 0, 0, 0], num_actions=num_actions)
    denoiser = Denoiser(DenoiserConfig(inner_model=inner, sigma_data=0.5, sigma_offset_noise=0.3)).to(device).eval()
    sampler = DiffusionSampler(denoiser, DiffusionSamplerConfig(num_steps_denoising=3))
    rew_end = RewEndModel(RewEndModelConfig(lstm_dim=512, img_channels=3, img_size=64, cond_channels=128,
                                            depths=[2, 2, 2, 2], channels=[32, 32, 32, 32], attn_depths=[0, 0, 0, 0],
                                            num_actions=num_actions)).to(device).eval()
    return sampler, rew_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diamond-src", required=True, type=Path, help="the src folder of a DIAMOND checkout")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-actions", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    args = parser.parse_args()
    device, n = torch.device(args.device), args.batch
    torch.manual_seed(0)
    sampler, rew_end = import_diamond(args.diamond_src.resolve(), args.num_actions, device)
    obs = torch.rand(n, 4, 3, 64, 64, device=device) * 2 - 1
    act = torch.randint(0, args.num_actions, (n, 4), device=device)
    diamond_state = [None]

    @torch.no_grad()
    def diamond_step() -> None:
        next_obs, _ = sampler.sample(obs, act)
        _, _, diamond_state[0] = rew_end.predict_rew_end(obs[:, -1:], act[:, -1:], next_obs.unsqueeze(1),
                                                         diamond_state[0])

    ours = {}
    for label, acceleration in (("ours fp32 eager", Acceleration(precision="fp32", channels_last=False)),
                                ("ours default", Acceleration.default_for(device))):
        model = WorldModel(WorldModelConfig(num_actions=args.num_actions)).to(device).eval()
        model.accelerate(acceleration)
        state = [model.burn_in(obs, act)]
        generator = BatchedGenerator(range(n), device=device)

        def our_step(model=model, state=state, generator=generator) -> None:
            state[0] = model.imagine_step(obs, act, state[0], generator).state

        ours[label] = (our_step, acceleration)
    rates: dict[str, list[float]] = {"DIAMOND": [], **{label: [] for label in ours}}
    for _ in range(args.repeats):
        for label, step in (("DIAMOND", diamond_step), *((k, v[0]) for k, v in ours.items())):
            rate = updates_per_s(step, device, args.min_seconds, warmup=1)  # batched steps per second
            rates[label].append(rate)
            extra = {} if label == "DIAMOND" else {"precision": ours[label][1].precision,
                                                   "channels_last": ours[label][1].channels_last}
            print(json.dumps({"what": label, "device": args.device, "threads": torch.get_num_threads(), "batch": n,
                              "env_steps_per_s": round(n * rate, 2), **extra}), flush=True)
    best = {label: max(r) for label, r in rates.items()}
    print(json.dumps({"what": "ratio over DIAMOND (best of each)",
                      **{label: round(best[label] / best["DIAMOND"], 2) for label in ours}}), flush=True)


if __name__ == "__main__":
    main()
