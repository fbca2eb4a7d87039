"""The figures of one row of a world-model run's ``fidelity.csv``, judged on held-out episodes while it trains."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gym_diamond import WorldModel
from gym_diamond.atari import game_to_name
from training.data.dataset import EpisodeDataset
from training.data.games import rules
from training.fidelity.bricks import brick_breaks
from training.fidelity.measures import (
    DENOISER_SIGMAS,
    FIDELITY_HORIZONS,
    ball_shown_by_sigma,
    event_confusion,
    game_objects,
)
from training.fidelity.returns import ball_returns
from training.fidelity.serve import ball_serves

__all__ = ["FIDELITY_HORIZONS", "fidelity_figures", "fidelity_line"]


def _memory_format(model: nn.Module) -> torch.memory_format:
    """The layout of the model's convolution weights: channels_last (as the trainer sets it) or contiguous."""
    for p in model.parameters():
        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:  # a layout shows in its strides
            channels_last = p.is_contiguous(memory_format=torch.channels_last)
            return torch.channels_last if channels_last else torch.contiguous_format
    return torch.contiguous_format


@torch.no_grad()
def fidelity_figures(model: WorldModel, dataset: EpisodeDataset, test_ids: np.ndarray, *, samples: int = 32,
                     seed: int = 0, events: bool = True, sequence_length: int = 19) -> dict[str, Any]:
    """The figures of one row of ``fidelity.csv``, flat names to numbers (None where nothing was seen).

    On the held-out episodes ``test_ids``, with ``samples`` samples each (``training.fidelity.open_loop.fidelity_lines``
    and ``training.fidelity.measures.ball_shown_by_sigma``, seeded by ``seed``, fp32 dreams as DIAMOND's):
    ``h{1,5,15}_pooled_psnr_{model,repeat_last}``: open-loop dreams (real context and actions) against
    the real frame at that horizon, beside repeating the last context frame; for the games
    ``training.data.objects`` reads, ``h{H}_ball_*``/``h{H}_paddle_*``: the share of real frames showing the
    object whose prediction shows it (``shown``) and within 2 px (``within_2px``), for the model and
    repeat-last, of ``*_real`` such frames; ``sigma{s}_ball_{shown,within_2px}``: the share of noisy
    real next frames whose single denoised estimate keeps the ball, at the default noise levels (does
    the denoiser predict the ball or only restore one it is shown); with ``events``, the
    reward/termination model's recall and precision of rewards and terminations over every held-out
    transition (``training.fidelity.measures.event_confusion``), and ``dream_reward_recall``, the same recall
    when the next frame is the dream's (``training.fidelity.open_loop.dream_reward_recall``): far below the
    first, the dream does not draw what earns the reward. With a ball, ``ball_serve_drawn``: of ``ball_serves_real``
    real serves (the ball back after frames without it), the share the dream draws one step ahead, and
    ``ball_pause_phantom``: the share of ball-less real next frames it draws a ball in
    (``training.fidelity.serve.ball_serves``): a dream that never serves stalls after its first point. Where the
    player's paddle line is known (Pong), ``ball_return_drawn``: of ``ball_returns_real`` real returns of the ball
    off the player's paddle, the share the dream returns over the next steps, ``ball_return_let_through`` the share
    it lets through instead (the rest it loses), and ``ball_miss_drawn``: of real misses, the share it lets through
    (``training.fidelity.returns.ball_returns``). In Breakout, ``brick_break_drawn``: of ``brick_breaks_real`` real
    steps that break bricks, the share whose one-step dream shows the real next wall, and ``brick_wall_phantom``: the
    share of steps that keep the wall whose dream changes it (``training.fidelity.bricks.brick_breaks``). The model's
    modes, layout and dream settings and the global random state are as they were afterwards.
    """
    from training.fidelity.open_loop import (  # imports the dream machinery: only when judged
        dream_reward_recall,
        fidelity_lines,
    )

    networks = (model.denoiser, model.rew_end)
    modes, acceleration = [net.training for net in networks], model.acceleration
    layout = _memory_format(model)
    devices = [model.device] if model.device.type == "cuda" else []
    row: dict[str, Any] = {}
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            for line in fidelity_lines(model, dataset, test_ids, list(FIDELITY_HORIZONS), samples, seed=seed,
                                       precision="fp32"):
                h = line["horizon"]
                row.update({f"h{h}_{key}": line[key] for key in ("pooled_psnr_model", "pooled_psnr_repeat_last")})
                things = game_objects(dataset.game) if dataset.game else ()
                row.update({f"h{h}_{key}": value for key, value in line.items()
                            if key.startswith(tuple(f"{thing}_" for thing in things))})
            if dataset.game is not None and "ball" in game_objects(dataset.game):  # the denoiser keeps the ball?
                for sigma, score in ball_shown_by_sigma(model, dataset, test_ids, sigmas=DENOISER_SIGMAS,
                                                        samples=samples, seed=seed).items():
                    row[f"sigma{sigma:g}_ball_shown"] = score["shown"]
                    row[f"sigma{sigma:g}_ball_within_2px"] = score["within"]
                serves = ball_serves(model, dataset, test_ids, samples=samples, seed=seed)
                row.update(ball_serves_real=serves.serves, ball_serve_drawn=serves.recall(),
                           ball_pause_phantom=serves.phantom_rate())
                if rules(dataset.game).paddle_line is not None:
                    returns = ball_returns(model, dataset, test_ids, samples=samples, seed=seed)
                    row.update(ball_returns_real=returns.returns, ball_return_drawn=returns.return_recall(),
                               ball_miss_drawn=returns.miss_recall(),
                               ball_return_let_through=returns.let_through_share())
            if dataset.game is not None and game_to_name(dataset.game) == "Breakout":
                bricks = brick_breaks(model, dataset, test_ids, samples=samples, seed=seed)
                row.update(brick_breaks_real=bricks.breaks, brick_break_drawn=bricks.recall(),
                           brick_wall_phantom=bricks.phantom_rate())
            if events:
                report = event_confusion(model, dataset, test_ids, sequence_length=sequence_length)
                row.update(reward_recall=report.reward_recall(), reward_precision=report.reward_precision(),
                           termination_recall=report.termination_recall(),
                           termination_precision=report.termination_precision(),
                           dream_reward_recall=dream_reward_recall(model, dataset, test_ids, samples=samples,
                                                                   sequence_length=sequence_length, seed=seed))
    finally:
        model.accelerate(acceleration)
        model.to(memory_format=layout)
        for net, mode in zip(networks, modes, strict=True):
            net.train(mode)
    return row


