"""Our world-model training computes what DIAMOND's trainer computes (fixtures made with its code).

``tests/data/diamond/training.safetensors`` (made by ``make_training_fixtures.py`` beside it, with DIAMOND's
unmodified ``src/``): toy episodes, tiny perturbed DIAMOND networks (16x16 frames) and what its training
made of them: the denoiser's loss and gradients (``src/models/diffusion/denoiser.py``, with the noise it
drew), the reward/termination losses and gradients (``src/models/rew_end_model.py``, terminations and
unterminated ends inside segments), its optimiser groups and 3 updates (``src/utils.py``
``configure_opt``, ``get_lr_sched``; ``src/trainer.py`` ``train_component``), the exact distribution of
its ``BatchSampler`` (``src/data/batch_sampler.py``) and facts of its initialisation. Here the same
episodes go through our dataset, segments, losses, optimiser and trainer, with the same weights (mapped
by ``training.diamond.format``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from data.diamond.enumerate_draws import Enumerator  # the one the fixture script walks DIAMOND's draws with
from helpers import DATA
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from gym_diamond import WorldModel
from gym_diamond.config import DenoiserConfig, RewEndConfig, UNetConfig, WorldModelConfig
from gym_diamond.diffusion import TrainingNoise
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.data.dataset import Episode, EpisodeDataset
from training.data.sampling import BatchSampler
from training.diamond.format import diamond_keys
from training.runtime.optim import adamw, decay_groups, optimizer_update, warmup_lr
from training.world_model.trainer import WorldModelTrainer, segment_tensors
from training.world_model.training_config import WorldModelTrainingConfig

FIXTURE = DATA / "diamond" / "training.safetensors"
# Largest differences from DIAMOND's fixture (made on an AVX-512 CPU with torch 2.13, one thread), measured
# with this machine's default kernels (AVX-512), with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and
# with ATEN_CPU_CAPABILITY=default; each tolerance is about 10x the largest:
# - losses and gradient norms: 2.4e-7 (AVX-512), 3.0e-7 (AVX2), 2.4e-7 (default)
LOSS_TOL = 3e-6
# - gradients, relative to each parameter's largest: 2.6e-6 (AVX-512), 3.0e-6 (AVX2), 3.0e-6 (default)
GRAD_TOL = 3e-5
# - parameters after 3 AdamW updates: 2.5e-7 (AVX-512), 2.8e-7 (AVX2), 2.2e-7 (default). For scale: an
#   update moves a parameter by up to lr = 1e-4, and leaving out the gradient clipping moves the denoiser's
#   by 1.5e-5 after 3 updates (weight decay, 7.7e-7, is below this: its groups are compared by name)
PARAM_TOL = 3e-6
# - the training noise drawn from a seeded stream: equal with AVX-512 and AVX2, 2.0e-6 with the default
#   (non-vectorised) kernels, whose Gaussian draws differ in the last bits
NOISE_TOL = 2e-5
# - orthogonality errors max |W W^T - I| of fresh orthogonal weights: 4.1e-7 (DIAMOND's), 3.6e-7 (ours, any)
ORTHO_TOL = 4e-6
# - exact probabilities (float64, summed in another order): 8.3e-17, the same under every setting
PROB_TOL = 1e-15
# Initial scales: the std of a fresh tensor of N values and DIAMOND's (the same initialisation, another
# draw) differ by a relative standard error of at most 1 / sqrt(N) (0.71 / sqrt(N) each for a normal
# draw, 0.45 / sqrt(N) for a uniform one): at most this many of those apart
INIT_STD_SIGMAS = 6


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The fixture was made on one thread; other test runs share this machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> dict[str, Tensor]:
    return load_file(FIXTURE)


@pytest.fixture(scope="module")
def meta() -> dict[str, Any]:
    with safe_open(FIXTURE, "pt") as f:
        metadata = f.metadata()
    return {k: json.loads(metadata[k]) for k in ("settings", "init", "decay_groups")}


@pytest.fixture(scope="module")
def dataset(data: dict[str, Tensor], tmp_path_factory: pytest.TempPathFactory) -> EpisodeDataset:
    """The fixture's toy episodes in one of our datasets (frames (T + 1, h, w, c), the last one included)."""
    ds = EpisodeDataset(tmp_path_factory.mktemp("toy"), compress=False)
    i = 0
    while f"episode{i}/frames" in data:
        e = {k: data[f"episode{i}/{k}"].numpy() for k in ("frames", "actions", "rewards", "terminated", "truncated")}
        ds.append(Episode(frames=e["frames"], actions=e["actions"].astype(np.int64),
                          rewards=e["rewards"].astype(np.float32), terminated=e["terminated"],
                          truncated=e["truncated"], life_loss=np.zeros_like(e["terminated"])))
        i += 1
    return ds


