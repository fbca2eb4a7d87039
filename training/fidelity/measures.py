"""Does the reward/termination model see the events? Confusion matrices on real transitions.

Rewards and terminations are rare (a Pong point every few hundred steps), so accuracy over random
transitions says little: a model that never predicts a reward scores 99%. ``event_confusion`` runs
the reward/termination model over *every* transition of the given episodes, cut into consecutive
sequences of ``sequence_length`` (as it is trained: each sequence from a zero LSTM state), and counts
predicted (argmax) against true reward signs and terminations. ``EventReport`` turns the counts into
recall and precision of the events: of the transitions that carry a reward, how many get its sign;
of the predicted rewards, how many are right; the same for terminations.

Dreamed frames are judged by PSNR, which barely notices a dropped Pong ball (a pixel or two of 4096).
``object_agreement`` asks what control needs instead: of the real frames that show the ball (or the
player's paddle), how many predicted frames show it too, and how many within ``tolerance`` pixels of
where it really is (``training.data.objects`` finds both), beside the baseline that repeats the last real
context frame.

``ball_shown_by_sigma`` asks why a dream drops the ball: handed the real next frame with noise of level
sigma added, does one application of the denoiser still show the ball? A denoiser that keeps the ball
at small sigma but loses it at large sigma restores a ball it is shown without having learnt where the
ball goes next: sampling starts from pure noise at the sampler's ``sigma_max`` (5), where the frame
tells it nothing, so the ball it dreams there must come from the context and the action.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gym_diamond import WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.atari import game_to_name
from gym_diamond.errors import UserError
from gym_diamond.nn.rew_end import RewEndOutput
from training.data.dataset import EpisodeDataset, Segment
from training.data.games import Located, games_with, rules
from training.data.objects import find_objects, object_game
from training.runtime.modes import evaluating

# The open-loop horizons every fidelity figure and gate judges (dream steps ahead of the real context)
FIDELITY_HORIZONS = (1, 5, 15)

__all__ = ["DENOISER_SIGMAS", "OBJECT_TOLERANCE", "EventReport", "ObjectAgreement", "ObjectScore",
           "ball_shown_by_sigma", "checked_probe", "denoise_real_frame", "event_confusion", "game_objects",
           "locate_objects", "object_agreement", "object_within", "probe_noise", "episode_calls", "rew_end_reads",
           "rounded_share", "score_object", "sequence_starts", "share"]

OBJECT_TOLERANCE = 2.0  # pixels between the centres of a predicted and a real object for them to agree
# noise levels ``ball_shown_by_sigma`` tries by default: from nearly clean to the sampler's sigma_max (5)
DENOISER_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


def share(count: int, total: int) -> float | None:
    """``count`` of ``total`` as a fraction; None when there is nothing to count."""
    return count / total if total else None


def rounded_share(numerator: int, denominator: int) -> float | None:
    """``share`` to 4 decimals, as the fidelity lines print it."""
    value = share(numerator, denominator)
    return None if value is None else round(value, 4)


@dataclass
class EventReport:
    """Counts of (true, predicted) classes over real transitions."""

    reward: np.ndarray  # (3, 3): rows the true reward sign (-1, 0, +1), columns the predicted one
    termination: np.ndarray  # (2, 2): rows true (not terminated, terminated), columns predicted

    @classmethod
    def empty(cls) -> EventReport:
        return cls(np.zeros((3, 3), np.int64), np.zeros((2, 2), np.int64))

    def add(self, rewards: np.ndarray, terminated: np.ndarray, real: np.ndarray, reward_logits: torch.Tensor,
            end_logits: torch.Tensor) -> None:
        """Count the transitions where ``real`` (B, S) holds: true rewards and terminations (B, S) against the
        argmax of the reward/termination model's logits (B, S, classes)."""
        self.add_calls(rewards[real], terminated[real], reward_logits.argmax(-1).cpu().numpy()[real] - 1,
                       end_logits.argmax(-1).cpu().numpy()[real])

    def add_calls(self, rewards: np.ndarray, terminated: np.ndarray, reward_signs: np.ndarray,
                  end_calls: np.ndarray) -> None:
        """Count transitions from the calls made on them: true rewards and terminations against the predicted
        reward signs (-1, 0, 1) and end calls (0, 1), arrays of one shape."""
        np.add.at(self.reward, (np.sign(rewards).astype(np.int64) + 1, np.asarray(reward_signs, np.int64) + 1), 1)
        np.add.at(self.termination, (terminated.astype(np.int64), np.asarray(end_calls, np.int64)), 1)

    def reward_recall(self) -> float | None:
        """Of the transitions with a reward, the fraction whose sign is predicted (None: no reward seen)."""
        return rounded_share(int(self.reward[0, 0] + self.reward[2, 2]), int(self.reward[[0, 2]].sum()))

    def reward_precision(self) -> float | None:
        """Of the transitions predicted to carry a reward, the fraction with that reward's sign."""
        return rounded_share(int(self.reward[0, 0] + self.reward[2, 2]), int(self.reward[:, [0, 2]].sum()))

    def termination_recall(self) -> float | None:
        return rounded_share(int(self.termination[1, 1]), int(self.termination[1].sum()))

    def termination_precision(self) -> float | None:
        return rounded_share(int(self.termination[1, 1]), int(self.termination[:, 1].sum()))

    def to_dict(self) -> dict[str, Any]:
        return {"transitions": int(self.reward.sum()),
                "reward_events": int(self.reward[[0, 2]].sum()), "reward_recall": self.reward_recall(),
                "reward_precision": self.reward_precision(), "reward_confusion": self.reward.tolist(),
                "terminations": int(self.termination[1].sum()), "termination_recall": self.termination_recall(),
                "termination_precision": self.termination_precision(),
                "termination_confusion": self.termination.tolist()}


