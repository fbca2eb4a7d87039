"""--changed-pixel-weight: the denoiser's squared error weighted up where the target frame changes (off by default,
where the loss is DIAMOND's own)."""

import numpy as np
import pytest
import torch
from torch import nn

from gym_diamond import WorldModel, load_checkpoint, tiny_world_model_config
from gym_diamond.diffusion import TrainingNoise, conditioners
from training.data.dataset import Episode, EpisodeDataset
from training.runtime.state import load_state, save_state
from training.world_model.__main__ import main as world_model_main
from training.world_model.objectives import changed_pixel_weights
from training.world_model.run import train_world_model
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import CONTEXT_REACH, WorldModelTrainingConfig

PIXELS = 3 * 64 * 64


def _frames(n: int = 2, K: int = 1) -> torch.Tensor:
    """n samples of 4 context frames and K targets, all one grey level: nothing changes."""
    return torch.full((n, 4 + K, 3, 64, 64), 0.2)


def test_changed_pixels_are_dilated_by_one_pixel_and_the_weights_average_one():
    frames = _frames(K=2)
    frames[0, 4:, 1, 10, 20] = -0.6  # the first target changes one pixel (of one channel) from the last context frame
    frames[1, 5, :, 0, 0] = 1.0  # the second target changes a corner pixel from the first target
    weights = changed_pixel_weights(frames, 4, 3.0)
    assert weights.shape == (2, 2, 64, 64)
    mean = 1 + 3.0 * 9 / 4096  # a 3x3 neighbourhood weighs 1 + W
    expected = torch.full((64, 64), 1 / mean)
    expected[9:12, 19:22] = 4 / mean
    torch.testing.assert_close(weights[0, 0], expected)
    torch.testing.assert_close(weights[0, 1], torch.ones(64, 64))  # the same as the frame before it: all 1
    corner = torch.full((64, 64), 1 / (1 + 3.0 * 4 / 4096))
    corner[:2, :2] *= 4  # clipped at the border: 2x2 pixels
    torch.testing.assert_close(weights[1, 1], corner)
    torch.testing.assert_close(weights[1, 0], torch.ones(64, 64))
    frames[0, 4] = -frames[0, 3]  # everything changed (a first frame after grey padding): DIAMOND's weights
    torch.testing.assert_close(changed_pixel_weights(frames, 4, 3.0)[0, 0], torch.ones(64, 64))


class _OffByOne(nn.Module):
    """A stand-in for the U-Net: the exact training target of noiseless inputs, plus ``scale`` at one pixel of
    channel 0, so the per-pixel squared error is ``scale``^2 there and 0 elsewhere."""

    def __init__(self, sigma: float, pixel: tuple[int, int]) -> None:
        super().__init__()
        self.cs = conditioners(torch.tensor([sigma]), 0.5, 0.3)
        self.pixel = pixel
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x, c_noise, context, actions):
        cs = self.cs
        delta = torch.zeros_like(x)
        delta[:, 0, self.pixel[0], self.pixel[1]] = 1
        return x / cs.c_in * (1 - cs.c_skip) / cs.c_out + self.scale * delta


def _loss(pixel: tuple[int, int], weight: float,
          frame_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, nn.Module]:
    model = WorldModel(tiny_world_model_config(num_actions=3))
    denoiser = model.denoiser
    denoiser.net = _OffByOne(1.0, pixel)
    frames = _frames()
    frames[0, 4, :, 10, 20] = -0.6  # sample 0's target differs from its last context frame in one pixel
    n = len(frames)
    draws = [TrainingNoise(torch.ones(n), torch.zeros(n, 3, 1, 1), torch.zeros(n, 3, 64, 64))]
    mask = torch.ones(n, 5, dtype=torch.bool) if frame_mask is None else frame_mask
    pixel_weight = changed_pixel_weights(frames, 4, weight) if weight > 0 else None
    loss = denoiser.autoregressive_loss(frames, torch.zeros(n, 4, dtype=torch.long), mask, draws,
                                        pixel_weight=pixel_weight)
    return loss, denoiser.net