def config_of(settings: dict[str, Any]) -> WorldModelConfig:
    """Our config of the fixture's DIAMOND networks."""
    den, rew = settings["denoiser"], settings["rew_end"]
    assert len(set(den["depths"])) == 1 and len(set(rew["depths"])) == 1
    unet = UNetConfig(channels=tuple(den["channels"]), blocks_per_level=den["depths"][0],
                      cond_channels=den["cond_channels"], attn_head_dim=8)
    return WorldModelConfig(
        num_actions=settings["num_actions"],
        denoiser=DenoiserConfig(context_length=settings["context"], image_size=settings["size"], unet=unet),
        rew_end=RewEndConfig(channels=tuple(rew["channels"]), blocks_per_level=rew["depths"][0],
                             cond_channels=rew["cond_channels"], lstm_dim=rew["lstm_dim"], attn_head_dim=8))


def actor_critic_of(settings: dict[str, Any]) -> ActorCritic:
    ac = settings["actor_critic"]
    return ActorCritic(ActorCriticConfig(settings["num_actions"], channels=tuple(ac["channels"]),
                                         lstm_dim=ac["lstm_dim"]))


def key_map(world_model: WorldModel, actor_critic: ActorCritic) -> dict[str, str]:
    """``denoiser.<name>``, ``rew_end.<name>``, ``actor_critic.<name>`` of our modules -> DIAMOND's key."""
    mapping = diamond_keys(world_model, actor_critic)
    return {ours.removeprefix("world_model."): theirs for ours, theirs in mapping.items()}


def world_model_from(data: dict[str, Tensor], settings: dict[str, Any]) -> tuple[WorldModel, dict[str, str]]:
    """Our world model holding the fixture's DIAMOND weights, and our key -> DIAMOND's."""
    world_model = WorldModel(config_of(settings))
    keys = key_map(world_model, actor_critic_of(settings))
    world_model.load_state_dict({k: data[f"weights/{keys[k]}"] for k in world_model.state_dict()})
    return world_model.train(), keys


def draws_of(data: dict[str, Tensor], prefix: str) -> list[TrainingNoise]:
    return [TrainingNoise(*(data[f"{prefix}_{k}"][i] for k in ("sigma", "offset", "noise")))
            for i in range(data[f"{prefix}_sigma"].shape[0])]


# ---------------------------------------------------------------------------------------- comparison


def max_abs(ours: Tensor, theirs: Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.detach().double() - theirs.double()).abs().max().item()


def grad_errors(module: nn.Module, prefix: str, keys: dict[str, str], data: dict[str, Tensor],
                name: str) -> dict[str, float]:
    """Per parameter: max |ours - DIAMOND's| gradient over DIAMOND's largest |gradient| of that parameter."""
    errors = {}
    for k, p in module.named_parameters():
        theirs = data[f"{name}/{keys[f'{prefix}.{k}']}"]
        assert p.grad is not None, f"{prefix}.{k} has no gradient"
        errors[f"{prefix}.{k}"] = max_abs(p.grad, theirs) / theirs.abs().max().item()
    assert len(errors) == sum(1 for k in data if k.startswith(f"{name}/")), "not every DIAMOND gradient compared"
    return errors


def param_errors(module: nn.Module, prefix: str, keys: dict[str, str], data: dict[str, Tensor],
                 name: str) -> dict[str, float]:
    errors = {f"{prefix}.{k}": max_abs(p, data[f"{name}/{keys[f'{prefix}.{k}']}"])
              for k, p in module.named_parameters()}
    assert len(errors) == sum(1 for k in data if k.startswith(f"{name}/"))
    return errors


def assert_all_within(errors: dict[str, float], tol: float) -> None:
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tol, f"{worst}: {errors[worst]:.3g} > {tol:.3g}"


