"""Dream contexts: a share of each denoiser batch conditioned on rollouts the denoiser dreams itself, with the real
frames that followed as targets (training.world_model.dream_contexts)."""

import numpy as np
import pytest
import torch

from gym_diamond import WorldModel, tiny_world_model_config
from gym_diamond.config import SamplerConfig
from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset
from training.runtime.state import load_state, save_state
from training.world_model.dream_contexts import PARTED_LEVEL, DreamContexts
from training.world_model.trainer import WorldModelTrainer, segment_tensors
from training.world_model.training_config import WorldModelTrainingConfig

L, SHAPE = 3, (3, 8, 8)


class DrawsThis(torch.nn.Module):
    """A denoiser whose estimate is always ``frame``: an Euler sampler then ends exactly on it."""

    def __init__(self, frame: torch.Tensor) -> None:
        super().__init__()
        self.frame = frame

    def denoise(self, x, sigma, context, actions, autocast=None, quantization="floor"):
        return self.frame.expand_as(x)


def pool(size=2, lengths=(40, 40), max_age=100, tolerance=4) -> DreamContexts:
    lengths = np.array(lengths)
    return DreamContexts(size, L, 2, lengths, np.arange(len(lengths)), max_age, tolerance, seed=0,
                         device=torch.device("cpu"))


def real_context(episodes, starts):
    """A context whose frames tell their episode and position apart."""
    values = torch.as_tensor(episodes * 100 + starts, dtype=torch.float32) / 1000
    return values.view(-1, 1, 1, 1, 1).expand(-1, L, *SHAPE).clone()


def test_a_rollout_keeps_its_dreamt_frames_until_one_parts_from_the_real_frame_by_more_than_the_tolerance():
    dreams = pool(size=1, tolerance=4)
    rows = dreams.rows(real_context)
    real_next = torch.zeros(1, *SHAPE)
    actions = torch.zeros(1, L, dtype=torch.long)
    sampler = SamplerConfig(num_steps=3)
    close = real_next.clone()
    close[0, 0, 0, :4] = 2 * PARTED_LEVEL  # 4 pixels part: within the tolerance
    dreams.advance(DrawsThis(close), actions, real_next, sampler, autocast=None)
    again = dreams.rows(real_context)
    assert again.episodes[0] == rows.episodes[0] and again.starts[0] == rows.starts[0] + 1
    assert torch.equal(again.contexts[0, :-1], rows.contexts[0, 1:])  # real frames shift out ...
    assert torch.allclose(again.contexts[0, -1], close[0])  # ... for the dreamt one
    far = close.clone()
    far[0, 1, 1, :1] = 2 * PARTED_LEVEL  # a fifth pixel parts
    dreams.advance(DrawsThis(far), actions, real_next, sampler, autocast=None)
    assert dreams.restarts == {"length": 0, "episode_end": 0, "parted": 1}
    fresh = dreams.rows(real_context)
    assert torch.equal(fresh.contexts[0], real_context(fresh.episodes, fresh.starts)[0])  # a real context again


def test_rollouts_start_again_at_their_drawn_length_and_before_their_episode_runs_out():
    sampler, actions = SamplerConfig(num_steps=1), torch.zeros(3, L, dtype=torch.long)
    aged = pool(size=3, max_age=1, tolerance=10_000)
    aged.rows(real_context)
    aged.advance(DrawsThis(torch.ones(1, *SHAPE)), actions, torch.zeros(3, *SHAPE), sampler, autocast=None)
    assert aged.restarts == {"length": 3, "episode_end": 0, "parted": 0}
    # an episode of 4 actions holds one sample of 3 context frames and 2 targets (5 frames), none after it
    short = pool(size=3, lengths=(3, 4), tolerance=10_000)
    rows = short.rows(real_context)
    assert set(rows.episodes) == {1} and set(rows.starts) == {0}  # episode 0 is too short for any
    short.advance(DrawsThis(torch.ones(1, *SHAPE)), actions, torch.zeros(3, *SHAPE), sampler, autocast=None)
    assert short.restarts["episode_end"] == 3


