"""The gates that decide what ships (training.gates): they fail a dream that drops the ball or never
scores, and pass one that draws the game as it is."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import PixelCodeOracle

from gym_diamond import to_model_frames
from gym_diamond.world_model import ImaginedStep
from training.data.collect import main as collect_main
from training.data.dataset import Episode, EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.measures import dream_event_starts, event_confusion, object_agreement
from training.fidelity.open_loop import dream_event_confusion, dream_reward_recall
from training.gates import TABLE_HEADER, failed_gates, judge_events, judge_objects, judge_psnr, table_row

PONG_COURT = np.array([144, 72, 17], np.uint8)


def _erase_ball(frames: np.ndarray) -> np.ndarray:
    """The frames with the ball painted over in the court's brown: a dream that drops the ball."""
    shape = frames.shape
    frames = frames.reshape(-1, *shape[-3:]).copy()
    seen = find_objects("Pong", frames)
    for i in np.flatnonzero(seen.ball_visible):
        x, y = np.round(seen.ball_xy[i]).astype(int)
        frames[i, max(y - 2, 11):y + 3, max(x - 2, 0):x + 3] = PONG_COURT
    return frames.reshape(shape)


@pytest.fixture(scope="module")
def pong_windows(tmp_path_factory):
    """Real Pong: 4 context frames and the 15 after them, for windows with the ball in play."""
    out = tmp_path_factory.mktemp("pong")
    collect_main(["--game", "Pong", "--out", str(out), "--steps", "900", "--num-envs", "1", "--seed", "3",
                  "--policy", "follow", "--epsilon", "0.25", "--no-life-loss"])
    frames = EpisodeDataset(out, game="Pong").episode(0).frames
    starts = np.arange(0, len(frames) - 19, 7)
    windows = np.stack([frames[s:s + 19] for s in starts])
    windows = windows[find_objects("Pong", windows[:, 4]).ball_visible]
    assert len(windows) >= 20, "the ball should be in play in most of a follower's frames"
    return windows[:, :4], windows[:, 4:]


def _lines(context, real, predicted):
    agreement = object_agreement("Pong", context, real, predicted, horizons=(1, 5, 15))
    return {h: agreement.line(h) for h in (1, 5, 15)}


def test_object_gate_passes_the_real_game_and_fails_a_dream_without_the_ball(pong_windows):
    context, real = pong_windows
    assert judge_objects(_lines(context, real, real))["passed"]
    lines = _lines(context, real, _erase_ball(real))
    assert all(line["ball_shown_model"] <= 0.1 for line in lines.values())  # (a ball on the bar's edge stays)
    verdict = judge_objects(lines)
    assert not verdict["passed"]
    assert sum("ball shown in" in why for why in verdict["failed"]) == 3
    frozen = np.repeat(context[:, -1:], real.shape[1], axis=1)  # a dream that repeats its last frame
    verdict = judge_objects(_lines(context, real, frozen))
    assert not verdict["passed"] and all("within 2 px" in why for why in verdict["failed"])


def test_psnr_and_event_judges_name_what_failed():
    line = {"pooled_psnr_model": 30.0, "pooled_psnr_repeat_last": 31.0}
    assert judge_psnr({1: {**line, "pooled_psnr_model": 32.0}, 5: {**line, "pooled_psnr_model": 32.0}})["passed"]
    assert judge_psnr({1: line, 5: {**line, "pooled_psnr_model": 32.0}})["failed"] == [
        "pooled PSNR at 1 steps: 30.0 dB, repeat-last 31.0"]
    good = {"reward_recall": 0.9, "reward_precision": 0.85, "termination_recall": 1.0, "termination_precision": 0.8}
    assert judge_events(good)["passed"]
    never = judge_events({**good, "reward_recall": 0.0, "reward_precision": None})
    assert not never["passed"] and never["failed"] == ["reward_recall 0.0 < 0.8", "reward_precision None (no event "
                                                                                     "to judge)"]