def expected_frames(data: dict[str, Tensor], name: str) -> Tensor:
    """DIAMOND's float frames (grey 0.0 padding) from the fixture's uint8 levels and real-frame flags."""
    frames = data[f"{name}_frames"].movedim(-1, -3).float().div(127.5).sub(1)
    return frames * data[f"{name}_frame_real"][:, :, None, None, None]


# ----------------------------------------------------------------------------------- 1. the denoiser


def denoiser_batch(data: dict[str, Tensor], dataset: EpisodeDataset) -> dict[str, Tensor]:
    """Our segments of the denoiser samples: L + K - 1 transitions, as ``WorldModelTrainer.denoiser_step``."""
    ids, starts = data["den_positions"].T.numpy()
    num_frames = data["den_frames"].shape[1]
    return segment_tensors(dataset.get_segments(ids, starts, num_frames - 1), torch.device("cpu"))


def test_denoiser_segments_are_diamonds(data, meta, dataset):
    t = denoiser_batch(data, dataset)
    assert torch.equal(t["frames"], expected_frames(data, "den"))  # grey padding, DIAMOND's frame arithmetic
    assert torch.equal(t["frame_mask"], data["den_mask"])
    assert torch.equal(t["actions"], data["den_act"][:, :-1])  # its last action conditions nothing


def denoiser_loss_errors(data: dict[str, Tensor], meta: dict[str, Any], dataset: EpisodeDataset
                         ) -> tuple[float, dict[str, float]]:
    world_model, keys = world_model_from(data, meta["settings"])
    t = denoiser_batch(data, dataset)
    loss = world_model.denoiser.autoregressive_loss(t["frames"], t["actions"], t["frame_mask"], draws_of(data, "den"))
    loss.backward()
    return max_abs(loss, data["den_loss"]), grad_errors(world_model.denoiser, "denoiser", keys, data, "den_grad")


def test_denoiser_loss_and_gradients_are_diamonds(data, meta, dataset):
    loss_error, errors = denoiser_loss_errors(data, meta, dataset)
    assert loss_error <= LOSS_TOL
    assert_all_within(errors, GRAD_TOL)


def test_training_noise_is_drawn_as_diamond_draws_it(data, meta):
    """DIAMOND draws, per target in order, sigma, the offset noise and the Gaussian noise from torch's
    global stream; ``TrainingNoise.draw`` from a generator seeded alike gives the same numbers."""
    config = config_of(meta["settings"]).denoiser
    for prefix in ("den", "opt_den"):  # one forward pass, then 3 updates from one stream: 2 targets each
        generator = torch.Generator().manual_seed(int(data[f"{prefix}_seed"]))
        sigma, offset, noise = (data[f"{prefix}_{k}"] for k in ("sigma", "offset", "noise"))
        shape = tuple(noise.shape[-4:])
        sigma, offset = sigma.reshape(-1, shape[0]), offset.reshape(-1, *offset.shape[-4:])
        noise = noise.reshape(-1, *shape)
        for i in range(len(sigma)):
            ours = TrainingNoise.draw(shape, config, generator)
            assert max_abs(ours.sigma, sigma[i]) <= NOISE_TOL
            assert max_abs(ours.offset, offset[i]) <= NOISE_TOL
            assert max_abs(ours.noise, noise[i]) <= NOISE_TOL


# --------------------------------------------------------------------- 2. the reward/termination model


def rew_end_batch(data: dict[str, Tensor], dataset: EpisodeDataset) -> dict[str, Tensor]:
    """Our segments of the reward/termination sequences, as ``WorldModelTrainer.rew_end_step`` cuts them."""
    ids, starts = data["rew_positions"].T.numpy()
    num_frames = data["rew_frames"].shape[1]
    return segment_tensors(dataset.get_segments(ids, starts, num_frames - 1, pad_unterminated_end=True),
                           torch.device("cpu"))


def test_rew_end_segments_are_diamonds(data, dataset):
    """DIAMOND puts a terminated episode's final observation after its last action and grey padding after
    an unterminated one's; the fixture's frames are those its ``RewEndModel.forward`` ran on."""
    t = rew_end_batch(data, dataset)
    assert torch.equal(t["frames"], expected_frames(data, "rew"))
    assert torch.equal(t["mask"], data["rew_mask"][:, :-1])
    assert torch.equal(t["actions"], data["rew_act"][:, :-1])
    assert torch.equal(t["rewards"], data["rew_rew"][:, :-1])
    assert torch.equal(t["terminated"], data["rew_end"][:, :-1].bool())


