"""Context ghosts paste a copy of a moving object into the last context frames, never into a target."""

import pytest
import torch
from helpers import first_denoiser_update

from gym_diamond import tiny_world_model_config
from training.data.dataset import EpisodeDataset
from training.world_model.context_ghosts import SHIFT, UNIFORMS_PER_SAMPLE, add_context_ghosts

BROWN = torch.tensor([144, 72, 17]) / 127.5 - 1
ORANGE = torch.tensor([213, 130, 74]) / 127.5 - 1
WHITE = torch.tensor([236, 236, 236]) / 127.5 - 1
L, K = 4, 2
PADDLE_COLUMN, PADDLE_HEIGHT = 7, 5


def court(n: int) -> torch.Tensor:
    """n samples of L + K frames: a brown court, a still white wall on rows 8-9, an orange paddle of 5 rows in
    column 7 moving down a row a frame from row 30."""
    frames = BROWN.view(1, 1, 3, 1, 1).repeat(n, L + K, 1, 64, 64)
    frames[:, :, :, 8:10] = WHITE.view(1, 1, 3, 1, 1)
    for t in range(L + K):
        frames[:, t, :, 30 + t:30 + t + PADDLE_HEIGHT, PADDLE_COLUMN] = ORANGE.view(1, 3, 1)
    return torch.round((frames + 1) * 127.5) / 127.5 - 1


def ghost_uniforms(chosen: float = 0.0, first: float = 0.0, strength: float = 1.0, up: bool = False,
                   distance: float = 0.5) -> torch.Tensor:
    """One sample's uniforms: the paddle's first moving pixel as the source, a rectangle of 8 rows and 1 column,
    ``distance`` of the way from the least to the largest shift, down (or ``up``), not sideways."""
    return torch.tensor([chosen, 0.0, 0.999, 0.0, distance, 0.9 if up else 0.1, 0.5, first, (strength - 0.5) * 2])


def orange_rows(frame: torch.Tensor) -> torch.Tensor:
    """The rows of column 7 that show the paddle's orange in one frame (3, 64, 64)."""
    return torch.nonzero((frame[:, :, PADDLE_COLUMN] - ORANGE[:, None]).abs().amax(dim=0) < 1e-3).flatten()


def test_a_ghost_of_the_moving_paddle_appears_in_the_last_context_frames_and_never_in_a_target():
    frames = court(2)
    frames[:, :, :, 45, PADDLE_COLUMN] = WHITE.view(1, 1, 3)  # a still dot where the ghost's rectangle lands
    out = add_context_ghosts(frames, L, share=0.5, uniforms=torch.stack([ghost_uniforms(first=0.5),
                                                                          ghost_uniforms(chosen=0.9)]))
    assert torch.equal(out[:, L:], frames[:, L:])  # the targets show one paddle
    assert torch.equal(out[1], frames[1])  # a sample not drawn is untouched
    assert torch.equal(out[0, :L // 2], frames[0, :L // 2])  # the ghost appears from context frame L / 2
    for t in range(L // 2, L):
        rows = orange_rows(out[0, t])
        assert len(rows) == 2 * PADDLE_HEIGHT  # the paddle and its whole copy
        shift = rows[PADDLE_HEIGHT] - rows[0]
        assert SHIFT[0] <= shift <= SHIFT[1]  # down, within the shift's bounds
        assert torch.equal(out[0, t, :, 8:10], frames[0, t, :, 8:10])  # the wall is not an object that moves
    assert torch.equal(out[0, :, :, 45, PADDLE_COLUMN], frames[0, :, :, 45, PADDLE_COLUMN])  # no background pasted
    changed = (out[0] != frames[0]).any(dim=1)
    assert changed[:, :, PADDLE_COLUMN].sum() == changed.sum()  # only where the paddle was copied


def test_the_strength_blends_the_ghost_and_it_goes_either_way():
    frames = court(1)
    half = add_context_ghosts(frames, L, share=1.0, uniforms=ghost_uniforms(strength=0.5, up=True)[None])
    last = half[0, L - 1]
    ghost_rows = torch.nonzero((last - BROWN[:, None, None]).abs().amax(dim=0)[:, PADDLE_COLUMN] > 0.1).flatten()
    ghost_rows = ghost_rows[(ghost_rows > 10) & (ghost_rows < 30)]  # below the wall, up from the paddle
    assert len(ghost_rows) == PADDLE_HEIGHT
    assert torch.allclose(last[:, ghost_rows[0], PADDLE_COLUMN], (BROWN + ORANGE) / 2, atol=1 / 127.5)
    with pytest.raises(ValueError, match="uniforms"):
        add_context_ghosts(frames, L, share=1.0, uniforms=torch.zeros(1, UNIFORMS_PER_SAMPLE - 1))


def test_a_still_context_gets_no_ghost():
    frames = court(1)
    frames[:, :L] = frames[:, L - 1:L]  # the paddle stood still through the context
    assert torch.equal(add_context_ghosts(frames, L, share=1.0, uniforms=ghost_uniforms()[None]), frames)


def test_the_trainer_adds_ghosts_to_the_context_only_and_is_off_by_default(pong_data, monkeypatch):
    dataset = EpisodeDataset(pong_data, game="Pong")
    clean, _ = first_denoiser_update(dataset, monkeypatch, batch_size=8)
    ghosted, _ = first_denoiser_update(dataset, monkeypatch, batch_size=8, context_ghosts=1.0)
    L = tiny_world_model_config(num_actions=6).denoiser.context_length
    assert torch.equal(clean[:, L:], ghosted[:, L:])  # the targets are the game's
    changed = (clean[:, :L] != ghosted[:, :L]).any(dim=2)  # (n, L, h, w)
    assert changed[:, -1].flatten(1).any(dim=1).float().mean() >= 0.5  # most samples show a ghost in the last frame
    assert (changed.flatten(1).sum(dim=1) <= L * 8 * 4).all()  # one ghost a sample: at most 8 x 4 pixels a frame
