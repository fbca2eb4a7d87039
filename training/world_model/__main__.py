"""``python -m training.world_model``: train (or resume) a DIAMOND world model on collected episodes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gym_diamond.config import MODEL_SIZES
from training.data.minari_format import local_episodes
from training.runtime.cli import add_device_argument, add_speed_arguments, user_errors
from training.runtime.distributed import init_distributed
from training.world_model.run import train_world_model
from training.world_model.training_config import CHANGED_PIXEL_SOURCES, RECIPES, WorldModelTrainingConfig

DEFAULTS = WorldModelTrainingConfig()  # the command's defaults are the trainer's


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a DIAMOND world model on a dataset of real episodes.")
    parser.add_argument("--game", default=None,
                        help="Atari game, e.g. Pong, or the Gymnasium id the data was recorded in (default: the "
                             "dataset's)")
    parser.add_argument("--data", required=True,
                        help="dataset folder (python -m training.data.collect), or a local Minari dataset (its id or "
                             "folder; converted once into OUT/data)")
    parser.add_argument("--out", required=True, help="run folder: training state, losses.csv, checkpoint")
    parser.add_argument("--steps", type=int, required=True, help="updates of each network (total, not more)")
    parser.add_argument("--model", choices=sorted(MODEL_SIZES), default="paper", help="model size")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help="samples per update and process: under torchrun the global batch is N times this")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--rew-end-sequence-length", type=int, default=DEFAULTS.rew_end_sequence_length,
                        help="frames per reward/termination training sequence (DIAMOND: 19, 18 transitions)")
    parser.add_argument("--warmup-steps", type=int, default=DEFAULTS.warmup_steps,
                        help="updates over which the learning rate rises linearly from 0 (DIAMOND: 100)")
    parser.add_argument("--autoregressive-steps", type=int, default=DEFAULTS.autoregressive_steps,
                        help="denoiser targets after the first, each conditioned on the model's own estimate of "
                             "the one before (DIAMOND: 1)")
    parser.add_argument("--sample-weights", type=float, nargs="+", default=None,
                        help="probabilities of the dataset's recency groups, oldest first (e.g. DIAMOND's 0.1 0.1 "
                             "0.1 0.7 for a growing dataset; default: length-proportional, DIAMOND's rule for a "
                             "fixed dataset)")
    parser.add_argument("--test-fraction", type=float, default=DEFAULTS.test_fraction,
                        help="hold out this fraction of episodes (the fidelity benchmark's split)")
    parser.add_argument("--context-noise", type=float, default=DEFAULTS.context_noise,
                        help="train the denoiser on context frames with Gaussian noise up to this level (frames in "
                             "[-1, 1]; GameNGen's remedy for drift; 0, the default, is DIAMOND's training)")
    parser.add_argument("--context-erasure", type=float, default=DEFAULTS.context_erasure,
                        help="share of denoiser samples whose still parts (walls, score) are faded in the context "
                             "and kept in the target, so the denoiser learns to repair a fading court (0, the "
                             "default, is DIAMOND's training)")
    parser.add_argument("--context-ghosts", type=float, default=DEFAULTS.context_ghosts,
                        help="share of denoiser samples with a copy of a moving object (a paddle, the ball) pasted "
                             "a few pixels away in the last context frames and not in the target, so the denoiser "
                             "learns to drop an object its own frames drew twice (0, the default, is DIAMOND's "
                             "training)")
    parser.add_argument("--dream-contexts", type=float, default=DEFAULTS.dream_contexts,
                        help="share of denoiser samples conditioned on contexts the denoiser dreamt itself from real "
                             "ones (one frame per update, the episode's actions) with the real next frames as "
                             "targets, so it learns to bring back a context its own frames spoiled (0, the default, "
                             "is DIAMOND's training)")
    parser.add_argument("--dream-context-age", type=int, default=DEFAULTS.dream_context_age,
                        help="the most frames a dream context's rollout draws before it starts again from a real "
                             "context (each draws its length uniformly up to this)")
    parser.add_argument("--dream-context-tolerance", type=int, default=DEFAULTS.dream_context_tolerance,
                        help="a rollout starts again once its newest frame differs from the real one in more than "
                             "this many pixels (by 32 or more of 255 levels)")
    parser.add_argument("--termination-oversampling", type=float, default=DEFAULTS.termination_oversampling,
                        help="fraction of each reward/termination batch cut around a real termination (0, the "
                             "default: DIAMOND's uniform sampling)")
    parser.add_argument("--termination-lead-in", type=int, default=DEFAULTS.termination_lead_in,
                        help="transitions before the termination that each of those sequences holds at least, for "
                             "endings announced steps before they happen (Breakout counts a life lost 8 steps "
                             "after the ball leaves the screen); 0, the default: anywhere in the sequence")
    parser.add_argument("--reward-oversampling", type=float, default=DEFAULTS.reward_oversampling,
                        help="fraction of each reward/termination batch cut around a rewarded transition, for games "
                             "whose rewards are rare (0, the default: DIAMOND's uniform sampling)")
    parser.add_argument("--denoiser-reward-oversampling", type=float,
                        default=DEFAULTS.denoiser_reward_oversampling,
                        help="fraction of each denoiser batch whose target is the frame right after a rewarded "
                             "transition, so that the dream learns to draw what earns a reward (0, the default: "
                             "DIAMOND's sampling)")
    parser.add_argument("--denoiser-return-oversampling", type=float,
                        default=DEFAULTS.denoiser_return_oversampling,
                        help="fraction of each denoiser batch whose target is one of the frames right after the ball "
                             "reaches the player's paddle, returned or let through, so that the dream learns the "
                             "bounce (Pong, Breakout; 0, the default: DIAMOND's sampling)")
    parser.add_argument("--denoiser-serve-oversampling", type=float, default=DEFAULTS.denoiser_serve_oversampling,
                        help="fraction of each denoiser batch whose target is the frame where the ball comes back "
                             "after frames without it (a serve), so that the dream puts the ball back in play "
                             "(Pong, Breakout; 0, the default: DIAMOND's sampling)")
    parser.add_argument("--denoiser-opponent-oversampling", type=float,
                        default=DEFAULTS.denoiser_opponent_oversampling,
                        help="fraction of each denoiser batch whose target is one of the frames after the ball comes "
                             "towards the opponent's paddle, which follows it, so that the dream's opponent follows "
                             "the ball (Pong; 0, the default: DIAMOND's sampling)")
    parser.add_argument("--rew-end-input-noise", type=float, default=DEFAULTS.rew_end_input_noise,
                        help="train the reward/termination model on frames with Gaussian noise up to this level "
                             "(frames in [-1, 1]), so that it reads a dream's frames, a few levels off the real "
                             "ones, as it reads real ones (0, the default: DIAMOND's training)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="diamond",
                        help="named training recipe, the flags below set over it: diamond (the default: DIAMOND's "
                             "trainer) or cpu (the loss weighted on changed pixels and training noise nearer the "
                             f"sampler's start: {RECIPES['cpu']}; more dream fidelity per update on a CPU budget, "
                             "benchmarks/README.md)")
    parser.add_argument("--changed-pixel-weight", type=float, default=None,
                        help="weight the denoiser's squared error by 1 + W on the pixels that change from the frame "
                             "before (dilated by a pixel), normalised to a mean weight of 1 per frame: against "
                             "dreams that drop the ball (default: the recipe's; DIAMOND: 0). A resumed run keeps it")
    parser.add_argument("--changed-pixel-source", choices=CHANGED_PIXEL_SOURCES, default=DEFAULTS.changed_pixel_source,
                        help="which pixels --changed-pixel-weight weighs: where the target differs from the frame "
                             "before (target, the default), or around what changed between the last two context "
                             "frames (context: chosen before the outcome, so an uncertain ball is not drawn at "
                             "every place it may go), or the union of the two (both: context, and where something "
                             "appears away from any change in the context, such as a serve)")
    parser.add_argument("--fidelity-every", type=int, default=DEFAULTS.fidelity_every,
                        help="every N updates (and at the end) judge the model on the held-out episodes (needs "
                             "--test-fraction > 0) and append a row to OUT/fidelity.csv: open-loop ball/paddle "
                             "agreement and pooled PSNR at horizons 1/5/15, the ball kept by the denoiser at each "
                             "noise level, event recall/precision. Trains the same weights as without (0: off)")
    parser.add_argument("--train-sigma-loc", type=float, default=None,
                        help="location of the denoiser's training noise, ln sigma ~ Normal(LOC, SCALE) (default: the "
                             "recipe's; DIAMOND: -0.4). A higher location trains more where the sampler starts "
                             "(sigma 5)")
    parser.add_argument("--train-sigma-scale", type=float, default=None,
                        help="scale of the denoiser's training noise in ln sigma (default: the recipe's; DIAMOND: 1.2)")
    parser.add_argument("--context-length", type=int, default=None,
                        help="frames the denoiser is conditioned on (default: the model preset's, DIAMOND's 4). Pong "
                             "needs 16: it serves the ball 16 steps after a point, which 4 still frames cannot time; "
                             "the preset's cond channels must divide by it")
    parser.add_argument("--lr", type=float, default=None,
                        help="AdamW learning rate after warm-up (default: the recipe's; DIAMOND: 1e-4 at batch 32). A "
                             "resumed run keeps it")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="export (and judge) an exponential moving average of the weights with this decay per "
                             "update, e.g. 0.999 (default: the recipe's; DIAMOND: 0, the weights themselves)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="stop at the first save after this much wall time, export the checkpoint and leave the "
                             "state to resume: the same command continues towards --steps")
    parser.add_argument("--branch-from", default=None, metavar="RUN",
                        help="start from the saved state of another run folder (weights, optimizers, update count) "
                             "and train on with this command's settings, e.g. to try a change on a trained run; "
                             "the networks must be the same, the training noise (--train-sigma-loc, "
                             "--train-sigma-scale) may differ; the same command resumes the branch")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start from an exported checkpoint's networks (a run's world_model.safetensors, a "
                             "snapshot, a shipped dream such as gym_diamond/pretrained/Pong.safetensors): its "
                             "weights, the update counts and CPU time its provenance records, new optimisers warmed "
                             "up again; same model size and context length. --steps stays the total; the same "
                             "command resumes the run")
    parser.add_argument("--fidelity-samples", type=int, default=DEFAULTS.fidelity_samples,
                        help="held-out samples per fidelity figure (dreams and noisy frames; default 32)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only-rew-end", action="store_true",
                      help="train the reward/termination model alone (--steps counts its updates): a fine-tuning "
                           "that leaves the denoiser as it is")
    only.add_argument("--only-denoiser", action="store_true",
                      help="train the denoiser alone (the reward/termination model stays as it is)")
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps} trains nothing: give the total number of updates (>= 1)")
    if args.fidelity_every and args.test_fraction == 0:
        parser.error("--fidelity-every judges the model on held-out episodes: hold some out with --test-fraction "
                     "(e.g. 0.1)")
    over_recipe = ("changed_pixel_weight", "train_sigma_loc", "train_sigma_scale", "lr", "ema_decay", "context_length")
    chosen = {name: getattr(args, name) for name in over_recipe if getattr(args, name) is not None}
    config = WorldModelTrainingConfig.from_recipe(
        args.recipe, batch_size=args.batch_size, rew_end_sequence_length=args.rew_end_sequence_length,
        autoregressive_steps=args.autoregressive_steps, warmup_steps=args.warmup_steps,
        sample_weights=tuple(args.sample_weights) if args.sample_weights else None, test_fraction=args.test_fraction,
        precision=args.precision or "fp32", compile=args.compile, context_noise=args.context_noise,
        context_erasure=args.context_erasure, context_ghosts=args.context_ghosts,
        dream_contexts=args.dream_contexts, dream_context_age=args.dream_context_age,
        dream_context_tolerance=args.dream_context_tolerance,
        termination_oversampling=args.termination_oversampling, termination_lead_in=args.termination_lead_in,
        reward_oversampling=args.reward_oversampling,
        denoiser_reward_oversampling=args.denoiser_reward_oversampling,
        denoiser_return_oversampling=args.denoiser_return_oversampling,
        denoiser_serve_oversampling=args.denoiser_serve_oversampling,
        denoiser_opponent_oversampling=args.denoiser_opponent_oversampling,
        rew_end_input_noise=args.rew_end_input_noise, fidelity_every=args.fidelity_every,
        fidelity_samples=args.fidelity_samples, changed_pixel_source=args.changed_pixel_source,
        branch_from=None if args.branch_from is None else str(Path(args.branch_from).resolve()),
        init_from=None if args.init_from is None else str(Path(args.init_from).resolve()), **chosen)
    data = local_episodes(args.data, Path(args.out) / "data")
    try:
        networks = "rew_end" if args.only_rew_end else "denoiser" if args.only_denoiser else "both"
        path = train_world_model(args.game, data, args.out, args.steps, model_preset=args.model, device=args.device,
                                 seed=args.seed, save_every=args.save_every, config=config, networks=networks,
                                 time_budget=args.time_budget)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trainer saved its state on the way out
        print(f"interrupted: the training state is saved in {Path(args.out) / 'train_state.safetensors'}; run the "
              f"same command to continue", file=sys.stderr)
        raise SystemExit(130) from None
    distributed, _ = init_distributed(args.device)
    if distributed.is_main:
        print(f"world model checkpoint: {path}")
    distributed.close()


if __name__ == "__main__":
    main()
