"""examples/play_dream.py end to end: scripted key presses drive a tiny Pong dream in a headless pygame window."""

import importlib.util

import numpy as np
import pytest
import torch
from helpers import ROOT, make_tiny_checkpoint

from gym_diamond import load_checkpoint, save_checkpoint
from gym_diamond.envs.ale_starts import AleStarts
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from gym_diamond.play import action_for
from gym_diamond.render import upscale
from training.agents.checkpoints import save_actor_critic

pygame = pytest.importorskip("pygame")

PONG = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]
SCALE = 2
SIDE = 64 * SCALE


def load_example():
    path = ROOT / "examples" / "play_dream.py"
    spec = importlib.util.spec_from_file_location("play_dream", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


play_dream = load_example()


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    """No window, no sound card: SDL's dummy drivers, read when pygame.init() runs.

    One torch thread: the tiny model gains nothing from more, and on a busy machine two threads
    waiting on each other made a dream step 50 times slower here.
    """
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def endless_checkpoint(tmp_path_factory):
    """The tiny Pong dream with its reward/termination head pinned to "reward 0, not terminated".

    The untrained tiny model ends its dreams every few steps at random, which would hide the restarts
    the keys and the horizon make; this one ends only when they say so.
    """
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("endless") / "Pong.safetensors")
    ckpt = load_checkpoint(path)
    hidden, out = ckpt.world_model.rew_end.head[0], ckpt.world_model.rew_end.head[2]
    with torch.no_grad():
        hidden.weight.zero_()
        hidden.bias.fill_(5.0)  # a constant, positive hidden layer ...
        out.weight.zero_()
        out.weight[1] = 1.0  # ... votes for reward class 1 (reward 0)
        out.weight[3] = 1.0  # ... and end class 0 (not terminated), by a margin of about 5 x lstm_dim
    return save_checkpoint(path, ckpt.world_model, game=ckpt.game, action_meanings=ckpt.action_meanings,
                           start_bank=ckpt.start_bank)


def down(key):
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def up(key):
    return pygame.event.Event(pygame.KEYUP, key=key)


def play(checkpoint, script, *extra):
    """Run the example for exactly one frame per scripted list of events; returns its per-frame log."""
    argv = ["--checkpoint", str(checkpoint), "--scale", str(SCALE), "--fps", "1000", "--max-frames",
            str(len(script)), *extra]
    return play_dream.main(argv, events=script)


@pytest.mark.parametrize(("pressed", "pong", "breakout"), [
    (set(), "NOOP", "NOOP"),
    ({"FIRE"}, "FIRE", "FIRE"),
    ({"RIGHT"}, "RIGHT", "RIGHT"),
    ({"LEFT"}, "LEFT", "LEFT"),
    ({"RIGHT", "FIRE"}, "RIGHTFIRE", "NOOP"),  # Breakout has no RIGHTFIRE: not the nearest action, NOOP
    ({"LEFT", "FIRE"}, "LEFTFIRE", "NOOP"),
    ({"UP"}, "NOOP", "NOOP"),  # neither game has UP
    ({"LEFT", "RIGHT"}, "NOOP", "NOOP"),
    ({"UP", "RIGHT", "FIRE"}, "NOOP", "NOOP"),
])
def test_action_for_matches_the_pressed_set_exactly(pressed, pong, breakout):
    assert PONG[action_for(pressed, PONG)] == pong
    assert BREAKOUT[action_for(pressed, BREAKOUT)] == breakout


def test_action_for_spells_combinations_as_ale_does():
    meanings = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
                "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
                "DOWNLEFTFIRE"]
    assert meanings[action_for({"UP", "RIGHT"}, meanings)] == "UPRIGHT"
    assert meanings[action_for({"DOWN", "LEFT", "FIRE"}, meanings)] == "DOWNLEFTFIRE"
    assert meanings[action_for({"FIRE", "UP"}, meanings)] == "UPFIRE"