@pytest.mark.parametrize("weight", [0.0, 1.0, 10.0])
def test_the_error_on_a_changed_pixel_weighs_one_plus_w_over_the_mean_weight(weight):
    mean = 1 + weight * 9 / 4096
    # the error sits on a changed pixel's neighbour (dilated in) of sample 0, and on the same unchanged pixel of 1
    loss, net = _loss((10, 21), weight)
    torch.testing.assert_close(loss, torch.tensor(((1 + weight) / mean + 1) / 2 / PIXELS), rtol=1e-5, atol=0)
    loss.backward()  # d/dscale of scale^2 * w / PIXELS, averaged over the two samples
    torch.testing.assert_close(net.scale.grad, torch.tensor(2 * ((1 + weight) / mean + 1) / 2 / PIXELS),
                               rtol=1e-5, atol=0)
    far, _ = _loss((40, 40), weight)  # on a pixel that did not change: 1 / mean in sample 0
    torch.testing.assert_close(far, torch.tensor((1 / mean + 1) / 2 / PIXELS), rtol=1e-5, atol=0)
    padded = torch.ones(2, 5, dtype=torch.bool)
    padded[1, 4] = False  # sample 1's target is padding: it carries no loss, whatever its weights
    alone, _ = _loss((10, 21), weight, padded)
    torch.testing.assert_close(alone, torch.tensor((1 + weight) / mean / PIXELS), rtol=1e-5, atol=0)


def test_weights_of_one_give_diamonds_loss_exactly_and_the_weights_reach_the_unet():
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 6, 3, 64, 64, generator=g) * 2 - 1
    frames[:, 4:] = frames[:, 3:4]  # the targets repeat the last context frame but for a small block each
    frames[:, 4, :, 10:13, 20:23] = frames[:, 5, :, 40:42, 5:8] = -1.0
    actions, mask = torch.randint(0, 3, (3, 5), generator=g), torch.ones(3, 6, dtype=torch.bool)
    draws = [TrainingNoise.draw((3, 3, 64, 64), model.denoiser.config, g) for _ in range(2)]
    diamond = model.denoiser.autoregressive_loss(frames, actions, mask, draws)
    ones = model.denoiser.autoregressive_loss(frames, actions, mask, draws, pixel_weight=torch.ones(3, 2, 64, 64))
    assert torch.equal(diamond, ones)
    weights = changed_pixel_weights(frames, 4, 5.0)
    assert (weights != 1).all(dim=(2, 3)).all()
    weighted = model.denoiser.autoregressive_loss(frames, actions, mask, draws, pixel_weight=weights)
    assert weighted != diamond
    weighted.backward()
    grads = [p.grad for p in model.denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match=r"pixel_weight must be \(n, K, h, w\)"):
        model.denoiser.autoregressive_loss(frames, actions, mask, draws, pixel_weight=torch.ones(3, 1, 64, 64))


def _moving_ball_dataset(root) -> EpisodeDataset:
    """Two episodes of a white pixel crossing a brown court, one pixel a step."""
    dataset = EpisodeDataset(root, game="Pong")
    for e in range(2):
        frames = np.empty((41, 64, 64, 3), np.uint8)
        frames[:] = (144, 72, 17)
        for t in range(41):
            frames[t, 20 + e, 10 + t] = 236
        z = np.zeros(40, bool)
        dataset.append(Episode(frames, np.zeros(40, np.int64), np.zeros(40, np.float32), z, z.copy(), z.copy()))
    return dataset