def fidelity_line(update: int, seconds: float, row: dict[str, Any]) -> str:
    """One short progress line of a ``fidelity.csv`` row."""

    def figures(names: list[str], digits: int) -> str:
        return "/".join("-" if row.get(n) is None else f"{row[n]:.{digits}f}" for n in names)

    hs = "/".join(map(str, FIDELITY_HORIZONS))
    parts = [f"pooled PSNR h{hs} {figures([f'h{h}_pooled_psnr_model' for h in FIDELITY_HORIZONS], 1)} "
             f"(repeat-last {figures([f'h{h}_pooled_psnr_repeat_last' for h in FIDELITY_HORIZONS], 1)})"]
    if "h1_ball_shown_model" in row:
        parts.append(f"ball shown {figures([f'h{h}_ball_shown_model' for h in FIDELITY_HORIZONS], 2)}, within 2 px "
                     f"{figures([f'h{h}_ball_within_2px_model' for h in FIDELITY_HORIZONS], 2)} (repeat-last "
                     f"{figures([f'h{h}_ball_within_2px_repeat_last' for h in FIDELITY_HORIZONS], 2)})")
        parts.append(f"denoised ball at sigma {'/'.join(f'{s:g}' for s in DENOISER_SIGMAS)} "
                     f"{figures([f'sigma{s:g}_ball_shown' for s in DENOISER_SIGMAS], 2)}")
        if "ball_serve_drawn" in row:
            parts.append(f"serves drawn {figures(['ball_serve_drawn'], 2)} of {row['ball_serves_real']}, "
                         f"phantom balls in pauses {figures(['ball_pause_phantom'], 2)}")
        if "ball_return_drawn" in row:
            parts.append(f"returns drawn {figures(['ball_return_drawn'], 2)} of {row['ball_returns_real']}, "
                         f"let through {figures(['ball_return_let_through'], 2)}, misses drawn "
                         f"{figures(['ball_miss_drawn'], 2)}")
    if "brick_break_drawn" in row:
        parts.append(f"bricks broken as the game {figures(['brick_break_drawn'], 2)} of {row['brick_breaks_real']}, "
                     f"walls changed on steady steps {figures(['brick_wall_phantom'], 2)}")
    if "reward_recall" in row:
        parts.append(f"reward recall/precision {figures(['reward_recall', 'reward_precision'], 2)} (recall on the "
                     f"dream's frames {figures(['dream_reward_recall'], 2)}), termination "
                     f"{figures(['termination_recall', 'termination_precision'], 2)}")
    return f"fidelity at update {update} ({seconds:.0f} s): " + "; ".join(parts)