def test_keys_drive_the_dream_reset_horizon_and_real_view(endless_checkpoint, monkeypatch):
    shown, flip = [], pygame.display.flip  # shown: what each frame put on the screen, as (height, width, 3)

    def flip_and_keep():
        shown.append(pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1))
        flip()

    monkeypatch.setattr(pygame.display, "flip", flip_and_keep)
    starts, ale_starts = [], AleStarts.starts  # starts: the real frames each "ale" start handed the dream

    def starts_and_keep(self, mask, uniform):
        frames, actions = ale_starts(self, mask, uniform)
        starts.append(frames[0, -1].cpu().numpy())
        return frames, actions

    monkeypatch.setattr(AleStarts, "starts", starts_and_keep)
    script = [
        [],  # 0: the first frame is the dream's start
        [down(pygame.K_RIGHT)],  # 1: RIGHT
        [down(pygame.K_SPACE)],  # 2: RIGHT + space = RIGHTFIRE
        [up(pygame.K_RIGHT)],  # 3: FIRE alone
        [up(pygame.K_SPACE), down(pygame.K_LEFT)],  # 4: LEFT
        [down(pygame.K_UP)],  # 5: LEFT + UP has no meaning in Pong: NOOP
        [down(pygame.K_RETURN)],  # 6: restart, no step
        [up(pygame.K_UP), down(pygame.K_PAGEUP)],  # 7: horizon 100 -> 110, LEFT
        [down(pygame.K_LEFTBRACKET), down(pygame.K_LEFTBRACKET)],  # 8: horizon 110 -> 90
        [down(pygame.K_m)],  # 9: no --agent: m does nothing
        [down(pygame.K_r)],  # 10: real view on: restart from the real game, window twice as wide
        [],  # 11: both step
        [down(pygame.K_r)],  # 12: real view off: the dream goes on, window back to one frame
    ]
    log = play(endless_checkpoint, script)
    assert len(log) == len(script)
    actions = [PONG[r["action"]] if r["action"] is not None else None for r in log]
    assert actions == [None, "RIGHT", "RIGHTFIRE", "FIRE", "LEFT", "NOOP", None, "LEFT", "LEFT", "LEFT", None,
                       "LEFT", "LEFT"]
    assert [r["step"] for r in log] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 1, 2]  # Enter and r restart the dream
    assert [r["horizon"] for r in log] == [100] * 7 + [110] + [90] * 5
    assert not any(r["agent"] for r in log)
    assert [r["size"] for r in log] == [(SIDE, SIDE)] * 10 + [(2 * SIDE, SIDE)] * 2 + [(SIDE, SIDE)]
    assert [picture.shape for picture in shown] == [(h, w, 3) for w, h in (r["size"] for r in log)]
    assert len(starts) == 1 and starts[0].std() > 0  # r asked the real game for one start, and got a Pong screen
    real, dream = shown[10][:, :SIDE], shown[10][:, SIDE:]
    assert (real == upscale(starts[0], SIDE)).all()  # left: the real game, upright, each pixel a SCALE x SCALE block
    assert (dream == real).all()  # right: the dream, started from the very frame the real game shows


def test_dream_restarts_by_itself_after_the_horizon(endless_checkpoint):
    log = play(endless_checkpoint, [[down(pygame.K_RIGHT)]] + [[]] * 6, "--horizon", "2")
    assert [r["step"] for r in log] == [0, 1, 2, 0, 1, 2, 0]
    assert [r["action"] for r in log] == [None, 2, 2, None, 2, 2, None]


def test_m_hands_the_joystick_to_the_agent_and_back(endless_checkpoint, tmp_path, monkeypatch):
    seen, act = [], play_dream.ActorCriticAgent.act  # seen: the observations the agent was asked to act on

    def act_and_keep(self, obs):
        seen.append((obs.shape, obs.dtype))
        return act(self, obs)

    monkeypatch.setattr(play_dream.ActorCriticAgent, "act", act_and_keep)
    agent = save_actor_critic(tmp_path / "ac.safetensors",
                              ActorCritic(ActorCriticConfig(len(PONG), channels=(4, 4, 8, 8), lstm_dim=16)), "Pong")
    script = [[], [down(pygame.K_m)], [], [down(pygame.K_m)], [down(pygame.K_LEFT)], [down(pygame.K_ESCAPE)], []]
    log = play(endless_checkpoint, script, "--agent", str(agent))
    assert len(log) == 5  # Esc quits before the 6th frame
    assert [r["agent"] for r in log] == [False, True, True, False, False]
    assert seen == [((1, 64, 64, 3), np.uint8)] * 2  # frames 1 and 2, one dream observation each
    assert all(0 <= r["action"] < len(PONG) for r in log[1:3])
    assert PONG[log[4]["action"]] == "LEFT"


def test_keyboard_reads_intent_frame_by_frame():
    from gym_diamond.play import Keyboard

    script = [[], [down(pygame.K_PAGEDOWN)], [down(pygame.K_m)], [down(pygame.K_r)], [down(pygame.K_r)],
              [down(pygame.K_RIGHT), down(pygame.K_SPACE)], [up(pygame.K_SPACE)]]
    keys = Keyboard(PONG, horizon=5, agent_available=False, events=script)
    seen = []
    while keys.poll() and len(seen) < len(script) + 2:  # two idle frames after the script runs out
        seen.append((keys.restart, keys.horizon, keys.agent_plays, keys.show_real, PONG[keys.action()]))
    assert seen == [(True, 5, False, False, "NOOP"),  # the first frame starts a dream
                    (False, 1, False, False, "NOOP"),  # the horizon stops at 1
                    (False, 1, False, False, "NOOP"),  # no agent to hand over to
                    (True, 1, False, True, "NOOP"),  # the real view starts both afresh ...
                    (False, 1, False, False, "NOOP"),  # ... leaving it does not
                    (False, 1, False, False, "RIGHTFIRE"),
                    (False, 1, False, False, "RIGHT"),
                    (False, 1, False, False, "RIGHT"), (False, 1, False, False, "RIGHT")]
    with pytest.raises(ValueError, match="horizon"):
        Keyboard(PONG, horizon=0)


def test_a_dream_of_another_environment_plays_too(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "maze.safetensors", game="MiniGrid-Empty-6x6-v0")
    log = play(checkpoint, [[]] * 3)  # opened with DiamondDream/Dream-v0, not a made-up MiniGrid id
    assert [r["step"] for r in log][:2] == [0, 1]