def rew_end_loss_errors(data: dict[str, Tensor], meta: dict[str, Any], dataset: EpisodeDataset
                        ) -> tuple[float, dict[str, float]]:
    world_model, keys = world_model_from(data, meta["settings"])
    t = rew_end_batch(data, dataset)
    loss_reward, loss_end = world_model.rew_end.loss(t["frames"][:, :-1], t["actions"], t["frames"][:, 1:],
                                                     t["rewards"], t["terminated"], t["mask"])
    (loss_reward + loss_end).backward()
    loss_error = max(max_abs(loss_reward, data["rew_loss_rew"]), max_abs(loss_end, data["rew_loss_end"]))
    return loss_error, grad_errors(world_model.rew_end, "rew_end", keys, data, "rew_grad")


def test_rew_end_losses_and_gradients_are_diamonds(data, meta, dataset):
    loss_error, errors = rew_end_loss_errors(data, meta, dataset)
    assert loss_error <= LOSS_TOL
    assert_all_within(errors, GRAD_TOL)


# ------------------------------------------------------------------------------------ 3. optimisation


def test_weight_decay_groups_are_diamonds(meta):
    settings = meta["settings"]
    world_model, actor_critic = WorldModel(config_of(settings)), actor_critic_of(settings)
    keys = key_map(world_model, actor_critic)
    for ours, prefix, theirs in ((world_model.denoiser, "denoiser", "denoiser"),
                                 (world_model.rew_end, "rew_end", "rew_end_model"),
                                 (actor_critic, "actor_critic", "actor_critic")):
        decay, no_decay = decay_groups(ours)
        assert {keys[f"{prefix}.{k}"] for k in decay} == set(meta["decay_groups"][theirs]["decay"])
        assert {keys[f"{prefix}.{k}"] for k in no_decay} == set(meta["decay_groups"][theirs]["no_decay"])


def test_warmup_learning_rates_are_diamonds(data, meta):
    """DIAMOND's ``get_lr_sched`` (a LambdaLR stepped after each update): 0, then linear up to lr."""
    settings = meta["settings"]
    for name in ("opt_den", "opt_rew"):
        ours = [warmup_lr(settings["optimizer"]["lr"], i, settings["warmup"]) for i in range(len(data[f"{name}_lr"]))]
        assert ours == data[f"{name}_lr"].tolist()


def update_errors(data: dict[str, Tensor], meta: dict[str, Any], dataset: EpisodeDataset
                  ) -> dict[str, dict[str, float]]:
    """3 updates of each network with our optimiser functions, on the fixture's batches and noise."""
    settings, opt = meta["settings"], meta["settings"]["optimizer"]
    world_model, keys = world_model_from(data, settings)
    den_t, rew_t = denoiser_batch(data, dataset), rew_end_batch(data, dataset)
    out: dict[str, dict[str, float]] = {"loss": {}, "grad_norm": {}}
    clips = settings["max_grad_norm"]
    for module, name, prefix, clip in ((world_model.denoiser, "opt_den", "denoiser", clips["denoiser"]),
                                       (world_model.rew_end, "opt_rew", "rew_end", clips["rew_end_model"])):
        optimizer = adamw(module, opt["lr"], opt["eps"], opt["weight_decay"])
        for i in range(len(data[f"{name}_lr"])):
            if name == "opt_den":
                draws = [TrainingNoise(data["opt_den_sigma"][i, k], data["opt_den_offset"][i, k],
                                       data["opt_den_noise"][i, k]) for k in range(data["opt_den_sigma"].shape[1])]
                loss = module.autoregressive_loss(den_t["frames"], den_t["actions"], den_t["frame_mask"], draws)
            else:
                loss = sum(module.loss(rew_t["frames"][:, :-1], rew_t["actions"], rew_t["frames"][:, 1:],
                                       rew_t["rewards"], rew_t["terminated"], rew_t["mask"]))
            out["loss"][f"{name}{i}"] = max_abs(loss, data[f"{name}_loss"][i])
            norm = optimizer_update(optimizer, loss, warmup_lr(opt["lr"], i, settings["warmup"]), clip)
            out["grad_norm"][f"{name}{i}"] = abs(norm - data[f"{name}_grad_norm"][i].item())
        out[name] = param_errors(module, prefix, keys, data, f"{name}_after")
    return out


