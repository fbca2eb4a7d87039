"""The world model trains as DIAMOND's trainer does: its denoiser objective, padding, optimiser and init.

Behaviour checks on tiny networks; tests/test_diamond_training.py holds the same against fixtures made
with DIAMOND's own code.
"""

import numpy as np
import pytest
import torch
from torch import nn

from gym_diamond.config import tiny_world_model_config
from gym_diamond.diffusion import TrainingNoise, conditioners, quantize
from gym_diamond.nn.blocks import Downsample, ResBlock, init_lstm
from gym_diamond.world_model import WorldModel
from training.data.dataset import Episode, EpisodeDataset
from training.runtime.optim import adamw, decay_groups, optimizer_update, warmup_lr
from training.world_model.trainer import WorldModelTrainer, segment_tensors
from training.world_model.training_config import WorldModelTrainingConfig


def tiny_model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(tiny_world_model_config(num_actions=3))
    with torch.no_grad():  # leave DIAMOND's zero init behind, so every output depends on every input
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def draws(n: int, k: int, model: WorldModel, seed: int = 1) -> list[TrainingNoise]:
    g = torch.Generator().manual_seed(seed)
    return [TrainingNoise.draw((n, 3, 64, 64), model.denoiser.config, g) for _ in range(k)]


def test_second_target_sees_the_models_own_quantised_estimate_without_gradient(monkeypatch):
    model = tiny_model()
    denoiser, L = model.denoiser, 4
    frames = torch.rand(2, L + 2, 3, 64, 64) * 2 - 1
    actions = torch.randint(0, 3, (2, L + 1))
    mask = torch.ones(2, L + 2, dtype=torch.bool)
    d = draws(2, 2, model)
    calls = []
    net = denoiser.net.forward

    def spy(noisy, c_noise, context, acts):
        out = net(noisy, c_noise, context, acts)
        calls.append((noisy, context, acts, out))
        return out

    monkeypatch.setattr(denoiser.net, "forward", spy)
    loss = denoiser.autoregressive_loss(frames, actions, mask, d)
    (noisy0, context0, acts0, out0), (_, context1, acts1, _) = calls
    sigma_data = denoiser.config.sigma_data
    assert torch.equal(context0, frames[:, :L].flatten(1, 2) / sigma_data)
    assert torch.equal(acts0, actions[:, :L]) and torch.equal(acts1, actions[:, 1:L + 1])
    cs = conditioners(d[0].sigma, sigma_data, denoiser.config.sigma_offset_noise)
    estimate = quantize(cs.c_skip * frames[:, L] + cs.c_skip * (d[0].offset + d[0].noise * d[0].sigma.view(-1, 1, 1, 1))
                        + cs.c_out * out0.detach(), "floor")
    newest = context1.unflatten(1, (L, 3))[:, -1] * sigma_data
    torch.testing.assert_close(newest, estimate, atol=2 / 255 + 1e-6, rtol=0)  # at most one level on a boundary
    assert (newest != frames[:, L]).any()  # the model's estimate, not the real frame
    assert not context1.requires_grad  # DIAMOND quantises under no_grad: no gradient through the estimate
    single = denoiser.autoregressive_loss(frames[:, :L + 1], actions[:, :L], mask[:, :L + 1], d[:1])
    first = denoiser.loss(frames[:, L], frames[:, :L], actions[:, :L], draws=d[0]).loss
    torch.testing.assert_close(single, first, rtol=1e-5, atol=0)  # one target: the plain EDM loss
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_padded_targets_carry_no_loss():
    model = tiny_model()
    frames = torch.rand(3, 5, 3, 64, 64) * 2 - 1
    actions = torch.randint(0, 3, (3, 4))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 4] = False  # sample 0's target is padding
    d = draws(3, 1, model)
    masked = model.denoiser.autoregressive_loss(frames, actions, mask, d)
    changed = frames.clone()
    changed[0, 4] = 0.7
    assert model.denoiser.autoregressive_loss(changed, actions, mask, d) == masked  # whatever the padding holds
    rest = model.denoiser.loss(frames[1:, 4], frames[1:, :4], actions[1:, :4], draws=TrainingNoise(
        d[0].sigma[1:], d[0].offset[1:], d[0].noise[1:])).loss
    torch.testing.assert_close(masked, rest, rtol=1e-5, atol=0)  # the mean over the real samples
    with pytest.raises(ValueError, match="draws"):
        model.denoiser.autoregressive_loss(frames, actions, mask, draws(3, 2, model))


def _episode(T: int, terminated: bool, value: int) -> Episode:
    end = np.zeros(T, bool)
    end[-1] = terminated
    return Episode(np.full((T + 1, 64, 64, 3), value, np.uint8), np.ones(T, np.int64), np.zeros(T, np.float32),
                   end, np.zeros(T, bool), np.zeros(T, bool))


