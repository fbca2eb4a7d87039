"""Context erasure fades what stays still in the context (a court to repair), never what moves, never a target."""

import pytest
import torch
from helpers import first_denoiser_update

from gym_diamond import tiny_world_model_config
from training.data.dataset import EpisodeDataset
from training.world_model.context_erasure import PATCHES, UNIFORMS_PER_SAMPLE, erase_still_patches

BROWN = torch.tensor([144, 72, 17]) / 127.5 - 1
WHITE = torch.tensor([236, 236, 236]) / 127.5 - 1
L, K = 4, 2


def court(n: int) -> torch.Tensor:
    """n samples of L + K frames: a brown court, a white wall on rows 8-9, a ball moving along row 12."""
    frames = BROWN.view(1, 1, 3, 1, 1).repeat(n, L + K, 1, 64, 64)
    frames[:, :, :, 8:10] = WHITE.view(1, 1, 3, 1, 1)
    for t in range(L + K):
        frames[:, t, :, 12:14, 2 + 2 * t:4 + 2 * t] = WHITE.view(1, 3, 1, 1)
    return torch.round((frames + 1) * 127.5) / 127.5 - 1


def patch_over_top_left(strength: float, chosen: float = 0.0) -> torch.Tensor:
    """One sample's uniforms: the first patch rows 0-15, columns 0-31 at ``strength``; the others at strength 0."""
    first = [0.999, 0.999, 0.0, 0.0, strength]  # height 16, width 32, top 0, left 0
    return torch.tensor([chosen, *first, *[0.5, 0.5, 0.5, 0.5, 0.0] * (PATCHES - 1)])


def test_a_patch_fades_the_still_wall_in_the_context_and_keeps_the_ball_and_the_targets():
    frames = court(2)
    uniforms = torch.stack([patch_over_top_left(1.0), patch_over_top_left(1.0, chosen=0.9)])
    out = erase_still_patches(frames, L, share=0.5, uniforms=uniforms)
    assert torch.equal(out[:, L:], frames[:, L:])  # targets keep their wall
    assert torch.equal(out[1], frames[1])  # a sample not drawn for erasure is untouched
    wall_left, wall_right = out[0, :L, :, 8:10, :32], out[0, :L, :, 8:10, 32:]
    assert torch.allclose(wall_left, BROWN.view(1, 3, 1, 1).expand_as(wall_left), atol=1 / 255)  # erased
    assert torch.equal(wall_right, frames[0, :L, :, 8:10, 32:])  # outside the patch
    assert torch.equal(out[0, :L, :, 12:14], frames[0, :L, :, 12:14])  # the ball moves: never erased
    changed = (out[0, :L] != frames[0, :L]).any(dim=1)
    assert changed.sum() == L * 2 * 32  # exactly the wall under the patch, in every context frame


def test_the_strength_fades_part_way_and_zero_keeps_the_frames():
    frames = court(2)
    out = erase_still_patches(frames, L, share=1.0, uniforms=torch.stack([patch_over_top_left(0.5),
                                                                          patch_over_top_left(0.0)]))
    halfway = (WHITE + BROWN) / 2
    assert torch.allclose(out[0, :L, :, 8, 0], halfway.view(1, 3).expand(L, 3), atol=1 / 127.5)
    assert torch.equal(out[1], frames[1])
    with pytest.raises(ValueError, match="uniforms"):
        erase_still_patches(frames, L, share=1.0, uniforms=torch.zeros(2, UNIFORMS_PER_SAMPLE - 1))


def test_the_trainer_erases_only_still_context_pixels_and_is_off_by_default(pong_data, monkeypatch):
    dataset = EpisodeDataset(pong_data, game="Pong")

    clean, _ = first_denoiser_update(dataset, monkeypatch, batch_size=8)
    erased, _ = first_denoiser_update(dataset, monkeypatch, batch_size=8, context_erasure=1.0)
    L = tiny_world_model_config(num_actions=6).denoiser.context_length
    assert torch.equal(clean[:, L:], erased[:, L:])  # the targets keep the court
    changed = (clean[:, :L] != erased[:, :L]).any(dim=2)  # (n, L, h, w)
    assert changed.any()  # Pong's walls and score stay still: some of them were faded
    still = (clean.amax(dim=1) - clean.amin(dim=1)).amax(dim=1) == 0
    assert not (changed & ~still[:, None]).any()  # nothing that moves was touched
    assert (changed == changed[:, :1]).all()  # the same pixels in every context frame