def assert_updates_within(errors: dict[str, dict[str, float]]) -> None:
    """Losses and gradient norms of every update, then both networks' parameters after them, within tolerance."""
    assert_all_within(errors["loss"], LOSS_TOL)
    assert_all_within(errors["grad_norm"], LOSS_TOL)
    assert_all_within(errors["opt_den"], PARAM_TOL)
    assert_all_within(errors["opt_rew"], PARAM_TOL)


def test_optimiser_updates_are_diamonds(data, meta, dataset):
    """AdamW in DIAMOND's groups, its warm-up and clipping: the parameters after 3 updates are its."""
    errors = update_errors(data, meta, dataset)
    assert_updates_within(errors)


def trainer_errors(data: dict[str, Tensor], meta: dict[str, Any], dataset: EpisodeDataset
                   ) -> dict[str, dict[str, float]]:
    """3 ``denoiser_step`` and 3 ``rew_end_step`` of our trainer at the fixture's positions, its noise drawn
    from the trainer's own stream seeded as DIAMOND's global one was."""
    settings, opt = meta["settings"], meta["settings"]["optimizer"]
    world_model, keys = world_model_from(data, settings)
    config = WorldModelTrainingConfig(lr=opt["lr"], eps=opt["eps"], weight_decay=opt["weight_decay"],
                                      warmup_steps=settings["warmup"], autoregressive_steps=1,
                                      denoiser_grad_clip=settings["max_grad_norm"]["denoiser"],
                                      rew_end_grad_clip=settings["max_grad_norm"]["rew_end_model"],
                                      rew_end_sequence_length=data["rew_frames"].shape[1])
    trainer = WorldModelTrainer(world_model, dataset, config, seed=int(data["opt_den_seed"]))
    positions = {False: data["den_positions"].T.numpy(), True: data["rew_positions"].T.numpy()}

    def fixed_positions(num_frames: int, beyond_end: bool) -> tuple[np.ndarray, np.ndarray, slice]:
        assert num_frames == data["rew_frames" if beyond_end else "den_frames"].shape[1]  # DIAMOND's 19 and 4 + 2
        ids, starts = positions[beyond_end]
        return ids.copy(), starts.copy(), slice(0, len(ids))

    trainer._global_positions = fixed_positions
    out: dict[str, dict[str, float]] = {"loss": {}, "grad_norm": {}}
    for i in range(len(data["opt_den_lr"])):
        logs = trainer.denoiser_step()
        out["loss"][f"den{i}"] = abs(logs["denoiser_loss"] - data["opt_den_loss"][i].item())
        out["grad_norm"][f"den{i}"] = abs(logs["denoiser_grad_norm"] - data["opt_den_grad_norm"][i].item())
        logs = trainer.rew_end_step()
        out["loss"][f"rew{i}"] = abs(logs["reward_loss"] + logs["end_loss"] - data["opt_rew_loss"][i].item())
        out["grad_norm"][f"rew{i}"] = abs(logs["rew_end_grad_norm"] - data["opt_rew_grad_norm"][i].item())
    out["opt_den"] = param_errors(world_model.denoiser, "denoiser", keys, data, "opt_den_after")
    out["opt_rew"] = param_errors(world_model.rew_end, "rew_end", keys, data, "opt_rew_after")
    return out


def test_trainer_updates_are_diamonds(data, meta, dataset):
    """``WorldModelTrainer`` end to end (segments, noise stream, losses, warm-up, clipping, AdamW)."""
    errors = trainer_errors(data, meta, dataset)
    assert_updates_within(errors)


# ----------------------------------------------------------------------------------------- 4. sampling


class EnumeratingRng:
    """``np.random.Generator``'s ``choice`` and ``integers`` (of one value each), drawn by an ``Enumerator``."""

    def __init__(self, enumerator: Enumerator) -> None:
        self.e = enumerator

    def choice(self, a: np.ndarray, size: int, p: np.ndarray | None = None) -> np.ndarray:
        assert size == 1
        return np.array([a[self.e.pick(list(p) if p is not None else [1 / len(a)] * len(a))]])

    def integers(self, low: int, high: int | np.ndarray, size: int | None = None) -> np.ndarray:
        high = int(np.asarray(high).reshape(-1)[0])
        assert size in (None, 1) and high > low
        return np.array([low + self.e.pick([1 / (high - low)] * (high - low))])