def test_padding_is_grey_and_an_unterminated_end_is_followed_by_padding(tmp_path):
    ds = EpisodeDataset(tmp_path)
    ds.append(_episode(5, terminated=False, value=255))
    seg = ds.get_segments([0, 0], [-2, 3], 3, pad_unterminated_end=True)
    frames = segment_tensors(seg, torch.device("cpu"))["frames"]
    assert torch.equal(frames[0, :2], torch.zeros(2, 3, 64, 64))  # before the start: 0 in [-1, 1], grey
    assert torch.equal(frames[0, 2:], torch.ones(2, 3, 64, 64))
    assert torch.equal(frames[1, :2], torch.ones(2, 3, 64, 64))
    assert torch.equal(frames[1, 2:], torch.zeros(2, 3, 64, 64))  # after the last action: padding


def test_reward_model_trains_on_18_transitions_and_the_denoiser_on_two_targets(tmp_path, monkeypatch):
    ds = EpisodeDataset(tmp_path)
    ds.append(_episode(30, terminated=True, value=10))
    model = tiny_model()
    trainer = WorldModelTrainer(model, ds, WorldModelTrainingConfig(batch_size=4))
    seen = {}
    rew_end_loss, denoiser_loss = model.rew_end.loss, model.denoiser.autoregressive_loss
    monkeypatch.setattr(model.rew_end, "loss", lambda *b: seen.setdefault("rew_end", b) and rew_end_loss(*b))
    monkeypatch.setattr(model.denoiser, "autoregressive_loss",
                        lambda *b: seen.setdefault("denoiser", b) and denoiser_loss(*b))
    trainer.rew_end_step(), trainer.denoiser_step()
    assert seen["rew_end"][0].shape[:2] == (4, 18) and seen["rew_end"][2].shape[:2] == (4, 18)
    frames, actions, mask, noise = seen["denoiser"][:4]
    assert frames.shape[:2] == (4, 6) and actions.shape == (4, 5) and mask.shape == (4, 6) and len(noise) == 2


def test_weight_decay_only_on_linear_conv_and_lstm_weights():
    model = tiny_model()
    decay, no_decay = decay_groups(model.rew_end)
    assert "lstm.weight_ih_l0" in decay and "lstm.weight_hh_l0" in decay
    assert "lstm.bias_ih_l0" in no_decay and "action_emb.weight" in no_decay
    assert all(n.endswith("weight") or "weight_" in n for n in decay)
    assert not any("bias" in n for n in decay)
    decay, no_decay = decay_groups(model.denoiser)
    assert "net.norm_out.weight" in no_decay and "net.conv_in.weight" in decay
    opt = adamw(model.denoiser, 1e-4, 1e-8, 0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    weird = nn.Module()
    weird.scale = nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="scale"):
        decay_groups(weird)


def test_warm_up_starts_at_zero_as_diamonds_lambda_lr():
    assert [warmup_lr(1e-4, i, 100) for i in (0, 1, 50, 100, 5000)] == pytest.approx([0, 1e-6, 5e-5, 1e-4, 1e-4])
    model = tiny_model()
    ds_weights = [p.detach().clone() for p in model.denoiser.parameters()]
    frames = torch.rand(2, 6, 3, 64, 64) * 2 - 1
    loss = model.denoiser.autoregressive_loss(frames, torch.zeros(2, 5, dtype=torch.long),
                                              torch.ones(2, 6, dtype=torch.bool), draws(2, 2, model))
    opt = adamw(model.denoiser, 1e-4, 1e-8, 0.01)
    optimizer_update(opt, loss, warmup_lr(1e-4, 0, 100), 1.0)
    for before, after in zip(ds_weights, model.denoiser.parameters(), strict=True):
        assert torch.equal(before, after)  # the first update has learning rate 0


def test_initialisation_is_diamonds():
    torch.manual_seed(0)
    lstm = nn.LSTM(16, 8)
    init_lstm(lstm)
    assert torch.equal(lstm.bias_ih_l0[8:16], torch.ones(8)) and lstm.bias_ih_l0[:8].abs().sum() == 0
    assert lstm.bias_hh_l0.abs().sum() == 0
    w = lstm.weight_hh_l0  # (32, 8): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)
    down = Downsample(16).weight.flatten(1)  # (16, 144): orthonormal rows
    torch.testing.assert_close(down @ down.T, torch.eye(16), atol=1e-5, rtol=0)
    block = ResBlock(16, 16, 8)
    assert block.conv2.weight.abs().sum() == 0 and block.conv2.bias.abs().sum() > 0  # DIAMOND zeroes the weight only
    model = WorldModel(tiny_world_model_config(num_actions=3))
    assert model.rew_end.lstm.bias_ih_l0[model.rew_end.config.lstm_dim:2 * model.rew_end.config.lstm_dim].eq(1).all()