def _coded_dataset(tmp_path) -> EpisodeDataset:
    """Episodes whose frames carry the event of the transition into them in pixel (0, 0) (read by the oracle
    reward model of test_fidelity) and their own index and episode in pixels (0, 1) and (0, 2)."""
    data = EpisodeDataset(tmp_path / "coded", game="Pong")
    rng = np.random.default_rng(1)
    for e, length in enumerate((45, 19, 7)):
        rewards = rng.choice([-1.0, 0.0, 0.0, 1.0], length).astype(np.float32)
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        frames = np.zeros((length + 1, 64, 64, 3), np.uint8)
        frames[1:, 0, 0, 0] = 10 * (np.sign(rewards).astype(int) + 1) + 30 * terminated
        frames[:, 0, 1, 0], frames[:, 0, 2, 0] = np.arange(length + 1), 200 + e
        z = np.zeros(length, bool)
        data.append(Episode(frames, rng.integers(0, 6, length), rewards, terminated, z, z.copy()))
    return data


class _Dreamer:
    """A world model whose 'dream' is the real next frame (``draws_events``) or the last context frame again
    (a dream in which nothing ever happens); it records which context and action each step was given."""

    def __init__(self, dataset: EpisodeDataset, draws_events: bool) -> None:
        self.device, self.dataset, self.draws_events = torch.device("cpu"), dataset, draws_events
        self.config = SimpleNamespace(denoiser=SimpleNamespace(context_length=4))
        self.denoiser, self.rew_end = torch.nn.Identity(), PixelCodeOracle()
        self.seen: list[tuple[int, int, int, bool]] = []

    def imagine_step(self, frames, actions, lstm_state=None, generator=None):
        code = ((frames[:, -1, 0, 0, 1:3] + 1) * 127.5).round().long()  # (index, 200 + episode) of the last frame
        nexts = []
        for (t, e), action, context in zip(code.tolist(), actions[:, -1].tolist(), frames, strict=True):
            episode = self.dataset.episode(e - 200) if e >= 200 else None  # grey padding reads 127
            real = episode is not None and t < len(episode)
            if real:  # the context is the 4 frames up to t (grey before the episode), the action is t's
                expected = to_model_frames(torch.as_tensor(episode.frames[max(t - 3, 0):t + 1]))
                self.seen.append((e - 200, t, action, bool(torch.equal(context[-len(expected):], expected)
                                                           and action == episode.actions[t])))
            if not real:  # a transition past the episode's end: masked out of the counts
                nexts.append(-torch.ones_like(context[-1]))
            elif self.draws_events:
                nexts.append(to_model_frames(torch.as_tensor(episode.frames[t + 1])))
            else:  # the last frame again, with no event drawn (code 10: reward 0, no end)
                quiet = context[-1].clone()
                quiet[0, 0, 0] = 10 / 127.5 - 1
                nexts.append(quiet)
        return ImaginedStep(torch.stack(nexts), None, None, None)


def test_events_on_dream_frames_see_what_the_dream_draws(tmp_path):
    dataset = _coded_dataset(tmp_path)
    faithful = _Dreamer(dataset, draws_events=True)
    report = dream_event_confusion(faithful, dataset, [0, 1, 2], sequence_length=19, batch_size=2)
    oracle = SimpleNamespace(device=torch.device("cpu"), rew_end=PixelCodeOracle())
    on_real = event_confusion(oracle, dataset, [0, 1, 2])
    assert (report.reward == on_real.reward).all() and (report.termination == on_real.termination).all()
    assert judge_events(report.to_dict())["passed"]
    assert sorted((e, t) for e, t, _, _ in faithful.seen) == [(e, t) for e in range(3)
                                                              for t in range(len(dataset.episode(e)))]
    assert all(ok for *_, ok in faithful.seen), "each dreamed step must get its transition's context and action"
    nothing_happens = dream_event_confusion(_Dreamer(dataset, draws_events=False), dataset, [0, 1, 2])
    verdict = judge_events(nothing_happens.to_dict())
    assert not verdict["passed"] and nothing_happens.reward_recall() == 0.0


def test_the_dream_reward_recall_reads_the_rewards_off_the_dreams_frames(tmp_path):
    dataset = _coded_dataset(tmp_path)
    faithful = _Dreamer(dataset, draws_events=True)
    assert dream_reward_recall(faithful, dataset, np.array([0, 1, 2]), samples=8, sequence_length=5) == 1.0
    assert all(ok for *_, ok in faithful.seen), "each dreamed step must get its transition's context and action"
    blank = _Dreamer(dataset, draws_events=False)  # the real frames would show every reward
    assert dream_reward_recall(blank, dataset, np.array([0, 1, 2]), samples=8, sequence_length=5) == 0.0
    quiet = EpisodeDataset(tmp_path / "quiet", game="Pong")
    episode = dataset.episode(2)
    quiet.append(Episode(episode.frames, episode.actions, np.zeros_like(episode.rewards), episode.terminated,
                         episode.truncated, episode.life_loss))
    assert dream_reward_recall(faithful, quiet, np.array([0]), samples=8) is None