def sampling_case(meta: dict[str, Any], name: str) -> tuple[tuple[float, ...] | None, int, bool]:
    weights, seq_length, beyond_end = meta["settings"]["sampling"][name]
    return (tuple(weights) if weights is not None else None), seq_length, beyond_end


def our_exact_distribution(dataset: EpisodeDataset, weights: tuple[float, ...] | None, num_frames: int,
                           beyond_end: bool) -> dict[tuple[int, int], float]:
    """P(episode, first frame) of ``sample_positions``, every outcome of its draws walked."""
    enumerator, probs = Enumerator(), {}
    while True:
        ids, starts = BatchSampler(dataset).sample_positions(1, num_frames, EnumeratingRng(enumerator),
                                                             sample_weights=weights, beyond_end=beyond_end)
        key = (int(ids[0]), int(starts[0]))
        probs[key] = probs.get(key, 0.0) + enumerator.prob
        if not enumerator.next_run():
            return probs


def diamond_distribution(data: dict[str, Tensor], name: str) -> dict[tuple[int, int], float]:
    keys = zip(data[f"sample_{name}_episode"].tolist(), data[f"sample_{name}_start"].tolist(), strict=True)
    return dict(zip(keys, data[f"sample_{name}_prob"].tolist(), strict=True))


SAMPLING_CASES = ("den_weighted", "den_uniform", "rew_weighted", "rew_uniform")


@pytest.mark.parametrize("name", ["den_weighted", "den_uniform"])
def test_episode_weights_are_diamonds(data, meta, dataset, name):
    """P(episode): DIAMOND's recency groups (0.1, 0.1, 0.1, 0.7), or proportional to length without weights."""
    weights = sampling_case(meta, name)[0]
    theirs = np.zeros(len(dataset))
    for (e, _), p in diamond_distribution(data, name).items():
        theirs[e] += p
    assert np.abs(BatchSampler(dataset).episode_weights(None, weights) - theirs).max() <= PROB_TOL


@pytest.mark.parametrize("name", SAMPLING_CASES)
def test_sample_positions_distribution_is_diamonds(data, meta, dataset, name):
    """The exact P(episode, first frame) of our ``sample_positions`` equals DIAMOND's ``BatchSampler.sample``."""
    weights, seq_length, beyond_end = sampling_case(meta, name)
    ours, theirs = our_exact_distribution(dataset, weights, seq_length, beyond_end), diamond_distribution(data, name)
    assert set(ours) == set(theirs)
    assert max(abs(ours[k] - theirs[k]) for k in theirs) <= PROB_TOL


def binomial_z(counts: np.ndarray, probs: np.ndarray) -> float:
    """The largest departure of ``counts`` from their expectation, in binomial standard errors."""
    n = counts.sum()
    return float((np.abs(counts - n * probs) / np.sqrt(n * probs * (1 - probs))).max())


@pytest.mark.parametrize("name", SAMPLING_CASES)
def test_sampled_positions_follow_diamonds_distribution(data, meta, dataset, name):
    """Real draws, ours and DIAMOND's (100,000 each), against DIAMOND's exact probabilities: within 5 binomial
    standard errors on every (episode, first frame) (about 1 in 3 million per pair by chance)."""
    weights, seq_length, beyond_end = sampling_case(meta, name)
    theirs = diamond_distribution(data, name)
    keys, probs = list(theirs), np.array(list(theirs.values()))
    assert binomial_z(data[f"sample_{name}_count"].numpy(), probs) < 5  # the enumeration is its code's
    n = int(data[f"sample_{name}_count"].sum())
    ids, starts = BatchSampler(dataset).sample_positions(n, seq_length, np.random.default_rng(0),
                                                         sample_weights=weights, beyond_end=beyond_end)
    index = {k: i for i, k in enumerate(keys)}
    counts = np.bincount([index[(int(e), int(s))] for e, s in zip(ids, starts, strict=True)], minlength=len(keys))
    assert binomial_z(counts, probs) < 5


# ----------------------------------------------------------------------------------- 5. initialisation


