"""Open-loop fidelity: the dream started from real context frames and fed the real actions, against the real frames.

``fidelity_lines`` samples held-out segments, dreams ``max(horizons)`` steps from their first
``context_length`` real frames and the real actions, and scores each horizon by PSNR against the real
frame, beside the trivial baseline that repeats the last context frame. ``psnr_*`` is the mean of
per-sample PSNRs, ``pooled_psnr_*`` the PSNR of the mean squared error over all samples: where the real
frame did not change, repeat-last scores 106 dB on it (the clamp), which lifts its mean of PSNRs by
several dB, while the pooled figure counts it as the zero error it is. For the games
``training.data.objects`` reads (Pong, Breakout), each line also says whether the dream shows the ball and
the player's paddle where the real frames do (``training.fidelity.measures.object_agreement``), which PSNR
barely notices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.acceleration import Acceleration
from gym_diamond.compare import psnr_of_mse
from training.data.dataset import EpisodeDataset
from training.data.sampling import BatchSampler
from training.fidelity.measures import EventReport, ObjectAgreement, game_objects, object_agreement, sequence_starts

FRAME_PEAK_TO_PEAK = 2.0  # model frames lie in [-1, 1]
# identical frames: 10 log10(4 / 1e-10) = 106 dB, the clamp every fidelity.csv so far was written with
FRAME_PSNR_CEILING_DB = 10 * math.log10(FRAME_PEAK_TO_PEAK**2 / 1e-10)

__all__ = ["Dream", "dream_event_confusion", "fidelity_lines", "imagine", "pooled_psnr", "psnr"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of frames in [-1, 1] (peak-to-peak 2)."""
    return psnr_of_mse((a - b).pow(2).flatten(1).mean(1), FRAME_PEAK_TO_PEAK, FRAME_PSNR_CEILING_DB)