@torch.no_grad()
def event_confusion(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                    sequence_length: int = 19, batch_size: int = 64, frame_noise: float = 0.0,
                    seed: int = 0) -> EventReport:
    """Reward-sign and termination confusion of ``model`` over all transitions of ``episode_ids``.

    ``frame_noise`` > 0 adds Gaussian noise of that std (frames in [-1, 1], drawn with ``seed``) to every frame the
    reward/termination model reads: a dream's frames are a few levels off the real ones everywhere, and a model
    fitted to real frames to the pixel can miss every game end on them while its real-frame figures are perfect."""
    report = EventReport.empty()
    for _, seg, out in rew_end_reads(model, dataset, episode_ids, sequence_length=sequence_length,
                                     batch_size=batch_size, frame_noise=frame_noise, seed=seed):
        report.add(seg.rewards, seg.terminated, seg.mask, out.reward_logits, out.end_logits)
    return report


@torch.no_grad()
def rew_end_reads(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                  sequence_length: int = 19, batch_size: int = 64, frame_noise: float = 0.0,
                  seed: int = 0) -> Iterator[tuple[list[tuple[int, int]], Segment, RewEndOutput]]:
    """The reward/termination model's outputs over every transition of ``episode_ids``, read on the real frames
    (with ``frame_noise``, see :func:`event_confusion`) in consecutive sequences of ``sequence_length``
    (:func:`sequence_starts`), each from a fresh state: a batch at a time, its (episode, first transition) starts,
    the segments read and the model's output on them."""
    if frame_noise < 0:
        raise UserError(f"frame_noise must be >= 0, got {frame_noise}")
    device = model.device
    model.rew_end.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    starts = sequence_starts(dataset, episode_ids, sequence_length)
    for i in range(0, len(starts), batch_size):
        batch = starts[i:i + batch_size]
        ids, firsts = zip(*batch, strict=True)
        seg = dataset.get_segments(np.array(ids), np.array(firsts), sequence_length)
        frames = to_model_frames(torch.as_tensor(seg.frames, device=device))
        if frame_noise > 0:
            frames = frames + frame_noise * torch.randn(frames.shape, generator=generator, device=device)
        actions = torch.as_tensor(seg.actions, device=device).long()
        yield batch, seg, model.rew_end(frames[:, :-1], actions, frames[:, 1:])