def fresh_networks(meta: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, nn.Module]]:
    """Our freshly initialised networks: parameters by DIAMOND's keys, and the LSTMs."""
    torch.manual_seed(0)
    world_model, actor_critic = WorldModel(config_of(meta["settings"])), actor_critic_of(meta["settings"])
    keys = key_map(world_model, actor_critic)
    params = {keys[f"denoiser.{k}"]: p for k, p in world_model.denoiser.named_parameters()}
    params |= {keys[f"rew_end.{k}"]: p for k, p in world_model.rew_end.named_parameters()}
    params |= {keys[f"actor_critic.{k}"]: p for k, p in actor_critic.named_parameters()}
    return {k: p.detach() for k, p in params.items()}, {"rew_end_lstm": world_model.rew_end.lstm,
                                                         "actor_critic_lstm": actor_critic.lstm}


def orthogonality_error(w: Tensor) -> float:
    """max |W W^T - I| over the smaller side of W flattened to (rows, the rest)."""
    m = w.detach().flatten(1).double()
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max())


def test_initially_zero_parameters_are_diamonds(meta):
    """The same tensors start at zero: residual blocks' second convs, the output conv, attention outputs,
    the actor-critic heads, LSTM recurrent biases."""
    params, _ = fresh_networks(meta)
    init = meta["init"]
    assert set(params) == set(init["zero_parameters"]) | set(init["nonzero_parameters"])
    ours = {k for k, p in params.items() if not p.any()}
    theirs = set(init["zero_parameters"])
    assert ours == theirs, f"zero only in ours: {sorted(ours - theirs)}; only in DIAMOND's: {sorted(theirs - ours)}"


def test_initial_scales_are_diamonds(meta):
    """Every other tensor of 32 values or more starts at DIAMOND's scale (its std within 6 standard errors
    of a sample std: the same initialisation, another random draw)."""
    params, _ = fresh_networks(meta)
    far = {}
    for k, theirs in meta["init"]["std"].items():
        ours = params[k].std().item()
        if abs(ours / theirs - 1) > INIT_STD_SIGMAS / math.sqrt(params[k].numel()):
            far[k] = round(ours / theirs, 3)
    assert not far, f"std ours / DIAMOND's: {far}"


@pytest.mark.parametrize("lstm", ["rew_end_lstm", "actor_critic_lstm"])
def test_lstm_initialisation_is_diamonds(meta, lstm):
    """DIAMOND's ``init_lstm``: Xavier-uniform input weights, orthogonal recurrent weights, zero biases
    but the forget gate's input bias at 1."""
    _, lstms = fresh_networks(meta)
    theirs = meta["init"][lstm]
    params = dict(lstms[lstm].named_parameters())
    suffix = "_l0" if "weight_ih_l0" in params else ""
    w_ih = params["weight_ih" + suffix].detach()
    bound = math.sqrt(6 / sum(w_ih.shape))
    max_ratio, std_ratio = w_ih.abs().max().item() / bound, w_ih.std().item() / (bound / math.sqrt(3))
    assert theirs["weight_ih_max_over_xavier_bound"] <= 1
    assert max_ratio <= 1, f"input weights reach {max_ratio:.3f} x the Xavier bound"
    # a uniform draw's sample std has a relative standard error of 0.45 / sqrt(N)
    assert abs(std_ratio - 1) <= INIT_STD_SIGMAS * 0.45 / math.sqrt(w_ih.numel()), \
        f"input weights' std is {std_ratio:.3f} x Xavier's"
    assert theirs["weight_hh_orthogonality_error"] <= ORTHO_TOL
    error = orthogonality_error(params["weight_hh" + suffix])
    assert error <= ORTHO_TOL, f"recurrent weights: max |W^T W - I| = {error:.3g}"
    for bias in ("bias_ih", "bias_hh"):
        ours = [[g.min().item(), g.max().item()] for g in params[bias + suffix].detach().chunk(4)]
        expected = theirs[f"{bias}_gates"]
        assert ours == expected, f"{bias} (min, max) per gate: {ours}, DIAMOND's {expected}"


def test_downsample_weights_are_orthogonal_as_diamonds(meta):
    params, _ = fresh_networks(meta)
    for key, theirs in meta["init"]["downsample_orthogonality_error"].items():
        assert theirs <= ORTHO_TOL
        assert orthogonality_error(params[key]) <= ORTHO_TOL, key
