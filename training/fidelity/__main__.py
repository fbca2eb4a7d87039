"""``python -m training.fidelity``: how faithful a world model is on held-out real episodes, one JSON line per
horizon.

    python -m training.fidelity --checkpoint runs/Pong-demo/world_model.safetensors \
        --data runs/Pong-demo/data --samples 64

On the checkpoint's own training data it judges the episodes its run held out (``--test-fraction`` of
``training.world_model``, recorded in the checkpoint); on data collected apart, all of them
(``training.fidelity.held_out``). ``--trained`` judges the episodes it trained on instead (each line counts them as
``trained_episodes``): a figure low there too says the model is underfit, not only ungeneralised.

For real segments of the held-out episodes the model starts from the 4 real context frames and is fed
the real actions; it is scored by PSNR against the real frames after 1 and 15 imagined steps
(``--horizons``), next to the trivial baseline that repeats the last context frame. ``psnr_*`` is the
mean of per-sample PSNRs, ``pooled_psnr_*`` the PSNR of the mean squared error over all samples: where
the real frame did not change (``repeat_last_exact`` samples), repeat-last scores 106 dB on it (the
clamp), which lifts its mean of PSNRs by several dB (Pong, 15 of 254 samples: 39.7 against 34.9
pooled), while the pooled figure counts it as the zero error it is. Reward (sign) and termination
accuracy are for the first imagined step. ``--events`` adds one line on every transition of
the held-out episodes: recall, precision and confusion of the reward sign and of terminations
(training.fidelity.measures), the events that random segments rarely hold, and ``dream_reward_recall``: the
reward recall when each next frame is the dream's, on ``--samples`` sequences around a rewarded transition
(a dream that does not draw what earns the reward reads ~0 there while the real frames' recall is high), and
``whole_episodes``: the same confusion read over each whole episode as a gymnasium dream reads it
(training.fidelity.episode_reads), where an LSTM read past its training length calls endings that are not there.
``--events-noise STD`` adds the same confusion on the real frames with Gaussian noise: a dream's frames are a few
levels off the real ones, and a reward/termination model fitted to real frames to the pixel misses game ends on
them (``training.world_model --rew-end-input-noise`` trains it out).

For Pong and Breakout each line also says whether the dream shows the ball and the player's paddle
where the real frames do (``training.fidelity.measures.object_agreement``), which PSNR barely notices: of the real
frames with a ball, ``ball_real``, the share whose dream shows one (``ball_shown_model``) and the share
whose dreamed ball lies within 2 pixels of the real one (``ball_within_2px_model``); the same for the
paddle, and for repeat-last (``*_repeat_last``). ``--serves`` adds a line on the ball's return after a point
(``training.fidelity.serve``): of ``serves`` real serves, the share the dream draws one step ahead
(``serve_drawn``), and the share of ball-less next frames it draws a ball in (``pause_phantom``). ``--returns``
(Pong, Breakout) adds one on the ball at the player's paddle (``training.fidelity.returns``): of ``returns`` real
returns, the share the dream returns too over the next few steps (4 in Pong, 8 in Breakout), open loop with the real
actions (``return_drawn``) or lets through instead (``return_let_through``: points lost in the dream only), or drops
(``return_dropped``: no ball at the last frame; the rest it holds or sends back too slowly), and of ``misses`` the
share it lets through as the game did (``miss_drawn``) or returns (``miss_returned``); the returns of balls faster
than 2.5 pixels a step apart (``fast_returns``, ``fast_return_drawn``, and ``slow_return_drawn`` for the rest): a
good player's long rallies are fast. ``--bricks`` (Breakout) adds one on the wall (``training.fidelity.bricks``): of
``breaks`` real steps that break bricks, the share whose one-step dream shows the real next wall brick for brick
(``break_drawn``), and of ``steady`` steps that keep it, the share whose dream shows another (``wall_phantom``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from gym_diamond import load_checkpoint, resolve_device
from gym_diamond.acceleration import PRECISIONS
from gym_diamond.atari import game_to_name
from gym_diamond.config import QUANTIZATIONS, SAMPLER_STARTS
from gym_diamond.errors import UserError
from training.data.ball_paths import return_geometry
from training.data.dataset import EpisodeDataset
from training.fidelity.bricks import brick_breaks
from training.fidelity.episode_reads import dream_reading_confusion
from training.fidelity.held_out import held_out_episodes, trained_episodes
from training.fidelity.measures import FIDELITY_HORIZONS, event_confusion
from training.fidelity.open_loop import dream_reward_recall, fidelity_lines
from training.fidelity.returns import ball_returns
from training.fidelity.serve import ball_serves
from training.runtime.cli import add_device_argument, user_errors


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="How faithful a world model is on held-out real episodes: one JSON line per horizon.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="judge on the episodes EpisodeDataset.split holds out at this fraction. Default: on the "
                             "checkpoint's own data, the fraction its run held out (a larger one is refused: it "
                             "would score episodes the model trained on); on data collected apart, every episode")
    parser.add_argument("--trained", action="store_true",
                        help="judge on the episodes the checkpoint trained on instead (its own data only): is it "
                             "underfit (low here too) or ungeneralised (low on held-out episodes only)?")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--horizons", type=int, nargs="+", default=list(FIDELITY_HORIZONS))
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--denoising-steps", type=int, default=None, help="override the sampler's (fewer: faster)")
    parser.add_argument("--sampler-start", choices=SAMPLER_STARTS, default=None,
                        help="override where the sampler starts: unit noise (DIAMOND's) or noise scaled to sigma_max "
                             "(EDM's)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                        help="override the sampler's: floor (DIAMOND's truncation) or round")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast of the networks")
    parser.add_argument("--reference-precision", choices=PRECISIONS, default=None,
                        help="also dream in this precision (same seeds): PSNR of each against the real frames "
                             "and between the two dreams")
    parser.add_argument("--events", action="store_true",
                        help="also score rewards and terminations on every held-out transition (confusion matrices), "
                             "read in fresh sequences of 19 (DIAMOND's training sequences) and, under "
                             "whole_episodes, over each whole episode as a gymnasium dream reads them (as the gates "
                             "judge both)")
    parser.add_argument("--events-noise", type=float, default=None, metavar="STD",
                        help="also score them on the real frames with Gaussian noise of this std (frames in [-1, 1]): "
                             "a reward/termination model that reads real frames to the pixel misses a dream's "
                             "events (no denoiser runs; try 0.03)")
    parser.add_argument("--serves", action="store_true",
                        help="also dream --samples real serves (the ball back after a point) and as many ball-less "
                             "pauses one step ahead: does the dream put the ball back in play? (Pong, Breakout)")
    parser.add_argument("--returns", action="store_true",
                        help="also dream --samples real returns of the ball off the player's paddle and as many "
                             "misses a few steps ahead with the real actions: does the dream bounce the ball where "
                             "the game does? (Pong, Breakout)")
    parser.add_argument("--bricks", action="store_true",
                        help="also dream --samples real steps that break bricks and as many that keep the wall one "
                             "step ahead: does the dream break the bricks the game breaks, and only those? "
                             "(Breakout)")
    args = parser.parse_args(argv)

    ckpt = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    if args.bricks and game_to_name(ckpt.game) != "Breakout":
        raise UserError(f"--bricks judges Breakout's wall: the checkpoint is a world model of {ckpt.game}")
    if args.returns:
        return_geometry(ckpt.game)  # refuse a game without a paddle line before dreaming anything
    model = ckpt.world_model.eval()
    sampler = model.config.sampler
    if args.denoising_steps:
        sampler = dataclasses.replace(sampler, num_steps=args.denoising_steps)
    if args.quantization:
        sampler = dataclasses.replace(sampler, quantization=args.quantization)
    if args.sampler_start:
        sampler = dataclasses.replace(sampler, start=args.sampler_start)
    model.config = model.config.replace(sampler=sampler)
    dataset = EpisodeDataset(args.data, game=ckpt.game)
    if args.trained:
        if args.test_fraction is not None:
            raise UserError("--trained judges the episodes the checkpoint trained on: give no --test-fraction")
        test_ids = trained_episodes(dataset, ckpt.provenance)
    else:
        test_ids = held_out_episodes(dataset, ckpt.provenance, args.test_fraction)
        if test_ids.size == 0:
            raise UserError(f"no held-out episode in {args.data} at --test-fraction {args.test_fraction}")
    judged = {"trained_episodes" if args.trained else "held_out_episodes": int(test_ids.size)}
    for line in fidelity_lines(model, dataset, test_ids, args.horizons, args.samples, seed=args.seed,
                               precision=args.precision, reference_precision=args.reference_precision):
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          "precision": args.precision,
                          "denoising_steps": sampler.num_steps, "sampler_start": sampler.start,
                          "quantization": sampler.quantization, **line}),
              flush=True)
    if args.events:
        report = event_confusion(model, dataset, test_ids)
        dream_recall = dream_reward_recall(model, dataset, test_ids, samples=args.samples, seed=args.seed)
        whole = dream_reading_confusion(model, dataset, test_ids).to_dict()
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          **report.to_dict(), "dream_reward_recall": dream_recall, "whole_episodes": whole}),
              flush=True)
    if args.events_noise is not None:
        report = event_confusion(model, dataset, test_ids, frame_noise=args.events_noise, seed=args.seed)
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          "events_noise": args.events_noise, **report.to_dict()}), flush=True)
    if args.serves:
        serves = ball_serves(model, dataset, test_ids, samples=args.samples, seed=args.seed)
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          "denoising_steps": sampler.num_steps, "sampler_start": sampler.start, "serves": serves.serves,
                          "serve_drawn": serves.recall(), "pauses": serves.pauses,
                          "pause_phantom": serves.phantom_rate()}), flush=True)
    if args.returns:
        returns = ball_returns(model, dataset, test_ids, samples=args.samples, seed=args.seed)
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          "denoising_steps": sampler.num_steps, "sampler_start": sampler.start,
                          **returns.to_dict()}), flush=True)
    if args.bricks:
        bricks = brick_breaks(model, dataset, test_ids, samples=args.samples, seed=args.seed)
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, **judged,
                          "denoising_steps": sampler.num_steps, "sampler_start": sampler.start,
                          "breaks": bricks.breaks, "break_drawn": bricks.recall(), "steady": bricks.steady,
                          "wall_phantom": bricks.phantom_rate()}), flush=True)


if __name__ == "__main__":
    main()