def episode_calls(model: WorldModel, dataset: EpisodeDataset, episode: int,
                  sequence_length: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """The reward model's sign (-1, 0, 1) and the termination model's call (0, 1) for every step of ``episode``,
    read as :func:`rew_end_reads` reads (sequences of ``sequence_length`` real transitions, each from a fresh
    state, as ``--events`` judges)."""
    length = int(dataset.lengths[episode])
    signs, ends = np.zeros(length, np.int64), np.zeros(length, np.int64)
    for starts, seg, out in rew_end_reads(model, dataset, [episode], sequence_length=sequence_length):
        reward_classes = out.reward_logits.argmax(-1).cpu().numpy()
        end_classes = out.end_logits.argmax(-1).cpu().numpy()
        for (_, first), reward_class, end_class, real in zip(starts, reward_classes, end_classes, seg.mask,
                                                             strict=True):
            steps = slice(first, first + int(real.sum()))
            signs[steps], ends[steps] = reward_class[real] - 1, end_class[real]
    return signs, ends


def sequence_starts(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int],
                    sequence_length: int) -> list[tuple[int, int]]:
    """(episode, first transition) of consecutive sequences of ``sequence_length`` that cover every transition
    of ``episode_ids`` once, as the event counts judge them."""
    if sequence_length < 1:
        raise UserError(f"sequence_length must be >= 1, got {sequence_length}")
    return [(int(e), s) for e in episode_ids for s in range(0, int(dataset.lengths[int(e)]), sequence_length)]


def dream_event_starts(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], steps: int,
                       sequence_length: int) -> tuple[list[tuple[int, int]], int]:
    """The sequences a dream's events are judged on for about ``steps`` imagined steps: every transition of the
    first episodes, in order, until ``steps`` are covered (their rates and precision as the game has them), then
    the last ``sequence_length`` transitions of each remaining episode, where it ends: a game ends once an
    episode (a Pong game is thousands of steps), so without them a few thousand steps judge one or two
    terminations. Returns the starts and how many episodes were judged whole."""
    episode_ids = [int(e) for e in episode_ids]
    lengths = dataset.lengths[episode_ids]
    whole = max(1, int(np.searchsorted(np.cumsum(lengths), steps)) + 1)
    ends = [(e, max(0, int(length) - sequence_length)) for e, length in zip(episode_ids[whole:], lengths[whole:],
                                                                              strict=True)]
    return sequence_starts(dataset, episode_ids[:whole], sequence_length) + ends, min(whole, len(episode_ids))


@dataclass(frozen=True)
class ObjectScore:
    """Of ``real`` frames that show an object, how many predictions show it and how many within tolerance."""

    real: int
    shown: int
    within: int

    def to_dict(self) -> dict[str, Any]:
        return {"real": self.real, "shown": rounded_share(self.shown, self.real),
                "within": rounded_share(self.within, self.real)}


_PREDICTORS = ("model", "repeat_last")


def game_objects(game: str) -> tuple[str, ...]:
    """The objects whose agreement is measured in ``game`` (``training.data.games.rules``; empty for a game without a
    detector and for environments other than Atari games): the ball and the player's paddle in Pong and Breakout,
    the two boxers in Boxing."""
    return rules(game).objects


def locate_objects(game: str, frames: np.ndarray) -> dict[str, Located]:
    """Each of ``game_objects(game)`` in uint8 frames (n, 64, 64, 3)."""
    return rules(game).locate(frames)


def _subset(located: dict[str, Located], rows: np.ndarray) -> dict[str, Located]:
    return {thing: (visible[rows], xy[rows]) for thing, (visible, xy) in located.items()}


@dataclass
class ObjectAgreement:
    """Object agreement (``game_objects``) of the model's predictions and of repeat-last with the real frames, per
    horizon."""

    game: str
    tolerance: float
    scores: dict[int, dict[str, dict[str, ObjectScore]]]  # horizon -> predictor -> object -> score

    def line(self, horizon: int) -> dict[str, Any]:
        """Flat figures of one horizon, e.g. ``ball_real``, ``ball_shown_model``, ``ball_within_2px_repeat_last``."""
        within = f"within_{self.tolerance:g}px"
        line: dict[str, Any] = {}
        for thing in self.scores[horizon]["model"]:
            line[f"{thing}_real"] = self.scores[horizon]["model"][thing].real
            for predictor in _PREDICTORS:
                figures = self.scores[horizon][predictor][thing].to_dict()
                line[f"{thing}_shown_{predictor}"] = figures["shown"]
                line[f"{thing}_{within}_{predictor}"] = figures["within"]
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"game": self.game, "tolerance_px": self.tolerance,
                "horizons": {h: self.line(h) for h in self.scores}}


