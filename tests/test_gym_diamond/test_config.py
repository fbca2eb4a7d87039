import dataclasses

import pytest

from gym_diamond import WorldModel
from gym_diamond.config import MODEL_SIZES, DenoiserConfig, RewEndConfig, SamplerConfig, UNetConfig, WorldModelConfig


def test_defaults_are_the_papers():
    cfg = WorldModelConfig(num_actions=6)
    assert cfg.denoiser.unet.channels == (64, 64, 64, 64)
    assert cfg.denoiser.unet.blocks_per_level == 2 and cfg.denoiser.unet.cond_channels == 256
    assert cfg.denoiser.sigma_data == 0.5 and cfg.denoiser.sigma_offset_noise == 0.3
    assert (cfg.denoiser.train_sigma_loc, cfg.denoiser.train_sigma_scale) == (-0.4, 1.2)
    assert (cfg.denoiser.train_sigma_min, cfg.denoiser.train_sigma_max) == (2e-3, 20.0)
    assert (cfg.sampler.num_steps, cfg.sampler.sigma_min, cfg.sampler.sigma_max, cfg.sampler.rho) == (3, 2e-3, 5.0, 7)
    assert cfg.sampler.order == 1 and cfg.sampler.s_churn == 0
    assert cfg.rew_end.channels == (32, 32, 32, 32) and cfg.rew_end.lstm_dim == 512
    assert cfg.rew_end.cond_channels == 128


def test_dict_round_trip_is_exact():
    cfg = WorldModelConfig(num_actions=4, sampler=SamplerConfig(num_steps=5, order=2),
                           denoiser=DenoiserConfig(unet=UNetConfig(channels=(32, 64))))
    again = WorldModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert isinstance(again.denoiser.unet, UNetConfig) and again.denoiser.unet.channels == (32, 64)


@pytest.mark.parametrize("make, field", [
    (lambda: UNetConfig(channels=(64, 48)), "UNetConfig.channels"),
    (lambda: SamplerConfig(num_steps=0), "SamplerConfig.num_steps"),
    (lambda: SamplerConfig(order=3), "SamplerConfig.order"),
    (lambda: SamplerConfig(sigma_min=10.0), "SamplerConfig.sigma_min"),
    (lambda: RewEndConfig(lstm_dim=0), "RewEndConfig.lstm_dim"),
    (lambda: DenoiserConfig(sigma_data=-1.0), "DenoiserConfig.sigma_data"),
    (lambda: DenoiserConfig(image_size=60), "DenoiserConfig.image_size"),
    (lambda: WorldModelConfig(num_actions=0), "WorldModelConfig.num_actions"),
])
def test_validation_names_the_field(make, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        make()


def test_from_dict_rejects_unknown_fields():
    data = WorldModelConfig().to_dict()
    data["sampler"]["steps"] = 3
    with pytest.raises(ValueError, match="steps"):
        WorldModelConfig.from_dict(data)


def test_light_wide_widens_light_at_full_resolution_only():
    # the ball is a pixel or two at 64x64: light-wide gives the first U-Net level (the only one at full resolution)
    # light's deeper levels' 32 channels; everything else is light's
    light, wide = MODEL_SIZES["light"](6), MODEL_SIZES["light-wide"](6)
    assert light.denoiser.unet.channels == (16, 32, 32) and wide.denoiser.unet.channels == (32, 32, 32)
    assert dataclasses.replace(wide.denoiser.unet, channels=light.denoiser.unet.channels) == light.denoiser.unet
    assert wide.rew_end == light.rew_end and wide.sampler == light.sampler and wide.num_actions == 6
    first_level = WorldModel(wide).denoiser.net.conv_in
    assert first_level.out_channels == 32 and first_level.in_channels == 3 * (wide.denoiser.context_length + 1)
