"""The settings of a world-model training run: DIAMOND's by default, and the named recipes beside it.

``WorldModelTrainingConfig`` holds every choice of how the networks train (``training.world_model.trainer``) and
which of them a resumed run must repeat (``run_settings``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gym_diamond.acceleration import Acceleration
from gym_diamond.config import DenoiserConfig
from gym_diamond.errors import UserError
from training.data.dataset import DIAMOND_SAMPLE_WEIGHTS, check_sample_weights

# Named training recipes: the WorldModelTrainingConfig fields each sets, the others keeping DIAMOND's values.
# "cpu": the sample-efficiency study's best per update on a CPU budget so far (benchmarks/README.md, "Faithful
# dreams on a CPU budget"): the loss weighted on the pixels that change (the ball), training noise centred
# nearer sigma 5, where a one-step sampler decides the frame, and 10x DIAMOND's learning rate with a moving
# average of the weights exported (the ball gate at 750 updates, against 1,250 at 3e-4 and none by 1,500 at 1e-4)
RECIPES: dict[str, dict[str, Any]] = {
    "diamond": {},
    "cpu": {"changed_pixel_weight": 20.0, "train_sigma_loc": 0.4, "train_sigma_scale": 1.0, "lr": 1e-3,
            "ema_decay": 0.999},
}
CHANGED_PIXEL_SOURCES = ("target", "context", "both")  # WorldModelTrainingConfig.changed_pixel_source
# pixels around the last context change that "context" weights cover: Pong's ball moves at most 4.7 pixels a step in
# 99% of steps at 64x64 (3.2 in 95%; 3 episodes collected by the follower)
CONTEXT_REACH = 5
# fields a resumed run may change: how fast it runs and how often it is judged, not what it trains
NOT_RUN_SETTINGS = ("precision", "compile", "fidelity_every", "fidelity_samples", "recipe")
# settings added after runs were recorded without them: recorded only away from these defaults, so those runs resume
LATER_SETTINGS = {"denoiser_return_oversampling": 0.0, "denoiser_serve_oversampling": 0.0,
                  "denoiser_opponent_oversampling": 0.0, "rew_end_input_noise": 0.0,
                  "branch_from": None, "changed_pixel_source": "target", "init_from": None, "context_erasure": 0.0,
                  "context_ghosts": 0.0, "dream_contexts": 0.0, "dream_context_age": 100, "dream_context_tolerance": 48,
                  "termination_lead_in": 0}



@dataclass(frozen=True)
class WorldModelTrainingConfig:
    """DIAMOND's training of the world model (its ``config/trainer.yaml`` and ``src/trainer.py``).

    Every default is DIAMOND's; the options that differ from it are named and off by default.
    """

    batch_size: int = 32
    lr: float = 1e-4
    eps: float = 1e-8
    weight_decay: float = 0.01  # on linear, conv and LSTM weights only (training.runtime.optim)
    warmup_steps: int = 100
    denoiser_grad_clip: float = 1.0
    rew_end_grad_clip: float = 100.0
    # frames per reward/termination sequence: horizon 15 + context 4, so 18 transitions carry loss
    rew_end_sequence_length: int = 19
    # DIAMOND's num_autoregressive_steps: each denoiser sample has 1 + this many consecutive targets, the
    # later ones conditioned on the model's own estimate of the one before
    autoregressive_steps: int = 1
    # Episode sampling by recency groups (training.data.sampling.BatchSampler.episode_weights): DIAMOND's
    # (0.1, 0.1, 0.1, 0.7) for a growing dataset; None (length-proportional) is DIAMOND's rule for a
    # fixed dataset, which ``python -m training.world_model`` trains on
    sample_weights: tuple[float, ...] | None = DIAMOND_SAMPLE_WEIGHTS
    test_fraction: float = 0.0  # episodes held out for the fidelity benchmark (same split, seed 0)
    precision: str = "fp32"  # "bf16": autocast of the networks' forward passes (losses stay fp32)
    compile: bool = False  # torch.compile the denoiser's U-Net and the reward/termination model in place
    # GameNGen's answer to autoregressive drift, off for DIAMOND-exact training: Gaussian noise of a
    # per-sample level drawn uniformly in [0, context_noise] (frames in [-1, 1]) on the real context
    # frames, so the denoiser learns to repair a context that is slightly off, as its own dreamed frames are
    context_noise: float = 0.0
    # off for DIAMOND-exact training: in this share of denoiser samples, patches of what stays still over the sample
    # (walls, score) are faded towards the background in the context frames and kept in the targets, so the
    # denoiser learns to repair a fixed scene its own frames let fade (training.world_model.context_erasure)
    context_erasure: float = 0.0
    # off for DIAMOND-exact training: in this share of denoiser samples, a copy of something that moves (a paddle,
    # the ball) is pasted a few pixels away into the last context frames and left out of the targets, so the
    # denoiser learns to drop an object its own frames drew twice (training.world_model.context_ghosts)
    context_ghosts: float = 0.0
    # off for DIAMOND-exact training: this share of each denoiser batch is conditioned on contexts the denoiser dreamt
    # itself, rollouts from real contexts advanced one frame per update with the episode's actions, and predicts the
    # frame the real episode showed next, so that it learns to bring back a context its own frames spoiled
    # (training.world_model.dream_contexts). A rollout starts again after a length drawn uniformly in
    # 1..dream_context_age frames, or once its newest frame parts from the real one in more than
    # dream_context_tolerance pixels (where the real next frame no longer follows from the dream's context)
    dream_contexts: float = 0.0
    dream_context_age: int = 100
    dream_context_tolerance: int = 48
    # Terminations are rare (a Pong game ends every ~1,500 steps, so about one reward/termination batch in
    # three holds one): this fraction of each batch's sequences is cut around the end of a terminated
    # episode instead, so the termination head sees more of them. 0: DIAMOND's sampling
    termination_oversampling: float = 0.0
    # ... with at least this many transitions before the termination in each of those sequences: an ending may be
    # announced steps before it happens (ALE counts Breakout's life lost 30 frames, 8 steps, after the ball leaves
    # the screen, and the lives digit may change after the episode's last frame), so a sequence that starts after
    # the announcement asks the model to guess. 0: anywhere in the sequence
    termination_lead_in: int = 0
    # Rewards can be as rare (Boxing: 3% of transitions): this fraction of each batch's sequences is cut around a
    # rewarded transition instead, so the reward head sees more of them at a CPU's few thousand updates where
    # DIAMOND runs hundreds of thousands. 0: DIAMOND's sampling
    reward_oversampling: float = 0.0
    # The denoiser's side of it: this fraction of each denoiser batch predicts the frame right after a rewarded
    # transition (in Boxing, where a punch lands and the score changes), so that the dream learns to draw what
    # earns a reward; a dream that does not draw it never rewards its agents. 0: DIAMOND's sampling
    denoiser_reward_oversampling: float = 0.0
    # And for the bounce (Pong): this fraction of each denoiser batch predicts one of the frames right after the ball
    # reaches the player's paddle (training.data.ball_paths: the game returns it or lets it through), the rule an
    # agent must learn, which a few pixels of a few frames per rally barely weigh. 0: DIAMOND's sampling
    denoiser_return_oversampling: float = 0.0
    # And for the serve: this fraction predicts the frame where the ball comes back after frames without it
    # (training.data.ball_paths.serve_moments), one frame in a hundred of Pong's play. A dream that never serves
    # stalls after its first point; a Pong lead trained with the bounce oversampled drew no serve in its first 3,750
    # updates, where one without drew 89% at 3,450. 0: DIAMOND's sampling
    denoiser_serve_oversampling: float = 0.0
    # And for the opponent (Pong): this fraction predicts one of the frames after the ball comes within a few dozen
    # columns of the computer's paddle (training.data.ball_paths.opponent_moments), which no action moves: it
    # follows the ball. A dream whose paddle drifts off instead lets the ball by and pays points the game would not.
    # 0: DIAMOND's sampling
    denoiser_opponent_oversampling: float = 0.0
    # The reward/termination model reads the dream's frames in imagination but is trained on real ones, which a few
    # thousand updates let it memorise: a Pong termination model read P(end) 1.00 on real final frames and 0.0-0.6
    # on the dream's near-identical ones (and 0.0 on the real ones with Gaussian noise of std 0.03). With this level
    # N > 0, every frame of each training sequence gets Gaussian noise of a per-sequence std drawn uniformly in
    # [0, N] (frames in [-1, 1]), so that its judgement holds on frames a few levels off. 0: DIAMOND's training
    rew_end_input_noise: float = 0.0
    # Off (0) for DIAMOND-exact training: the denoiser's squared error on each target is weighted per pixel
    # by 1 + W where the target differs from the frame before it (dilated by a pixel: the moving ball and
    # its neighbourhood), normalised to a mean weight of 1 per frame (changed_pixel_weights). Against
    # dreams that drop the ball, a pixel or two of 4096 that DIAMOND's mean squared error barely weighs
    changed_pixel_weight: float = 0.0
    # Which pixels weigh 1 + W: "target", those where the target differs from the frame before it (the weight then
    # depends on the outcome, which tilts the optimum toward drawing the ball wherever it may go: at a pixel the ball
    # reaches with probability p the weighted mean is (1 + W)p / ((1 + W)p + 1 - p), 0.70 for p = 0.1 at W = 20, so
    # an uncertain bounce is drawn as several balls); "context", those that changed between the last two context
    # frames, dilated by CONTEXT_REACH pixels to cover the ball's next step: the ball's neighbourhood, chosen before
    # the outcome, so the optimum stays the conditional mean; "both", their union: "context" wherever the outcome lies
    # near a change in the context (a bounce), "target" where something appears away from any (Pong's serve, at a
    # fixed place, which "context" weighs below DIAMOND's loss: a lead trained with it drew no serve in 5,500 updates)
    changed_pixel_source: str = "target"
    # Every N updates (and at the end) judge the model on the held-out episodes (test_fraction > 0) and
    # append the figures to fidelity.csv (fidelity_figures); 0: never. Changes no training draw
    fidelity_every: int = 0
    fidelity_samples: int = 32  # held-out samples per figure (dreams and noisy frames)
    # The denoiser's training noise, ln sigma ~ Normal(train_sigma_loc, train_sigma_scale): None keeps the model
    # config's (DIAMOND's -0.4, 1.2). With one Euler step the sample is D(noise; sigma_max = 5), a next-frame
    # regression decided where DIAMOND's distribution puts 5% of its draws; a higher location trains more there.
    # Written into the checkpoint's denoiser config and provenance
    train_sigma_loc: float | None = None
    train_sigma_scale: float | None = None
    # Frames the denoiser is conditioned on (DIAMOND's num_steps_conditioning, 4): None keeps the model preset's. A
    # game whose next frame depends on more than the last 4 needs more: Pong serves the ball 16 steps after a
    # point, which 4 still frames cannot time, and a few-step sampler does not draw a 1-in-12 serve at random
    context_length: int | None = None
    # Exponential moving average of the weights (decay per update, warmed up as (1 + n) / (10 + n) over the first
    # updates); the average is what the checkpoint exports and fidelity.csv judges. 0: off, DIAMOND's training
    ema_decay: float = 0.0
    # Another run folder whose saved training state (weights, averages, optimizers, update counts, random streams)
    # this run starts from, trained on with this config's settings: an A/B of a change from a trained run at
    # equal updates, or a fix to a lead without starting over. None: from scratch
    branch_from: str | None = None
    # An exported checkpoint (a run's world_model.safetensors, a snapshot, a shipped dream) whose networks this run
    # starts from, with new optimisers warmed up again and the update counts its provenance records
    # (training.world_model.warm_start). None: from scratch
    init_from: str | None = None
    recipe: str = "diamond"  # the name of the recipe the other fields started from (RECIPES), for the record

    @classmethod
    def from_recipe(cls, recipe: str, **fields: Any) -> WorldModelTrainingConfig:
        """The config of a named recipe (RECIPES), with ``fields`` set over it."""
        if recipe not in RECIPES:
            raise UserError(f"unknown training recipe {recipe!r}: expected one of {sorted(RECIPES)}")
        return cls(**{**RECIPES[recipe], **fields, "recipe": recipe})

    def run_settings(self) -> dict[str, Any]:
        """The fields that decide what a run trains, which its resumes must repeat (speed and judging left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in NOT_RUN_SETTINGS and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}

    def training_noise(self, denoiser: DenoiserConfig) -> DenoiserConfig:
        """``denoiser`` with this config's training-noise distribution (the fields left None keep its own)."""
        overrides = {name: getattr(self, name) for name in ("train_sigma_loc", "train_sigma_scale")
                     if getattr(self, name) is not None}
        return dataclasses.replace(denoiser, **overrides)

    def denoiser_config(self, denoiser: DenoiserConfig) -> DenoiserConfig:
        """``denoiser`` with this config's training noise and context length (the fields left None keep its own)."""
        denoiser = self.training_noise(denoiser)
        if self.context_length is None:
            return denoiser
        return dataclasses.replace(denoiser, context_length=self.context_length)

    def __post_init__(self) -> None:
        if self.context_length is not None and self.context_length < 1:
            raise UserError(f"WorldModelTrainingConfig.context_length={self.context_length} is invalid: expected "
                            f">= 1 frame")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise UserError(f"WorldModelTrainingConfig.{name}={getattr(self, name)} is invalid: expected >= 1")
        if self.rew_end_sequence_length < 2:
            raise UserError(f"WorldModelTrainingConfig.rew_end_sequence_length={self.rew_end_sequence_length} is "
                            f"invalid: expected >= 2 frames (one transition)")
        if self.autoregressive_steps < 0:
            raise UserError(f"WorldModelTrainingConfig.autoregressive_steps={self.autoregressive_steps} is "
                            f"invalid: expected >= 0")
        if self.sample_weights is not None:
            object.__setattr__(self, "sample_weights", check_sample_weights(self.sample_weights))
        Acceleration(precision=self.precision)  # validates precision
        if not 0 <= self.test_fraction < 1:
            raise UserError(f"WorldModelTrainingConfig.test_fraction={self.test_fraction} is invalid: expected "
                            f"a fraction in [0, 1)")
        if not 0 <= self.termination_oversampling < 1:
            raise UserError(f"WorldModelTrainingConfig.termination_oversampling={self.termination_oversampling} is "
                            f"invalid: expected a fraction in [0, 1)")
        if not 0 <= self.termination_lead_in < self.rew_end_sequence_length - 1:
            raise UserError(f"WorldModelTrainingConfig.termination_lead_in={self.termination_lead_in} is invalid: "
                            f"expected 0 or more transitions, fewer than the rew_end_sequence_length - 1 = "
                            f"{self.rew_end_sequence_length - 1} of a sequence")
        if not (0 <= self.reward_oversampling < 1 and self.termination_oversampling + self.reward_oversampling < 1):
            raise UserError(f"WorldModelTrainingConfig.reward_oversampling={self.reward_oversampling} is invalid: "
                            f"expected a fraction in [0, 1) that leaves room for uniform sequences beside "
                             f"termination_oversampling={self.termination_oversampling}")
        shares = {name: getattr(self, name) for name in ("denoiser_reward_oversampling", "denoiser_return_oversampling",
                                                         "denoiser_serve_oversampling",
                                                         "denoiser_opponent_oversampling")}
        for name, share in shares.items():
            if not 0 <= share < 1:
                raise UserError(f"WorldModelTrainingConfig.{name}={share} is invalid: expected a fraction in [0, 1)")
        if sum(shares.values()) >= 1:
            raise UserError(f"WorldModelTrainingConfig: {' + '.join(f'{k}={v}' for k, v in shares.items())} "
                            f"leave no room for uniform samples: their sum must be below 1")
        if self.changed_pixel_source not in CHANGED_PIXEL_SOURCES:
            raise UserError(f"WorldModelTrainingConfig.changed_pixel_source={self.changed_pixel_source!r} is invalid: "
                            f"expected one of {CHANGED_PIXEL_SOURCES}")
        if self.changed_pixel_source != "target" and self.context_length is not None and self.context_length < 2:
            raise UserError(f"changed_pixel_source={self.changed_pixel_source!r} compares the last two context "
                            f"frames: it needs context_length >= 2, got {self.context_length}")
        if self.changed_pixel_weight < 0:
            raise UserError(f"WorldModelTrainingConfig.changed_pixel_weight={self.changed_pixel_weight} is "
                            f"invalid: expected >= 0 (0: DIAMOND's loss)")
        if self.fidelity_every < 0 or self.fidelity_samples < 1:
            raise UserError(f"WorldModelTrainingConfig: fidelity_every must be >= 0 and fidelity_samples >= 1, got "
                            f"{self.fidelity_every} and {self.fidelity_samples}")
        if self.fidelity_every and self.test_fraction == 0:
            raise UserError("fidelity logging (fidelity_every > 0, --fidelity-every) judges the model on held-out "
                            "episodes: hold some out with test_fraction > 0 (--test-fraction)")
        if self.context_noise < 0:
            raise UserError(f"WorldModelTrainingConfig.context_noise={self.context_noise} is invalid: expected >= 0")
        if not 0 <= self.context_erasure <= 1:
            raise UserError(f"WorldModelTrainingConfig.context_erasure={self.context_erasure} is invalid: expected a "
                            f"share in [0, 1] (0: DIAMOND's training)")
        if not 0 <= self.context_ghosts <= 1:
            raise UserError(f"WorldModelTrainingConfig.context_ghosts={self.context_ghosts} is invalid: expected a "
                            f"share in [0, 1] (0: DIAMOND's training)")
        if not 0 <= self.dream_contexts <= 1:
            raise UserError(f"WorldModelTrainingConfig.dream_contexts={self.dream_contexts} is invalid: expected a "
                            f"share in [0, 1] (0: DIAMOND's training)")
        if self.dream_contexts > 0 and round(self.dream_contexts * self.batch_size) < 1:
            raise UserError(f"dream_contexts={self.dream_contexts} of a batch of {self.batch_size} is no sample: "
                            f"raise it to at least {0.5 / self.batch_size:.3g}")
        if self.dream_contexts > 0 and sum(shares.values()) + self.dream_contexts > 1:
            raise UserError(f"WorldModelTrainingConfig: {' + '.join(f'{k}={v}' for k, v in shares.items())} + "
                            f"dream_contexts={self.dream_contexts} exceed the batch: their sum must be at most 1")
        if self.dream_context_age < 1 or self.dream_context_tolerance < 0:
            raise UserError(f"WorldModelTrainingConfig: dream_context_age must be >= 1 frame and "
                            f"dream_context_tolerance >= 0 pixels, got {self.dream_context_age} and "
                            f"{self.dream_context_tolerance}")
        if self.rew_end_input_noise < 0:
            raise UserError(f"WorldModelTrainingConfig.rew_end_input_noise={self.rew_end_input_noise} is invalid: "
                            f"expected >= 0 (0: DIAMOND's training)")
        if self.train_sigma_scale is not None and self.train_sigma_scale <= 0:
            raise UserError(f"WorldModelTrainingConfig.train_sigma_scale={self.train_sigma_scale} is invalid: "
                            f"expected > 0")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"WorldModelTrainingConfig.ema_decay={self.ema_decay} is invalid: expected a decay in "
                            f"[0, 1) (0: no average)")
        if self.branch_from is not None and self.init_from is not None:
            raise UserError("a run starts from another run's state (branch_from) or from a checkpoint (init_from), "
                            "not both")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise UserError(f"WorldModelTrainingConfig: lr must be > 0 and warmup_steps >= 0, got {self.lr}, "
                            f"{self.warmup_steps}")
