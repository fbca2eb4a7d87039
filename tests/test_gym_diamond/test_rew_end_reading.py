"""How a dream reads its reward/termination LSTM over a long episode: staggered states restarted in turn, or one
carried state."""

import numpy as np
import pytest
import torch

from gym_diamond.envs.core import DreamCore, GivenStart
from gym_diamond.envs.rew_end_reading import CarriedReading, StaggeredReading, check_window, reading_for
from gym_diamond.errors import UserError
from gym_diamond.rng import BatchedGenerator
from gym_diamond.world_model import read_logits, read_transition

N, L = 3, 4  # dreams; context frames (L - 1 = 3 transitions burnt in)


@pytest.fixture
def model(tiny_world_model):
    with torch.no_grad():  # distinct outputs for distinct histories
        for p in tiny_world_model.rew_end.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return tiny_world_model


def transitions(steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (N, L + steps, 3, 64, 64) in [-1, 1] and actions (N, L + steps): a context and the steps after it."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(N, L + steps, 3, 64, 64, generator=g) * 2 - 1
    return frames, torch.randint(0, 3, (N, L + steps), generator=g)


def read_along(model, reading, frames, actions, steps):
    """The end logits each dream reads at each step, the transitions stepped as a dream steps them."""
    read = []
    for t in range(steps):
        state, read_from = reading.before_step()
        with torch.no_grad():
            _, end_logits, state = read_transition(model.rew_end, frames[:, L - 1 + t:L + t],
                                                   actions[:, L - 1 + t:L + t], frames[:, L + t:L + t + 1], state,
                                                   read_from)
        reading.after_step(state)
        read.append(end_logits)
    return read


def fresh_logits(model, frames, actions, last_transition, count):
    """End logits of the last of ``count`` transitions ending at ``last_transition`` (index of its first frame),
    read from a zero state: what training teaches."""
    first = last_transition - count + 1
    with torch.no_grad():
        out = model.rew_end(frames[:, first:last_transition + 1], actions[:, first:last_transition + 1],
                            frames[:, first + 1:last_transition + 2])
    return out.end_logits[:, -1]


def transitions_seen(t: int, window: int) -> int:
    """The transitions the state read at step t has seen since it was zero, counting step t's: the first state
    restarts every ``window`` from the burn-in's L - 1, the second half a window behind it; the older is read."""
    first = (L - 1 + t) % window
    second = L - 1 - (window + 1) // 2 + t
    return 1 + (second % window if second > 0 and second % window > first else first)


@pytest.mark.parametrize("window", [5, 6])
def test_every_read_comes_from_a_state_that_saw_at_most_a_window_and_at_least_half_of_one(model, window):
    steps = 2 * window + 3
    frames, actions = transitions(steps)
    reading = StaggeredReading(model.rew_end.burn_in, model.rew_end.initial_state(N), window)
    reading.restart(torch.ones(N, dtype=torch.bool), frames[:, :L], actions[:, :L])
    read = read_along(model, reading, frames, actions, steps)
    seen = [transitions_seen(t, window) for t in range(steps)]
    for t, logits in enumerate(read):
        last = L - 1 + t  # this step's transition, counted from the context's first frame
        assert torch.allclose(logits, fresh_logits(model, frames, actions, last, seen[t]), atol=1e-5), t
        for other in {seen[t] - 1, min(seen[t] + 1, last + 1)} - {seen[t]}:  # one transition fewer or more (as
            # far back as the context goes) reads otherwise
            assert not torch.allclose(logits, fresh_logits(model, frames, actions, last, other), atol=1e-5), t
    early = window - (L - 1)  # steps read from the burnt-in state, before it is first restarted
    assert seen[:early] == list(range(L, window + 1))  # DIAMOND's reading: the burn-in, then each step
    assert max(seen) <= window and min(seen[early:]) >= window // 2 + 1
    assert set(seen[early:]) == set(range(window - (window + 1) // 2 + 1, window + 1))


def test_at_diamonds_window_the_reads_stay_between_ten_and_nineteen_transitions():
    seen = [transitions_seen(t, 19) for t in range(200)]
    assert seen[:16] == list(range(L, 20)) and set(seen[16:]) == set(range(10, 20))


def test_a_carried_state_reads_everything_since_the_burn_in(model):
    steps = 30
    frames, actions = transitions(steps)
    reading = reading_for(model.rew_end.burn_in, model.rew_end.initial_state(N), None)
    assert isinstance(reading, CarriedReading)
    reading.restart(torch.ones(N, dtype=torch.bool), frames[:, :L], actions[:, :L])
    read = read_along(model, reading, frames, actions, steps)
    for t in (0, 17, steps - 1):
        assert torch.allclose(read[t], fresh_logits(model, frames, actions, L - 1 + t, L + t), atol=1e-5)


@pytest.mark.parametrize("kind", [StaggeredReading, CarriedReading])
def test_restarting_some_dreams_by_rows_or_by_mask_gives_the_same_states(model, kind):
    frames, actions = transitions(12)
    readings = [kind(model.rew_end.burn_in, model.rew_end.initial_state(N)) for _ in range(2)]
    for reading in readings:
        reading.restart(torch.ones(N, dtype=torch.bool), frames[:, :L], actions[:, :L])
        read_along(model, reading, frames, actions, 7)
    mask = torch.tensor([False, True, False])
    context, context_actions = frames[:, 8:8 + L], actions[:, 8:8 + L]
    before = [s.clone() for s in readings[0].state]
    readings[0].restart(mask, context, context_actions)  # every row burnt in, the masked ones kept (GPU)
    rows = mask.nonzero().squeeze(1)
    readings[1].restart(mask, context[rows], context_actions[rows], rows)  # the restarting rows only (CPU)
    for a, b, old in zip(readings[0].state, readings[1].state, before, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
        kept = torch.ones(a.shape[1], dtype=torch.bool)
        kept[rows + N * torch.arange(a.shape[1] // N).view(-1, 1)] = False  # the restarted dream's rows
        assert torch.equal(a[:, kept], old[:, kept]) and not torch.allclose(a[:, ~kept], old[:, ~kept])
    if kind is StaggeredReading:
        assert torch.equal(readings[0].ages, readings[1].ages)
        assert readings[0].ages[:, 1].tolist() == [L - 1, L - 1 - 10]  # the second state begins half a window on


def test_a_context_longer_than_half_a_window_burns_the_second_state_in_on_its_last_transitions(model):
    window, long_context = 6, 8  # 7 transitions: the first state saw 7, the second the last 7 - 3 = 4
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(N, long_context + 1, 3, 64, 64, generator=g) * 2 - 1
    actions = torch.randint(0, 3, (N, long_context + 1), generator=g)
    reading = StaggeredReading(model.rew_end.burn_in, model.rew_end.initial_state(N), window)
    reading.restart(torch.ones(N, dtype=torch.bool), frames[:, :long_context], actions[:, :long_context])
    assert reading.ages[:, 0].tolist() == [7, 4]
    state, read_from = reading.before_step()  # the first state is past its window: restarted, the second read
    assert read_from.tolist() == [1] * N and reading.ages[:, 0].tolist() == [0, 4]
    with torch.no_grad():  # the step's transition: the context's last frame, its action, the next frame
        out = model.rew_end(frames[:, 7:8].repeat(2, 1, 1, 1, 1), actions[:, 7:8].repeat(2, 1),
                            frames[:, 8:9].repeat(2, 1, 1, 1, 1), state)
    assert torch.allclose(read_logits(out.end_logits[:, 0], read_from),
                          fresh_logits(model, frames, actions, long_context - 1, 5), atol=1e-5)


def test_windows_are_checked():
    for bad in (0, 1, 2.5, True, "19"):
        with pytest.raises(UserError, match="rew_end_window"):
            check_window(bad)
    assert check_window(None) is None and check_window(2) == 2


def test_imagine_step_reads_each_environment_from_the_state_it_names(model):
    frames, actions = transitions(0)
    g = torch.Generator().manual_seed(2)
    states = tuple(torch.randn(1, 2 * N, model.config.rew_end.lstm_dim, generator=g) for _ in range(2))
    read_from = torch.tensor([1, 0, 1])
    both = model.imagine_step(frames, actions, states, BatchedGenerator(range(N)), read_from=read_from)
    for j in range(2):  # each state stepped alone, with the same random draws
        alone = model.imagine_step(frames, actions, tuple(s[:, j * N:(j + 1) * N] for s in states),
                                   BatchedGenerator(range(N)))
        assert torch.equal(alone.next_frame, both.next_frame)
        assert torch.allclose(both.state[0][:, j * N:(j + 1) * N], alone.state[0], atol=1e-5)
        chosen = read_from == j
        assert torch.equal(both.reward[chosen], alone.reward[chosen])
        assert torch.equal(both.terminated[chosen], alone.terminated[chosen])
    with pytest.raises(UserError, match="read_from"):
        model.imagine_step(frames, actions, states, BatchedGenerator(range(N)))


def test_a_dream_reads_its_long_episodes_staggered_by_default_and_carried_on_request(model):
    rng = np.random.default_rng(0)
    start = GivenStart(torch.from_numpy(rng.integers(0, 256, (L, 64, 64, 3), dtype=np.uint8)),
                       torch.from_numpy(rng.integers(0, 3, L)))
    # no autoreset: an ending read differently must not restart one dream and not the other
    staggered = DreamCore(model, start, num_envs=2, autoreset=False)
    carried = DreamCore(model, start, num_envs=2, autoreset=False, rew_end_window=None)
    assert isinstance(staggered.rew_end_reading, StaggeredReading) and staggered.rew_end_reading.window == 19
    assert isinstance(carried.rew_end_reading, CarriedReading)
    for core in (staggered, carried):
        core.reset(seed=0)
    for _ in range(18):  # the same frames (the sampler does not read the LSTM), different states past a window
        a, b = staggered.step([1, 2]), carried.step([1, 2])
        assert torch.equal(a.obs, b.obs)
    read = staggered.rew_end_reading.state[0][:, :2]
    assert not torch.allclose(read, carried.rew_end_reading.state[0], atol=1e-4)
    with pytest.raises(UserError, match="rew_end_window"):
        DreamCore(model, start, rew_end_window=1)
