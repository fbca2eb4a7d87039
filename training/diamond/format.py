"""DIAMOND's agent state dict <-> our networks: the one place that knows both layouts.

A DIAMOND agent file (its released ``atari_100k/models/<Game>.pt``, a run's ``agent_epoch_*.pt``) is one
flat dict of tensors with keys ``denoiser.inner_model.*``, ``rew_end_model.*`` and ``actor_critic.*``.
Our networks compute what DIAMOND's compute (``tests/test_diamond_equivalence.py``); only the module
names and order differ. This module

- translates each of our state-dict keys into DIAMOND's (:func:`diamond_keys`),
- infers every config from the tensor shapes of a DIAMOND dict (:func:`infer_configs`),
- converts both ways (:func:`from_diamond`, :func:`to_diamond`), checking that every key is used.

Errors are :class:`DiamondFormatError` (a ValueError) naming the source and the offending key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from gym_diamond.config import DenoiserConfig, RewEndConfig, UNetConfig, WorldModelConfig
from gym_diamond.errors import UserError
from gym_diamond.nn.actor_critic import FRAME_SHAPE, ActorCritic, ActorCriticConfig
from gym_diamond.world_model import WorldModel

DENOISER, REW_END, ACTOR_CRITIC = "denoiser.inner_model.", "rew_end_model.", "actor_critic."
PREFIXES = (DENOISER, REW_END, ACTOR_CRITIC)
DIAMOND_HEAD_DIM = 8  # DIAMOND's ATTN_HEAD_DIM: max(1, channels // 8) heads
DIAMOND_SIGMA_DATA, DIAMOND_SIGMA_OFFSET_NOISE = 0.5, 0.3


class DiamondFormatError(UserError):
    """A DIAMOND state dict that does not fit (or a model that DIAMOND cannot represent)."""


def diamond_head_dim(channels: int) -> int:
    """The head width DIAMOND's ``SelfAttention2d`` uses on ``channels`` channels."""
    return channels // max(1, channels // DIAMOND_HEAD_DIM)


@dataclass(frozen=True)
class DiamondConfigs:
    world_model: WorldModelConfig
    actor_critic: ActorCriticConfig


# ------------------------------------------------------------------------------------------ key mapping

_ATTN = {"attn.norm.": "attn.norm.norm.", "attn.qkv.": "attn.qkv_proj.", "attn.out.": "attn.out_proj."}


def _resblock(rest: str) -> str:
    """A ResBlock parameter: the same names but for the attention's."""
    for ours, theirs in _ATTN.items():
        if rest.startswith(ours):
            return theirs + rest[len(ours):]
    return rest


def _denoiser_key(key: str, levels: int) -> str:
    """``net.<...>`` of our Denoiser -> DIAMOND's ``InnerModel`` key (without the prefix)."""
    rules = [
        (r"action_emb\.(.+)", lambda m: f"act_emb.0.{m[1]}"),
        (r"norm_out\.(.+)", lambda m: f"norm_out.norm.{m[1]}"),
        (r"downsamples\.(\d+)\.(.+)", lambda m: f"unet.downsamples.{m[1]}.conv.{m[2]}"),
        (r"upsamples\.(\d+)\.(.+)", lambda m: f"unet.upsamples.{m[1]}.{m[2]}"),
        (r"down\.(\d+)\.(\d+)\.(.+)", lambda m: f"unet.d_blocks.{m[1]}.resblocks.{m[2]}.{_resblock(m[3])}"),
        # DIAMOND keeps its up levels deepest first
        (r"up\.(\d+)\.(\d+)\.(.+)",
         lambda m: f"unet.u_blocks.{levels - 1 - int(m[1])}.resblocks.{m[2]}.{_resblock(m[3])}"),
        (r"mid\.(\d+)\.(.+)", lambda m: f"unet.mid_blocks.resblocks.{m[1]}.{_resblock(m[2])}"),
        (r"((noise_emb|cond_proj|conv_in|conv_out)\..+)", lambda m: m[1]),
    ]
    return _apply(rules, key.removeprefix("net."))