def first_updates(dataset, share: float, updates: int, **fields):
    """The frames the loss read at each of a tiny denoiser's first updates, and the trainer."""
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=6))
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8, warmup_steps=0,
                                                                         dream_contexts=share, **fields))
    seen, loss = [], model.denoiser.autoregressive_loss

    def spy(frames, *args, **kwargs):
        seen.append(frames.clone())
        return loss(frames, *args, **kwargs)

    model.denoiser.autoregressive_loss = spy
    pools = []  # each update's pool rows, with their rollouts' ages
    if trainer.dream_contexts is not None:
        rows = trainer.dream_contexts.rows

        def rows_spy(load_context):
            drawn = rows(load_context)
            pools.append((drawn.episodes, drawn.starts, trainer.dream_contexts.ages.copy(), drawn.contexts.clone()))
            return drawn

        trainer.dream_contexts.rows = rows_spy
    for _ in range(updates):
        trainer.denoiser_step()
    return seen, pools, trainer


def test_the_pool_rows_learn_the_real_frames_that_follow_the_denoisers_own_and_the_rest_of_the_batch_is_unchanged(
        pong_data):
    dataset = EpisodeDataset(pong_data)
    without, _, _ = first_updates(dataset, 0.0, 3)
    seen, pools, trainer = first_updates(dataset, 0.5, 3, dream_context_tolerance=10_000)
    L = trainer.model.config.denoiser.context_length
    for frames, plain in zip(seen, without, strict=True):
        assert torch.equal(frames[:4], plain[:4])  # the uniform rows draw as they would without the pool
    episodes, starts, ages, contexts = pools[-1]  # the third update's
    assert list(pools[0][2]) == [0] * 4 and (ages >= 1).any()  # real contexts first, then the rollouts dreamt
    assert torch.equal(seen[-1][4:, :L], contexts)
    real = segment_tensors(dataset.get_segments(episodes, starts, L + 1), torch.device("cpu"))["frames"]
    assert torch.equal(seen[-1][4:, L:], real[:, L:])  # the targets: what the real episode showed next
    for row, age in enumerate(ages):
        assert torch.equal(contexts[row, :L - age], real[row, :L - age])  # real frames until the rollout began ...
        for k in range(L - age, L):  # ... then an untrained denoiser's own, nothing like the real ones
            assert (contexts[row, k] - real[row, k]).abs().mean() > 0.05


def test_a_resumed_pool_goes_on_as_if_never_stopped(pong_data, tmp_path):
    dataset = EpisodeDataset(pong_data)
    _, _, whole = first_updates(dataset, 0.25, 4, dream_context_tolerance=10_000)
    _, _, first = first_updates(dataset, 0.25, 2, dream_context_tolerance=10_000)
    save_state(tmp_path / "state.safetensors", first.state_dict())
    torch.manual_seed(1)  # the resumed process starts elsewhere
    resumed = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset,
                                WorldModelTrainingConfig(batch_size=8, warmup_steps=0, dream_contexts=0.25,
                                                         dream_context_tolerance=10_000))
    resumed.load_state_dict(load_state(tmp_path / "state.safetensors"))
    for _ in range(2):
        resumed.denoiser_step()
    for a, b in zip(whole.model.denoiser.parameters(), resumed.model.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.dream_contexts.contexts, resumed.dream_contexts.contexts)
    assert whole.dream_contexts.restarts == resumed.dream_contexts.restarts


@pytest.mark.parametrize("fields, named", [
    ({"dream_contexts": 1.5}, "dream_contexts=1.5"),
    ({"dream_contexts": 0.01}, "no sample"),  # of a batch of 32
    ({"dream_contexts": 0.5, "denoiser_return_oversampling": 0.6}, "exceed the batch"),
    ({"dream_contexts": 0.25, "dream_context_age": 0}, "dream_context_age"),
    ({"dream_contexts": 0.25, "dream_context_tolerance": -1}, "dream_context_tolerance"),
])
def test_dream_context_settings_are_checked(fields, named):
    with pytest.raises(UserError, match=named):
        WorldModelTrainingConfig(**fields)


def test_dream_context_settings_are_recorded_only_when_on():
    assert not {"dream_contexts", "dream_context_age", "dream_context_tolerance"} & set(
        WorldModelTrainingConfig().run_settings())  # runs recorded before them resume
    assert WorldModelTrainingConfig(dream_contexts=0.25, dream_context_age=50).run_settings()["dream_context_age"] == 50