def _first_update(dataset, weight: float, monkeypatch=None) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=6))
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=4, warmup_steps=0,
                                                                         changed_pixel_weight=weight))
    seen = {}
    loss = model.denoiser.autoregressive_loss

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return loss(*args, **kwargs)

    model.denoiser.autoregressive_loss = spy
    scalars = trainer.denoiser_step()
    assert np.isfinite(scalars["denoiser_loss"]) and scalars["denoiser_grad_norm"] > 0
    return torch.cat([p.detach().flatten() for p in model.denoiser.parameters()]), seen


def test_the_trainer_weights_the_changed_pixels_only_when_asked(tmp_path):
    dataset = _moving_ball_dataset(tmp_path / "data")
    diamond, seen = _first_update(dataset, 0.0)
    assert "pixel_weight" not in seen  # DIAMOND's loss, called as before
    weighted, seen = _first_update(dataset, 20.0)
    weights = seen["pixel_weight"]
    assert weights.shape == (4, 2, 64, 64)
    torch.testing.assert_close(weights.mean(dim=(2, 3)), torch.ones(4, 2))
    # the ball where it was and where it is, dilated (no target of this draw follows grey padding)
    assert ((weights > 1).sum(dim=(2, 3)) >= 9).all()
    assert not torch.equal(diamond, weighted)
    with pytest.raises(ValueError, match="changed_pixel_weight"):
        WorldModelTrainingConfig(changed_pixel_weight=-1.0)


def test_the_weight_is_recorded_and_a_resumed_run_keeps_it(tmp_path, capsys):
    data = tmp_path / "data"
    dataset = _moving_ball_dataset(data)
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=3, changed_pixel_weight=2.0)
    save_state(tmp_path / "state.safetensors",
               WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset, config).state_dict())
    state = load_state(tmp_path / "state.safetensors")
    assert state["config"]["changed_pixel_weight"] == 2.0

    out = tmp_path / "run"
    argv = ["--game", "Pong", "--data", str(data), "--out", str(out), "--model", "tiny", "--batch-size", "2",
            "--rew-end-sequence-length", "3", "--device", "cpu"]
    world_model_main([*argv, "--steps", "1", "--changed-pixel-weight", "1.5"])
    assert load_checkpoint(out / "world_model.safetensors").provenance["changed_pixel_weight"] == 1.5
    with pytest.raises(SystemExit) as exit_info:
        world_model_main([*argv, "--steps", "2"])
    assert exit_info.value.code == 2 and "changed_pixel_weight: 1.5 there, 0.0 now" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the learning rate, the noise, ...: any setting of what the run trains
        world_model_main([*argv, "--steps", "2", "--changed-pixel-weight", "1.5", "--lr", "1e-3"])
    assert "lr: 0.0001 there, 0.001 now" in capsys.readouterr().err
    world_model_main([*argv, "--steps", "2", "--changed-pixel-weight", "1.5", "--fidelity-samples", "8"])  # judging
    path = train_world_model("Pong", data, out, 3, model_preset="tiny", device="cpu", progress=False,
                             config=WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=3,
                                                             changed_pixel_weight=1.5, sample_weights=None))
    assert load_checkpoint(path).provenance["denoiser_steps"] == 3


def _bounce(targets_at: list[tuple[int, int]]) -> torch.Tensor:
    """One sample per target position: a ball (1.0 on a 0.0 court) at column 28, then 30, of row 30 in the last two of
    4 context frames, and the target's ball at the given (row, column)."""
    frames = torch.zeros(len(targets_at), 5, 3, 64, 64)
    frames[:, 2, :, 30, 28] = frames[:, 3, :, 30, 30] = 1.0
    for i, (row, column) in enumerate(targets_at):
        frames[i, 4, :, row, column] = 1.0
    return frames