def _rew_end_key(key: str, config: RewEndConfig) -> str:
    """Our RewEndModel key -> DIAMOND's (without the prefix). Our encoder keeps its downsamples and
    blocks in one list; DIAMOND has a list of block groups (one per level, then the attention pair)
    and a parallel list of downsamples."""
    diamond_of_index: dict[int, str] = {}
    k = 0
    for level in range(len(config.channels)):
        if level > 0:
            diamond_of_index[k] = f"downsamples.{level}.conv"
            k += 1
        for j in range(config.blocks_per_level):
            diamond_of_index[k] = f"blocks.{level}.resblocks.{j}"
            k += 1
    for j in range(2):
        diamond_of_index[k] = f"blocks.{len(config.channels)}.resblocks.{j}"
        k += 1

    def block(m: re.Match) -> str:
        index, rest = int(m[1]), m[2]
        target = diamond_of_index[index]
        return f"encoder.{target}.{rest if 'downsamples' in target else _resblock(rest)}"

    rules = [
        (r"encoder\.blocks\.(\d+)\.(.+)", block),
        (r"action_emb\.(.+)", lambda m: f"act_emb.{m[1]}"),
        (r"((encoder\.conv_in|lstm|head)\..+)", lambda m: m[1]),
    ]
    return _apply(rules, key)


def _actor_critic_key(key: str) -> str:
    """Our ActorCritic key -> DIAMOND's (without the prefix)."""
    rules = [
        (r"encoder\.0\.(.+)", lambda m: f"encoder.encoder.0.{m[1]}"),
        (r"encoder\.(\d+)\.norm\.(.+)", lambda m: f"encoder.encoder.{m[1]}.f.0.norm.{m[2]}"),
        (r"encoder\.(\d+)\.conv\.(.+)", lambda m: f"encoder.encoder.{m[1]}.f.2.{m[2]}"),
        (r"encoder\.(\d+)\.skip\.(.+)", lambda m: f"encoder.encoder.{m[1]}.skip_projection.{m[2]}"),
        (r"policy_head\.(.+)", lambda m: f"actor_linear.{m[1]}"),
        (r"value_head\.(.+)", lambda m: f"critic_linear.{m[1]}"),
        (r"(lstm\..+)", lambda m: m[1]),
    ]
    return _apply(rules, key)


def _apply(rules: list, key: str) -> str:
    for pattern, replace in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return replace(m)
    raise KeyError(key)  # a module this mapping does not know: a bug here, not bad input


def diamond_keys(world_model: WorldModel, actor_critic: ActorCritic) -> dict[str, str]:
    """Every key of our state dicts (``world_model.<key>`` and ``actor_critic.<key>``) -> DIAMOND's key."""
    levels = len(world_model.config.denoiser.unet.channels)
    mapping = {}
    for key in world_model.state_dict():
        if key.startswith("denoiser."):
            mapping[f"world_model.{key}"] = DENOISER + _denoiser_key(key.removeprefix("denoiser."), levels)
        else:
            mapping[f"world_model.{key}"] = REW_END + _rew_end_key(key.removeprefix("rew_end."),
                                                                    world_model.config.rew_end)
    for key in actor_critic.state_dict():
        mapping[f"actor_critic.{key}"] = ACTOR_CRITIC + _actor_critic_key(key)
    return mapping


# ------------------------------------------------------------------------------------- config inference


class _Shapes:
    """Shape lookups in a DIAMOND dict that fail with the key they needed."""

    def __init__(self, state: Mapping[str, Tensor], source: str) -> None:
        self.state, self.source = state, source

    def __call__(self, key: str) -> tuple[int, ...]:
        if key not in self.state:
            raise DiamondFormatError(f"{self.source}: missing key {key!r}: not a complete DIAMOND agent state dict")
        return tuple(self.state[key].shape)

    def count(self, pattern: str) -> int:
        """How many distinct values the ``(\\d+)`` group of ``pattern`` takes (0, 1, ... contiguous)."""
        found = {int(m[1]) for k in self.state if (m := re.match(pattern, k))}
        return len(found) if found == set(range(len(found))) else -1

    def fail(self, key: str, why: str) -> DiamondFormatError:
        return DiamondFormatError(f"{self.source}: key {key!r} {why}")


def _uniform_depth(shapes: _Shapes, group: str, levels: int) -> int:
    depths = [shapes.count(re.escape(group.format(i)) + r"\.resblocks\.(\d+)\.") for i in range(levels)]
    if len(set(depths)) != 1 or depths[0] < 1:
        raise shapes.fail(group.format(0), f"has residual blocks per level {depths}: gym-diamond needs the same "
                                           "positive number at every level")
    return depths[0]