def score_object(real: Located, predicted: Located, tolerance: float = OBJECT_TOLERANCE) -> ObjectScore:
    """Of the frames where ``real`` shows the object, those where ``predicted`` shows it, and within ``tolerance``
    pixels of it."""
    seen, guessed = real[0], predicted[0]
    within = object_within(real, predicted, tolerance)
    return ObjectScore(int(seen.sum()), int((seen & guessed).sum()), int(within.sum()))


def object_within(real: Located, predicted: Located, tolerance: float = OBJECT_TOLERANCE) -> np.ndarray:
    """Per frame, whether both show the object and ``predicted``'s lies within ``tolerance`` pixels of ``real``'s."""
    (seen, xy), (guessed, guess_xy) = real, predicted
    return seen & guessed & (np.nan_to_num(np.linalg.norm(guess_xy - xy, axis=1), nan=np.inf) <= tolerance)


def _check_frames(name: str, frames: np.ndarray, ndim: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != ndim or frames.shape[-3:] != (64, 64, 3) or frames.dtype != np.uint8:
        dims = "(n, H, 64, 64, 3)" if ndim == 5 else "(n, L, 64, 64, 3)"
        raise UserError(f"{name} must be uint8 of shape {dims}, got {frames.dtype} of shape {frames.shape}")
    return frames


def object_agreement(game: str, context: np.ndarray, real: np.ndarray, predicted: np.ndarray, *,
                     horizons: tuple[int, ...] | list[int] = FIDELITY_HORIZONS, valid: np.ndarray | None = None,
                     tolerance: float = OBJECT_TOLERANCE) -> ObjectAgreement:
    """Does the prediction show the game's objects (``game_objects``: ball and paddle, or the boxers) where the real
    frames do, and does repeat-last?

    ``context`` (n, L, 64, 64, 3): the real frames the predictions start from, the last of which repeat-last
    predicts for every horizon; ``real`` and ``predicted`` (n, H, 64, 64, 3): the frames 1..H steps later;
    ``valid`` (n, H) bool: which real frames exist (an episode may end before H), all when None. All uint8.
    """
    name = game_to_name(game)
    things = game_objects(name)
    if not things:
        raise UserError(f"no object detector for {name}: supported games are {', '.join(games_with('locate'))}")
    context, real = _check_frames("context", context, 5), _check_frames("real", real, 5)
    predicted = _check_frames("predicted", predicted, 5)
    if predicted.shape != real.shape or len(context) != len(real):
        raise UserError(f"predicted {predicted.shape} must match real {real.shape}, and context {context.shape} "
                        f"hold as many samples")
    n, H = real.shape[:2]
    valid = np.ones((n, H), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (n, H):
        raise UserError(f"valid must have shape {(n, H)}, got {valid.shape}")
    bad = [h for h in horizons if not 1 <= h <= H]
    if bad:
        raise UserError(f"horizons must lie in 1..{H} (the predicted steps), got {list(horizons)}")
    last = locate_objects(name, context[:, -1])
    scores = {}
    for h in horizons:
        ok = valid[:, h - 1]
        truth, dream = locate_objects(name, real[ok, h - 1]), locate_objects(name, predicted[ok, h - 1])
        repeat = _subset(last, ok)
        scores[h] = {predictor: {thing: score_object(truth[thing], guess[thing], tolerance) for thing in things}
                     for predictor, guess in zip(_PREDICTORS, (dream, repeat), strict=True)}
    return ObjectAgreement(name, float(tolerance), scores)


def _ball_positions(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], game: str, L: int, samples: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``samples`` (episode, start) positions of ``episode_ids``, drawn without replacement, whose L + 1
    frames are all real and whose last frame shows the ball."""
    ids = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
    counts = np.maximum(dataset.lengths[ids] - L + 1, 0) if ids.size else np.zeros(0, np.int64)
    ends = np.cumsum(counts)  # starts 0..T-L of an episode of T transitions: frames start..start+L are real
    if not ends.size or ends[-1] == 0:
        raise UserError(f"no episode among the {ids.size} given holds {L + 1} frames (a context and a next frame)")
    order = rng.permutation(int(ends[-1]))
    chosen_ids, chosen_starts = [], []
    found, chunk = 0, 4 * samples
    for i in range(0, len(order), chunk):
        picks = order[i:i + chunk]
        episode = np.searchsorted(ends, picks, side="right")
        starts = picks - (ends - counts)[episode]
        # the last frame alone decides: load it before whole segments
        last = dataset.get_segments(ids[episode], starts + L, 0).frames[:, 0]
        keep = np.flatnonzero(find_objects(game, last).ball_visible)[:samples - found]
        chosen_ids.append(ids[episode][keep])
        chosen_starts.append(starts[keep])
        found += keep.size
        if found == samples:
            break
    return np.concatenate(chosen_ids), np.concatenate(chosen_starts)


def checked_probe(samples: int, batch_size: int, sigmas: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """The noise levels of a probe of the denoiser on real frames, after a clear error for a bad size or level."""
    if samples < 1 or batch_size < 1:
        raise UserError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    levels = tuple(float(s) for s in sigmas)
    if not levels or min(levels) <= 0:
        raise UserError(f"sigmas must be noise levels > 0, got {levels}")
    return levels


def probe_noise(model: WorldModel, n: int, seed: int) -> torch.Tensor:
    """The noise a probe adds to ``n`` real frames: one draw from ``seed``, the same at every level."""
    return torch.randn((n, *model.frame_shape), generator=torch.Generator().manual_seed(seed))


def denoise_real_frame(model: WorldModel, target: torch.Tensor, noise: torch.Tensor, sigma: float,
                       context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The denoiser's estimate of the real frames ``target`` from ``target + sigma * noise``, as the sampler
    evaluates it (the model's dream precision, clamped and quantised as the sampler quantises)."""
    level = torch.full((len(target),), sigma, device=target.device)
    noisy = target + sigma * noise.to(target.device)
    return model.denoiser.denoise(noisy, level, context, actions, autocast=model.acceleration.autocast,
                                  quantization=model.config.sampler.quantization)


@torch.no_grad()
def ball_shown_by_sigma(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                        sigmas: tuple[float, ...] | list[float] = DENOISER_SIGMAS, samples: int = 32, seed: int = 0,
                        batch_size: int = 64, tolerance: float = OBJECT_TOLERANCE) -> dict[float, dict[str, Any]]:
    """Of real next frames that show the ball, the share whose denoised estimate from a noisy copy shows it too.

    Draws (with ``seed``) up to ``samples`` positions of ``episode_ids`` whose L context frames and next
    frame are real and whose next frame shows the ball (``training.data.objects``: Pong, Breakout). At each
    noise level sigma the real next frame x gets Gaussian noise, x + sigma * n (the same n at every
    sigma and for every call with this seed), and the denoiser is applied once, as the sampler
    evaluates it (``Denoiser.denoise`` at sigma, conditioned on the 4 real context frames and the real
    actions, in the model's dream precision, clamped and quantised as the sampler quantises); its
    estimate becomes a uint8 frame as a dream's frames do. Returns, per sigma,
    ``{"real": positions, "shown": share showing the ball, "within": share within ``tolerance`` px of
    the real ball}``.

    Why: a dream that drops the ball can be a denoiser that keeps a ball it is shown (high shares at
    small sigma, where the noisy frame still shows the ball) but has not learnt where the ball goes next
    (low shares at large sigma, where only the context and the action can tell): sampling starts at
    the sampler's ``sigma_max``, 5 in DIAMOND.
    """
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    game = object_game(dataset.game)
    sigmas = checked_probe(samples, batch_size, sigmas)
    L, device, denoiser = model.config.denoiser.context_length, model.device, model.denoiser
    ids, starts = _ball_positions(dataset, episode_ids, game, L, samples, np.random.default_rng(seed))
    n = len(ids)
    noise = probe_noise(model, n, seed)
    counts = {s: np.zeros(2, np.int64) for s in sigmas}  # shown, within
    with evaluating(denoiser):
        for i in range(0, n, batch_size):
            seg = dataset.get_segments(ids[i:i + batch_size], starts[i:i + batch_size], L)
            frames = to_model_frames(torch.as_tensor(seg.frames, device=device))
            context, target = frames[:, :L], frames[:, L]
            actions = torch.as_tensor(seg.actions, device=device).long()
            real = find_objects(game, seg.frames[:, L])
            for sigma in sigmas:
                estimate = denoise_real_frame(model, target, noise[i:i + batch_size], sigma, context, actions)
                kept = find_objects(game, to_uint8_frames(estimate).cpu().numpy())
                score = score_object(real.of("ball"), kept.of("ball"), tolerance)
                counts[sigma] += (score.shown, score.within)
    return {s: ObjectScore(n, int(counts[s][0]), int(counts[s][1])).to_dict() for s in sigmas}