def pooled_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the mean squared error over all samples: a frame that repeats exactly (mse 0, 106 dB after the
    clamp) does not outweigh the others, as it does in the mean of per-sample PSNRs."""
    return psnr_of_mse((a - b).pow(2).mean(), FRAME_PEAK_TO_PEAK, FRAME_PSNR_CEILING_DB).item()


def fidelity_lines(model: WorldModel, dataset: EpisodeDataset, test_ids: np.ndarray, horizons: list[int],
                   samples: int, *, seed: int = 0, precision: str = "fp32",
                   reference_precision: str | None = None) -> list[dict[str, float]]:
    """PSNR of dreams against the real frames (and repeat-last) at each horizon, on held-out segments; for the
    games ``training.data.objects`` reads, ball and paddle agreement too."""
    L, device = model.config.denoiser.context_length, model.device
    rng = np.random.default_rng(seed)
    H = max(horizons)
    seg = BatchSampler(dataset).sample_segments(samples, L + H + 1, rng, episode_ids=test_ids, beyond_end=True)
    # keep segments whose context and first step are real; later steps count only where real
    frames = to_model_frames(torch.as_tensor(seg.frames, device=device))  # (B, L+H+1, 3, 64, 64)
    actions = torch.as_tensor(seg.actions, device=device).long()
    mask = torch.as_tensor(seg.mask, device=device).bool()
    valid = mask[:, :L].all(1)
    frames, actions, mask = frames[valid], actions[valid], mask[valid]
    rewards = torch.as_tensor(seg.rewards, device=device)[valid]
    terminated = torch.as_tensor(seg.terminated, device=device)[valid]
    dream = imagine(model, precision, frames, actions, L, H)
    reference = imagine(model, reference_precision, frames, actions, L, H) if reference_precision else None
    objects = None
    if dataset.game is not None and game_objects(dataset.game):
        objects = dream_objects(dataset.game, seg.frames[valid.cpu().numpy()], dream, mask.cpu().numpy(), L,
                                horizons)
    last_real = frames[:, L - 1]
    step = L - 1
    lines = []
    for h in horizons:
        real = frames[:, L + h - 1]
        ok = mask[:, L + h - 2]  # the real frame exists (the transition into it is real)
        line = {"horizon": h, "samples": int(ok.sum()),
                "psnr_model": round(psnr(dream.frames[h][ok], real[ok]).mean().item(), 2),
                "psnr_repeat_last": round(psnr(last_real[ok], real[ok]).mean().item(), 2),
                "pooled_psnr_model": round(pooled_psnr(dream.frames[h][ok], real[ok]), 2),
                "pooled_psnr_repeat_last": round(pooled_psnr(last_real[ok], real[ok]), 2),
                "repeat_last_exact": int((last_real[ok] == real[ok]).flatten(1).all(1).sum())}
        if reference is not None:
            line[f"psnr_model_{reference_precision}"] = round(psnr(reference.frames[h][ok], real[ok]).mean().item(), 2)
            line[f"psnr_to_{reference_precision}_dream"] = round(
                psnr(dream.frames[h], reference.frames[h]).mean().item(), 2)
        if objects is not None:
            line.update(objects.line(h))
        if h == 1:
            line.update(reward_accuracy=round((dream.reward == rewards[:, step].sign()).float().mean().item(), 3),
                        termination_accuracy=round((dream.terminated == terminated[:, step]).float().mean().item(), 3))
        lines.append(line)
    return lines


def dream_objects(game: str, real: np.ndarray, dream: Dream, mask: np.ndarray, L: int,
                  horizons: list[int]) -> ObjectAgreement:
    """Ball and paddle agreement of the dream (and of repeat-last) with the real uint8 frames ``real``
    (n, L+H+1, 64, 64, 3) of the segments it started from; ``mask`` (n, L+H) says which transitions are real."""
    H = len(dream.frames)
    predicted = np.stack([to_uint8_frames(dream.frames[h]).cpu().numpy() for h in range(1, H + 1)], axis=1)
    return object_agreement(game, real[:, :L], real[:, L:L + H], predicted, horizons=horizons,
                            valid=mask[:, L - 1:L + H - 1])


@dataclass
class Dream:
    frames: dict[int, torch.Tensor]  # horizon -> imagined frames (n, c, h, w)
    reward: torch.Tensor  # (n,) of the first imagined step
    terminated: torch.Tensor  # (n,)


def imagine(model: WorldModel, precision: str, frames: torch.Tensor, actions: torch.Tensor, L: int,
            H: int) -> Dream:
    """Dream H steps from the real contexts ``frames[:, :L]`` fed the real actions; the same random streams
    whatever the precision, so two precisions give the same dream up to their arithmetic."""
    model.accelerate(Acceleration(precision=precision))
    context, context_actions = frames[:, :L].clone(), actions[:, :L].clone()
    state = model.burn_in(context, context_actions)
    generator = BatchedGenerator(range(len(frames)), device=frames.device)
    out_frames, first = {}, None
    for h in range(1, H + 1):
        context_actions[:, -1] = actions[:, L + h - 2]
        out = model.imagine_step(context, context_actions, state, generator)
        state = out.state
        first = first or out
        out_frames[h] = out.next_frame
        context = torch.cat([context[:, 1:], out.next_frame[:, None]], dim=1)
        context_actions = torch.cat([context_actions[:, 1:], torch.zeros_like(context_actions[:, :1])], dim=1)
    return Dream(out_frames, first.reward, first.terminated)


@torch.no_grad()
def dream_event_confusion(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                          sequence_length: int = 19, batch_size: int = 32, seed: int = 0,
                          starts: list[tuple[int, int]] | None = None) -> EventReport:
    """Reward-sign and termination confusion of ``model`` judging its *own* next frames.

    ``training.fidelity.measures.event_confusion`` hands the reward/termination model the real next frames; a
    dream that never draws the ball crossing the line would pass it. Here each next frame is the
    dream's, sampled from the 4 real frames and actions before it (one imagined step, the sampler the
    model is configured with), while the frame the transition starts from stays real; the counts are
    against the real rewards and terminations, over every transition of ``episode_ids``, cut into
    consecutive sequences of ``sequence_length`` as in ``event_confusion``; or over the sequences given as
    ``starts`` ((episode, first transition) pairs, which may run past the episode's ends: masked out).
    """
    device, L = model.device, model.config.denoiser.context_length
    model.rew_end.eval()
    model.denoiser.eval()
    report = EventReport.empty()
    if starts is None:
        starts = sequence_starts(dataset, episode_ids, sequence_length)
    for i in range(0, len(starts), batch_size):
        ids, firsts = zip(*starts[i:i + batch_size], strict=True)
        # L - 1 frames before the sequence give every transition its context (padding before the episode)
        seg = dataset.get_segments(np.array(ids), np.array(firsts) - (L - 1), sequence_length + L - 1)
        frames = to_model_frames(torch.as_tensor(seg.frames, device=device))  # (B, S+L, c, h, w)
        padding = ~torch.as_tensor(seg.frame_mask, device=device)[:, :, None, None, None]
        frames = frames.masked_fill(padding, 0.0)  # grey, as training pads
        actions = torch.as_tensor(seg.actions, device=device).long()  # (B, S+L-1)
        B, S = len(ids), sequence_length
        contexts = frames.unfold(1, L, 1)[:, :S]  # (B, S, c, h, w, L): the L frames up to each transition
        contexts = contexts.permute(0, 1, 5, 2, 3, 4).reshape(B * S, L, *frames.shape[2:])
        context_actions = actions.unfold(1, L, 1)[:, :S].reshape(B * S, L)
        generator = BatchedGenerator([seed * 1_000_003 + k for k in range(i * S, (i + B) * S)], device=device)
        dreamed = model.imagine_step(contexts, context_actions, generator=generator).next_frame
        dreamed = dreamed.reshape(B, S, *frames.shape[2:])
        out = model.rew_end(frames[:, L - 1:L - 1 + S], actions[:, L - 1:], dreamed)
        report.add(seg.rewards[:, L - 1:], seg.terminated[:, L - 1:], seg.mask[:, L - 1:], out.reward_logits,
                   out.end_logits)
    return report


def dream_reward_recall(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray, *, samples: int = 32,
                        sequence_length: int = 19, seed: int = 0) -> float | None:
    """The share of rewarded transitions whose sign the reward model reads off the dream's own next frame.

    ``samples`` sequences of ``episode_ids``, each around a rewarded transition (drawn as the trainer's
    ``--reward-oversampling`` draws them), judged as ``dream_event_confusion`` judges: the frame a transition starts
    from is real, its next frame dreamed from the real context and action. Beside the recall on real next frames,
    a dream that does not draw what earns a reward (a punch landing, the score changing) shows here: its agents
    are never rewarded for it. None when the episodes hold no rewarded transition.
    """
    episodes, _ = dataset.rewarded_steps(episode_ids)
    if episodes.size == 0:
        return None
    ids, firsts = BatchSampler(dataset).sample_reward_positions(samples, sequence_length + 1,
                                                                np.random.default_rng(seed), episode_ids=episode_ids)
    report = dream_event_confusion(model, dataset, episode_ids, sequence_length=sequence_length, seed=seed,
                                   starts=[(int(e), int(t)) for e, t in zip(ids, firsts, strict=True)])
    return report.reward_recall()