def _reject_level_attention(shapes: _Shapes, prefix: str, allowed: str) -> None:
    for key in shapes.state:
        if key.startswith(prefix) and ".attn." in key and not key.startswith(allowed):
            raise shapes.fail(key, "is attention inside a level (attn_depths != 0), which gym-diamond's "
                                   "networks do not have (DIAMOND's Atari configs use none)")


def _infer_denoiser(shapes: _Shapes, image_size: int) -> tuple[DenoiserConfig, int]:
    p = DENOISER
    num_actions, act_dim = shapes(p + "act_emb.0.weight")
    cond = shapes(p + "cond_proj.0.weight")[0]
    if shapes(p + "noise_emb.weight") != (1, cond // 2) or cond % act_dim:
        raise shapes.fail(p + "noise_emb.weight", f"has shape {shapes(p + 'noise_emb.weight')}, which fits no "
                                                  f"denoiser with {cond} condition channels")
    context_length = cond // act_dim
    c0, in_channels = shapes(p + "conv_in.weight")[:2]
    if in_channels % (context_length + 1):
        raise shapes.fail(p + "conv_in.weight", f"takes {in_channels} channels: not (context {context_length} "
                                                "+ 1) frames")
    levels = shapes.count(re.escape(p + "unet.d_blocks.") + r"(\d+)\.")
    if levels < 1:
        raise shapes.fail(p + "unet.d_blocks.0", "is missing: no U-Net levels found")
    depth = _uniform_depth(shapes, p + "unet.d_blocks.{}", levels)
    channels = tuple(shapes(f"{p}unet.d_blocks.{i}.resblocks.0.conv1.weight")[0] for i in range(levels))
    if channels[0] != c0:
        raise shapes.fail(p + "conv_in.weight", f"has {c0} output channels but the first level {channels[0]}")
    _reject_level_attention(shapes, p + "unet.", p + "unet.mid_blocks.")
    mid_attention = f"{p}unet.mid_blocks.resblocks.0.attn.qkv_proj.weight" in shapes.state
    unet = UNetConfig(channels=channels, blocks_per_level=depth, cond_channels=cond,
                      attn_head_dim=diamond_head_dim(channels[-1]), mid_attention=mid_attention)
    config = DenoiserConfig(context_length=context_length, image_channels=in_channels // (context_length + 1),
                            image_size=image_size, sigma_data=DIAMOND_SIGMA_DATA,
                            sigma_offset_noise=DIAMOND_SIGMA_OFFSET_NOISE, unet=unet)
    return config, num_actions


def _infer_rew_end(shapes: _Shapes) -> tuple[RewEndConfig, int, int]:
    p = REW_END
    num_actions, cond = shapes(p + "act_emb.weight")
    groups = shapes.count(re.escape(p + "encoder.blocks.") + r"(\d+)\.")
    levels = groups - 1  # the last group is the attention pair
    if levels < 1:
        raise shapes.fail(p + "encoder.blocks.0", "is missing: no encoder levels found")
    depth = _uniform_depth(shapes, p + "encoder.blocks.{}", levels)
    channels = tuple(shapes(f"{p}encoder.blocks.{i}.resblocks.0.conv1.weight")[0] for i in range(levels))
    _reject_level_attention(shapes, p + "encoder.", f"{p}encoder.blocks.{levels}.")
    lstm_dim = shapes(p + "lstm.weight_hh_l0")[1]
    lstm_in = shapes(p + "lstm.weight_ih_l0")[1]
    side = round((lstm_in / channels[-1]) ** 0.5)
    if channels[-1] * side * side != lstm_in:
        raise shapes.fail(p + "lstm.weight_ih_l0", f"takes {lstm_in} inputs: not {channels[-1]} channels on a "
                                                   "square grid")
    image_size = side * 2 ** (levels - 1)
    config = RewEndConfig(channels=channels, blocks_per_level=depth, cond_channels=cond, lstm_dim=lstm_dim,
                          attn_head_dim=diamond_head_dim(channels[-1]))
    return config, num_actions, image_size


def _infer_actor_critic(shapes: _Shapes) -> ActorCriticConfig:
    p = ACTOR_CRITIC + "encoder.encoder."
    stem_out, stem_in = shapes(p + "0.weight")[:2]
    if stem_in != FRAME_SHAPE[0]:
        raise shapes.fail(p + "0.weight", f"takes {stem_in} channels, expected {FRAME_SHAPE[0]} (RGB)")
    blocks = sorted(int(m[1]) for k in shapes.state if (m := re.match(re.escape(p) + r"(\d+)\.f\.2\.weight", k)))
    if blocks != [1, 3, 5, 7]:
        raise shapes.fail(p + "1.f.2.weight", f"residual blocks found at {blocks}: gym-diamond's actor-critic has "
                                              "4 levels, each followed by 2x2 max pooling (down: [1, 1, 1, 1])")
    channels = tuple(shapes(f"{p}{i}.f.2.weight")[0] for i in blocks)
    if stem_out != channels[0]:
        raise shapes.fail(p + "0.weight", f"has {stem_out} output channels, the first block {channels[0]}")
    lstm_dim = shapes(ACTOR_CRITIC + "lstm.weight_hh")[1]
    num_actions = shapes(ACTOR_CRITIC + "actor_linear.weight")[0]
    spatial = FRAME_SHAPE[1] >> len(blocks)
    if shapes(ACTOR_CRITIC + "lstm.weight_ih")[1] != channels[-1] * spatial * spatial:
        raise shapes.fail(ACTOR_CRITIC + "lstm.weight_ih", "does not fit 64x64 frames pooled 4 times")
    return ActorCriticConfig(num_actions=num_actions, channels=channels, lstm_dim=lstm_dim)


def infer_configs(state: Mapping[str, Tensor], source: str = "state dict",
                  num_actions: int | None = None) -> DiamondConfigs:
    """Every network's config from the shapes of a DIAMOND agent dict; ``num_actions`` (the game's) is checked."""
    shapes = _Shapes(state, source)
    rew_end, rew_actions, image_size = _infer_rew_end(shapes)
    denoiser, den_actions = _infer_denoiser(shapes, image_size)
    actor_critic = _infer_actor_critic(shapes)
    counts = {"denoiser.inner_model.act_emb.0.weight": den_actions, "rew_end_model.act_emb.weight": rew_actions,
              "actor_critic.actor_linear.weight": actor_critic.num_actions}
    expected = num_actions if num_actions is not None else den_actions
    for key, count in counts.items():
        if count != expected:
            whose = "the game has" if num_actions is not None else "the denoiser has"
            raise shapes.fail(key, f"is for {count} actions but {whose} {expected}")
    try:
        world_model = WorldModelConfig(num_actions=expected, denoiser=denoiser, rew_end=rew_end)
    except ValueError as e:
        raise DiamondFormatError(f"{source}: the inferred config is invalid: {e}") from e
    return DiamondConfigs(world_model, actor_critic)


# ------------------------------------------------------------------------------------------- conversion


def check_diamond_state(state: object, source: str) -> dict[str, Tensor]:
    """``state`` as a dict of tensors, or an error saying why it is not a DIAMOND agent."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise DiamondFormatError(f"{source} is not a DIAMOND agent: it holds a {type(state).__name__}, not a "
                                 "dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise DiamondFormatError(f"{source}: key {bad!r} holds a {type(state[bad]).__name__}, not a tensor: "
                                 "not a DIAMOND agent state dict")
    if not any(k.startswith(p) for k in state for p in PREFIXES):
        raise DiamondFormatError(f"{source} is not a DIAMOND agent: none of its {len(state)} keys starts with "
                                 f"{', '.join(PREFIXES)} (e.g. {next(iter(state), None)!r})")
    return dict(state)


def from_diamond(state: Mapping[str, Tensor], source: str = "state dict",
                 num_actions: int | None = None) -> tuple[WorldModel, ActorCritic]:
    """Our world model and actor-critic holding a DIAMOND agent's weights (every key used, each shape checked)."""
    state = check_diamond_state(state, source)
    configs = infer_configs(state, source, num_actions)
    world_model, actor_critic = WorldModel(configs.world_model), ActorCritic(configs.actor_critic)
    mapping = diamond_keys(world_model, actor_critic)
    unknown = sorted(set(state) - set(mapping.values()))
    if unknown:
        raise DiamondFormatError(f"{source}: unknown key {unknown[0]!r} ({len(unknown)} in all) fits no network "
                                 "of the inferred config")
    ours: dict[str, dict[str, Tensor]] = {"world_model": {}, "actor_critic": {}}
    targets = {"world_model": world_model.state_dict(), "actor_critic": actor_critic.state_dict()}
    for our_key, their_key in mapping.items():
        net, key = our_key.split(".", 1)
        if their_key not in state:
            raise DiamondFormatError(f"{source}: missing key {their_key!r}")
        tensor, target = state[their_key], targets[net][key]
        if tensor.shape != target.shape:
            raise DiamondFormatError(f"{source}: key {their_key!r} has shape {tuple(tensor.shape)}, but the config "
                                     f"inferred from the other keys needs {tuple(target.shape)}")
        ours[net][key] = tensor.detach().to(target.dtype)
    world_model.load_state_dict(ours["world_model"])
    actor_critic.load_state_dict(ours["actor_critic"])
    return world_model.eval(), actor_critic.eval()


def check_representable(world_model: WorldModel) -> None:
    """Raise unless DIAMOND's networks compute what ``world_model`` computes."""
    cfg = world_model.config
    unet, rew_end, den = cfg.denoiser.unet, cfg.rew_end, cfg.denoiser
    problems = []
    if not unet.mid_attention:
        problems.append("the U-Net has no middle attention (mid_attention=False); DIAMOND's always has")
    if unet.attention_residual != "normalized" or rew_end.attention_residual != "normalized":
        problems.append("attention_residual='input' (gym-diamond 0.1's variant)")
    if rew_end.norm_out:
        problems.append("the reward/termination encoder has norm_out (gym-diamond 0.1's variant)")
    for name, c in (("denoiser.unet", unet), ("rew_end", rew_end)):
        if c.attn_head_dim != diamond_head_dim(c.channels[-1]):
            problems.append(f"{name}.attn_head_dim={c.attn_head_dim}, DIAMOND uses "
                            f"{diamond_head_dim(c.channels[-1])} on {c.channels[-1]} channels")
    if (den.sigma_data, den.sigma_offset_noise) != (DIAMOND_SIGMA_DATA, DIAMOND_SIGMA_OFFSET_NOISE):
        problems.append(f"sigma_data={den.sigma_data}, sigma_offset_noise={den.sigma_offset_noise} (DIAMOND: "
                        f"{DIAMOND_SIGMA_DATA}, {DIAMOND_SIGMA_OFFSET_NOISE})")
    if problems:
        raise DiamondFormatError("this world model cannot run in DIAMOND's code: " + "; ".join(problems))


def to_diamond(world_model: WorldModel, actor_critic: ActorCritic) -> dict[str, Tensor]:
    """A DIAMOND agent state dict (fp32, CPU) holding our world model's and actor-critic's weights."""
    check_representable(world_model)
    if actor_critic.config.num_actions != world_model.config.num_actions:
        raise DiamondFormatError(f"the actor-critic has {actor_critic.config.num_actions} actions, the world model "
                                 f"{world_model.config.num_actions}")
    states = {"world_model": world_model.state_dict(), "actor_critic": actor_critic.state_dict()}
    out = {}
    for our_key, their_key in diamond_keys(world_model, actor_critic).items():
        net, key = our_key.split(".", 1)
        out[their_key] = states[net][key].detach().cpu().float().contiguous()
    return out


def diamond_yaml(configs: DiamondConfigs) -> str:
    """DIAMOND's ``config/agent/default.yaml`` values that rebuild these networks in its code."""
    den, rew, ac = configs.world_model.denoiser, configs.world_model.rew_end, configs.actor_critic
    levels = len(den.unet.channels)

    def lst(xs: tuple[int, ...] | list[int]) -> str:
        return "[" + ",".join(map(str, xs)) + "]"

    return "\n".join([
        "# DIAMOND config/agent/default.yaml values for this agent (num_actions comes from the game)",
        "denoiser:",
        f"  sigma_data: {den.sigma_data}",
        f"  sigma_offset_noise: {den.sigma_offset_noise}",
        "  inner_model:",
        f"    img_channels: {den.image_channels}",
        f"    num_steps_conditioning: {den.context_length}",
        f"    cond_channels: {den.unet.cond_channels}",
        f"    depths: {lst([den.unet.blocks_per_level] * levels)}",
        f"    channels: {lst(den.unet.channels)}",
        f"    attn_depths: {lst([0] * levels)}",
        "rew_end_model:",
        f"  lstm_dim: {rew.lstm_dim}",
        f"  cond_channels: {rew.cond_channels}",
        f"  depths: {lst([rew.blocks_per_level] * len(rew.channels))}",
        f"  channels: {lst(rew.channels)}",
        f"  attn_depths: {lst([0] * len(rew.channels))}",
        "actor_critic:",
        f"  lstm_dim: {ac.lstm_dim}",
        f"  channels: {lst(ac.channels)}",
        f"  down: {lst([1] * len(ac.channels))}",
        "",
    ])
