import math

import pytest
import torch

from gym_diamond.config import DenoiserConfig, SamplerConfig
from gym_diamond.diffusion import conditioners, karras_sigmas, quantize, sample, sample_training_sigma


def test_conditioners_match_hand_computation():
    sigma = 1.0
    s = math.sqrt(1.0 + 0.3**2)  # effective sigma with offset noise 0.3
    c = conditioners(torch.tensor([sigma]), sigma_data=0.5, sigma_offset_noise=0.3)
    assert c.c_in.item() == pytest.approx(1 / math.sqrt(s**2 + 0.25))
    assert c.c_skip.item() == pytest.approx(0.25 / (s**2 + 0.25))
    assert c.c_out.item() == pytest.approx(s * math.sqrt(0.25 / (s**2 + 0.25)))
    assert c.c_noise.item() == pytest.approx(math.log(s) / 4)
    assert c.c_in.shape == (1, 1, 1, 1) and c.c_noise.shape == (1,)


def test_karras_sigmas_match_hand_computation():
    sigmas = karras_sigmas(SamplerConfig(num_steps=3, sigma_min=2e-3, sigma_max=5.0, rho=7))
    mid = ((5.0 ** (1 / 7) + 2e-3 ** (1 / 7)) / 2) ** 7
    assert sigmas.tolist() == pytest.approx([5.0, mid, 2e-3, 0.0], rel=1e-5)


def test_training_sigma_is_lognormal_and_clipped():
    cfg = DenoiserConfig()
    sigma = sample_training_sigma(200_000, cfg, torch.Generator().manual_seed(0))
    assert sigma.min() >= cfg.train_sigma_min and sigma.max() <= cfg.train_sigma_max
    inside = sigma[(sigma > cfg.train_sigma_min) & (sigma < cfg.train_sigma_max)].log()
    assert inside.mean().item() == pytest.approx(-0.4, abs=0.02)
    assert inside.std().item() == pytest.approx(1.2, abs=0.03)


@pytest.mark.parametrize("order, churn", [(1, 0.0), (2, 0.0), (1, 1.0)])
def test_perfect_denoiser_lands_on_the_clean_frame(order, churn):
    clean = quantize(torch.rand(3, 3, 8, 8) * 2 - 1)
    calls = []

    def perfect(x, sigma):
        calls.append(sigma)
        return clean

    out = sample(perfect, clean.shape, SamplerConfig(num_steps=4, order=order, s_churn=churn),
                 torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, clean)
    assert len(calls) == (4 if order == 1 else 7)  # Heun adds a second call except on the last step


def test_sampler_is_reproducible_with_a_generator():
    def shrink(x, sigma):
        return quantize(x * 0.5)

    cfg = SamplerConfig()
    a = sample(shrink, (2, 3, 8, 8), cfg, torch.Generator().manual_seed(1))
    b = sample(shrink, (2, 3, 8, 8), cfg, torch.Generator().manual_seed(1))
    c = sample(shrink, (2, 3, 8, 8), cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("start, scale", [("unit", 1.0), ("sigma_max", 5.0)])
def test_sampler_starts_from_unit_or_sigma_max_noise(start, scale):
    # the denoiser sees the start noise: unit variance as DIAMOND draws it, or scaled to sigma_max as EDM's
    seen = []

    def record(x, sigma):
        seen.append(x.clone())
        return torch.zeros_like(x)

    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    sample(record, noise.shape, SamplerConfig(num_steps=2, sigma_max=5.0, start=start), generator)
    torch.testing.assert_close(seen[0], noise * scale)
    with pytest.raises(ValueError, match="start.*one of"):
        SamplerConfig(start="zero")


def test_quantize_gives_256_levels_in_range():
    x = quantize(torch.linspace(-2, 2, 10_000))
    assert x.min() == -1 and x.max() == 1
    levels = torch.unique(((x + 1) * 127.5).round())
    assert len(levels) == 256
    torch.testing.assert_close((x + 1) * 127.5, ((x + 1) * 127.5).round())
