"""Serves: the ball back in play after frames without it (training.fidelity.serve), found in a ball's visibility and
dreamt one step ahead by stand-in dreams that never serve and that always draw a ball."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import real_pong_data

from gym_diamond import to_model_frames
from training.data.ball_paths import serve_transitions
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.serve import ball_serves


def test_serves_and_pauses_are_found_in_the_balls_visibility():
    #                   frame: 0  1  2  3  4  5  6  7  8  9 10 11
    visible = np.array([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1], bool)
    serves, pauses = serve_transitions(visible, context_length=2, pause=3)
    # transition s goes from frame s to s + 1; the ball away from frames s-2..s
    assert serves.tolist() == [4, 10] and pauses.tolist() == [3, 9]
    serves, pauses = serve_transitions(visible, context_length=5, pause=3)  # the context must be real: s >= 4
    assert serves.tolist() == [4, 10] and pauses.tolist() == [9]
    serves, pauses = serve_transitions(visible, context_length=2, pause=4)
    assert serves.tolist() == [4, 10] and pauses.tolist() == []
    assert [t.size for t in serve_transitions(visible[:3], context_length=4)] == [0, 0]
    with pytest.raises(ValueError, match="pause and context_length must be >= 1"):
        serve_transitions(visible, context_length=4, pause=0)


class StandInDream:
    """A 4-frame dream that draws ``frame`` (model space) as every next frame, or repeats the last context frame."""

    def __init__(self, frame: torch.Tensor | None = None) -> None:
        self.frame = frame
        self.config = SimpleNamespace(denoiser=SimpleNamespace(context_length=4))
        self.device = torch.device("cpu")

    def imagine_step(self, frames, actions, generator=None):
        assert frames.shape[1:] == (4, 3, 64, 64) and actions.shape == frames.shape[:2]
        nxt = frames[:, -1] if self.frame is None else self.frame.expand(len(frames), -1, -1, -1)
        return SimpleNamespace(next_frame=nxt.clone())


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    """Random play in real Pong: the first serve of a game and those after each point."""
    return EpisodeDataset(real_pong_data(tmp_path_factory.mktemp("serve") / "pong", episodes=2, steps=300),
                          game="Pong")


def test_a_dream_that_repeats_its_last_frame_never_serves_and_one_that_always_draws_a_ball_always_does(pong):
    frames = pong.episode(0).frames
    with_ball = frames[np.flatnonzero(find_objects("Pong", frames).ball_visible)[0]]
    never, always = StandInDream(), StandInDream(to_model_frames(torch.as_tensor(with_ball[None])))
    report = ball_serves(never, pong, [0, 1], samples=4, seed=0)
    assert report.serves >= 2 and report.pauses == 4  # random play loses a point every few dozen steps
    assert report.recall() == 0 and report.phantom_rate() == 0
    report = ball_serves(always, pong, [0, 1], samples=4, seed=0, batch_size=3)
    assert report.recall() == 1 and report.phantom_rate() == 1
    assert ball_serves(never, pong, [], samples=4).recall() is None
    with pytest.raises(ValueError, match="samples and batch_size must be >= 1"):
        ball_serves(never, pong, [0], samples=0)


def test_the_fidelity_command_reports_serves(pong, tmp_path, capsys, one_thread):
    import json

    from helpers import make_tiny_checkpoint

    from training.fidelity.__main__ import main

    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    main(["--checkpoint", str(checkpoint), "--data", str(pong.root), "--samples", "3", "--horizons", "1",
          "--denoising-steps", "1", "--serves"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["serves"] == 3 and line["pauses"] == 3 and line["denoising_steps"] == 1
    assert 0 <= line["serve_drawn"] <= 1 and 0 <= line["pause_phantom"] <= 1
