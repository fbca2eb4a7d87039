import pytest
import torch

from gym_diamond import BatchedGenerator, WorldModel, tiny_world_model_config


def _inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(n, 4, 3, 64, 64, generator=g) * 2 - 1
    actions = torch.randint(0, 3, (n, 4), generator=g)
    return frames, actions


def test_imagine_step_shapes_dtypes_and_ranges(tiny_world_model):
    frames, actions = _inputs(5)
    step = tiny_world_model.imagine_step(frames, actions, generator=BatchedGenerator(list(range(5))))
    assert step.next_frame.shape == (5, 3, 64, 64) and step.next_frame.dtype == torch.float32
    assert step.next_frame.min() >= -1 and step.next_frame.max() <= 1
    levels = (step.next_frame + 1) * 127.5
    torch.testing.assert_close(levels, levels.round())
    assert step.reward.shape == (5,) and set(step.reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert step.terminated.shape == (5,) and step.terminated.dtype == torch.bool
    h, c = step.state
    assert h.shape == c.shape == (1, 5, tiny_world_model.config.rew_end.lstm_dim)


def test_batch_equals_per_sample(tiny_world_model):
    """An environment's imagined step is the same alone or in a batch: nothing leaks across rows."""
    frames, actions = _inputs(4)
    seeds = [10, 11, 12, 13]
    # give the untrained model some non-zero output so the check is not vacuous
    with torch.no_grad():
        for p in tiny_world_model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = tiny_world_model.burn_in(frames, actions)
    batch = tiny_world_model.imagine_step(frames, actions, state, BatchedGenerator(seeds))
    for i in range(4):
        one_state = tuple(s[:, i:i + 1] for s in state)
        one = tiny_world_model.imagine_step(
            frames[i:i + 1], actions[i:i + 1], one_state, BatchedGenerator(seeds[i:i + 1]))
        torch.testing.assert_close(one.next_frame[0], batch.next_frame[i], atol=1 / 127.5 + 1e-6, rtol=0)
        assert (one.next_frame[0] != batch.next_frame[i]).float().mean() < 0.01
        assert one.reward[0] == batch.reward[i] and one.terminated[0] == batch.terminated[i]
        # the next frames may differ by a quantisation level, which moves the LSTM state a little
        torch.testing.assert_close(one.state[0][0, 0], batch.state[0][0, i], atol=2e-3, rtol=0)
    assert not torch.equal(batch.next_frame[0], batch.next_frame[1])


def test_same_generator_seed_reproduces(tiny_world_model):
    frames, actions = _inputs(3)
    a = tiny_world_model.imagine_step(frames, actions, generator=BatchedGenerator([1, 2, 3]))
    b = tiny_world_model.imagine_step(frames, actions, generator=BatchedGenerator([1, 2, 3]))
    c = tiny_world_model.imagine_step(frames, actions, generator=BatchedGenerator([4, 5, 6]))
    assert torch.equal(a.next_frame, b.next_frame) and torch.equal(a.reward, b.reward)
    assert not torch.equal(a.next_frame, c.next_frame)


def test_one_unet_pass_per_denoising_step(tiny_world_model):
    calls = []
    tiny_world_model.denoiser.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames, actions = _inputs(8)
    tiny_world_model.imagine_step(frames, actions)
    assert calls == [8] * tiny_world_model.config.sampler.num_steps


@pytest.mark.parametrize("frames, actions, error, match", [
    (torch.zeros(2, 3, 3, 64, 64), torch.zeros(2, 3, dtype=torch.long), ValueError, r"frames must be \(n, 4"),
    (torch.zeros(2, 4, 3, 64, 64), torch.zeros(3, 4, dtype=torch.long), ValueError, "actions must be"),
    (torch.zeros(2, 4, 3, 64, 64), torch.zeros(2, 4), TypeError, "actions must be int64"),
    (torch.zeros(2, 4, 3, 64, 64, dtype=torch.uint8), torch.zeros(2, 4, dtype=torch.long), TypeError, "float"),
])
def test_bad_inputs_raise_clear_errors(tiny_world_model, frames, actions, error, match):
    with pytest.raises(error, match=match):
        tiny_world_model.imagine_step(frames, actions)


@pytest.mark.slow
def test_tiny_denoiser_overfits_one_transition():
    """The denoiser's loss can be driven down: it memorises one smooth frame (32x32, a quarter of the pixels, the
    same network)."""
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=3, image_size=32))
    g = torch.Generator().manual_seed(3)
    frames, actions = torch.rand(1, 4, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, 3, (1, 4), generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    target = 0.8 * torch.stack([xx, yy, xx * yy]).unsqueeze(0)  # a smooth frame a tiny net can memorise
    batch = (target.expand(8, -1, -1, -1), frames.expand(8, -1, -1, -1, -1), actions.expand(8, -1))

    def eval_loss():
        with torch.no_grad():
            return model.denoiser.loss(*batch, generator=torch.Generator().manual_seed(0)).loss.item()

    before = eval_loss()
    opt = torch.optim.Adam(model.denoiser.parameters(), lr=3e-3)
    for _ in range(250):  # the loss is a ninth of the first by 250 updates, a twentieth by 400
        loss = model.denoiser.loss(*batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < before / 5, (before, after)


def test_reward_termination_model_learns_from_labels():
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=3)).rew_end
    frames = torch.rand(8, 5, 3, 64, 64) * 2 - 1
    actions = torch.randint(0, 3, (8, 5))
    rewards = (actions == 1).float()  # reward iff action 1
    terminated = actions == 2
    mask = torch.ones(8, 5, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss_r, loss_e = model.loss(frames, actions, frames, rewards, terminated, mask)
        opt.zero_grad()
        (loss_r + loss_e).backward()
        opt.step()
    assert loss_r.item() < 0.1 and loss_e.item() < 0.1