def test_context_weights_are_set_before_the_outcome_and_keep_the_optimum_at_the_mean():
    # the ball goes on along its row in one sample of ten, and bounces 6 rows down in the other nine
    frames = _bounce([(30, 32)] + [(36, 32)] * 9)
    target_pixel = (30, 32)
    context = changed_pixel_weights(frames, 4, 20.0, source="context")
    assert all(torch.equal(context[0], context[i]) for i in range(10))  # the same whatever the target shows
    reach = CONTEXT_REACH
    assert (context[0, 0, 30 - reach:31 + reach, 28 - reach:31 + reach] > 1).all()  # around the two context balls
    assert context[0, 0, 30 + reach + 1, 30] < 1 and context[0, 0, 30, 30 + reach + 1] < 1  # nothing beyond

    def weighted_optimum(weights: torch.Tensor) -> float:
        """The value a per-pixel weighted squared error is least for at the pixel: sum(w * y) / sum(w)."""
        w, y = weights[:, 0][(slice(None), *target_pixel)], frames[:, 4, 0][(slice(None), *target_pixel)]
        return float((w * y).sum() / w.sum())

    # the ball is at the pixel in 1 sample of 10: the unweighted optimum is 0.1; weighting by the outcome draws most
    # of a ball there, weighting by the context leaves the mean
    assert weighted_optimum(changed_pixel_weights(frames, 4, 20.0, source="target")) > 0.6
    assert weighted_optimum(context) == pytest.approx(0.1)


def test_both_weighs_a_bounce_as_context_does_and_a_serve_where_it_appears():
    # a bounce: every outcome within a step's reach of the ball's last moves, where "context" already weighs
    bounce = _bounce([(30, 32)] + [(33, 32)] * 9)
    torch.testing.assert_close(changed_pixel_weights(bounce, 4, 20.0, source="both"),
                               changed_pixel_weights(bounce, 4, 20.0, source="context"))
    # a serve: no ball in the context, the opponent's paddle moving far away, the ball appearing mid-court
    serve = torch.zeros(2, 5, 3, 64, 64)
    serve[:, 2, :, 10:14, 4] = serve[:, 3, :, 11:15, 4] = serve[:, 4, :, 12:16, 4] = 1.0  # the paddle, one row a step
    serve[0, 4, :, 34, 32] = 1.0  # served in the first sample, not yet in the second
    context = changed_pixel_weights(serve, 4, 20.0, source="context")
    both = changed_pixel_weights(serve, 4, 20.0, source="both")
    assert context[0, 0, 34, 32] < 1  # weighed below DIAMOND's loss: the paddle's moves take the weight
    assert both[0, 0, 34, 32] > 5 and both[0, 0, 33, 31] > 5  # the new ball and the pixel beside it
    assert both[1, 0, 34, 32] < 1  # nothing appeared: as "context"
    torch.testing.assert_close(both[1], context[1])


def test_the_source_is_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="changed_pixel_source"):
        WorldModelTrainingConfig(changed_pixel_source="outcome")
    with pytest.raises(ValueError, match="context_length >= 2"):
        WorldModelTrainingConfig(changed_pixel_source="context", context_length=1)
    with pytest.raises(ValueError, match="L >= 2"):
        changed_pixel_weights(torch.zeros(1, 2, 3, 64, 64), 1, 20.0, source="context")
    with pytest.raises(ValueError, match="context_length >= 2"):
        WorldModelTrainingConfig(changed_pixel_source="both", context_length=1)
    with pytest.raises(ValueError, match="expected one of"):
        changed_pixel_weights(torch.zeros(1, 2, 3, 64, 64), 1, 20.0, source="outcome")
    data = tmp_path / "data"
    _moving_ball_dataset(data)
    out = tmp_path / "run"
    world_model_main(["--game", "Pong", "--data", str(data), "--out", str(out), "--model", "tiny", "--batch-size", "2",
                      "--rew-end-sequence-length", "3", "--device", "cpu", "--steps", "1",
                      "--changed-pixel-weight", "20", "--changed-pixel-source", "context"])
    assert load_checkpoint(out / "world_model.safetensors").provenance["changed_pixel_source"] == "context"