def test_the_table_row_names_each_object_of_the_game():
    """Boxing has two boxers and no ball: the row shows both (a row that looked for a ball raised KeyError)."""
    objects = {h: {f"{name}_{figure}_model": value for name, shown, near in (("player", 1.0, 0.94 - h / 100),
                                                                             ("opponent", 0.91, 0.81 - h / 100))
                   for figure, value in (("shown", shown), ("within_2px", round(near, 2)))} for h in (1, 5, 15)}
    fidelity = {"psnr": {1: 27.9, 5: 23.7, 15: 21.6}, "psnr_repeat_last": {1: 27.2, 5: 23.4, 15: 22.3},
                "objects": objects, "objects_gate": {"passed": False, "objects": ["player", "opponent"]}}
    row = table_row({"game": "Boxing", "fidelity": {"3": fidelity}, "events": None, "passed": False})
    assert "| player 1.0, 0.93 / 1.0, 0.89 / 1.0, 0.79; opponent 0.91, 0.8 / 0.91, 0.76 / 0.91, 0.66 |" in row
    assert row.count("|") == TABLE_HEADER.count("|")


def test_endings_called_over_whole_episodes_fail_the_gates_and_show_in_the_row():
    """Read over whole episodes as a dream reads them, a reward/termination model may call endings that fresh
    sequences never see: the gates judge both readings."""
    fresh = {"reward_recall": 0.9, "reward_precision": 0.9, "termination_recall": 0.9, "termination_precision": 0.9}
    whole = {**fresh, "termination_precision": 0.52}
    objects = {h: {f"ball_{f}_model": 1.0 for f in ("shown", "within_2px")} for h in (1, 5, 15)}
    gates = {"game": "Breakout", "passed": False, "events": judge_events(fresh),
             "whole_episode_events": judge_events(whole),
             "fidelity": {"3": {"psnr": {1: 40, 5: 36, 15: 33}, "psnr_repeat_last": {1: 33, 5: 31, 15: 29},
                                "objects": objects, "objects_gate": {"passed": True, "objects": ["ball"]}}}}
    assert failed_gates(gates) == ["whole_episode_events: termination_precision 0.52 < 0.8"]
    row = table_row(gates)
    assert "0.9 / 0.9, 0.9 / 0.9 (whole episodes 0.9 / 0.9, 0.9 / 0.52) |" in row
    assert row.count("|") == TABLE_HEADER.count("|")


def test_dream_events_judge_every_held_out_episodes_end(tmp_path):
    """A game ends once an episode: a few thousand steps of whole episodes judge one or two ends, so the last
    sequence of every other episode is judged too."""
    dataset = _coded_dataset(tmp_path)  # 45, 19 and 7 transitions, each episode ending on its last
    starts, whole = dream_event_starts(dataset, [0, 1, 2], steps=40, sequence_length=19)
    assert whole == 1 and starts == [(0, 0), (0, 19), (0, 38), (1, 0), (2, 0)]
    report = dream_event_confusion(_Dreamer(dataset, draws_events=True), dataset, [0, 1, 2], starts=starts)
    assert report.termination.tolist() == [[44 + 18 + 6, 0], [0, 3]]  # all three ends, each read right
    assert report.termination_recall() == 1.0
    whole_only = dream_event_confusion(_Dreamer(dataset, draws_events=True), dataset, [0], starts=starts[:3])
    assert whole_only.termination.tolist() == [[44, 0], [0, 1]]
    quiet = dream_event_confusion(_Dreamer(dataset, draws_events=False), dataset, [0, 1, 2], starts=starts)
    assert quiet.termination_recall() == 0.0 and quiet.termination[1].sum() == 3
    starts, whole = dream_event_starts(dataset, [2, 1], steps=1000, sequence_length=19)
    assert whole == 2 and starts == [(2, 0), (1, 0)]
