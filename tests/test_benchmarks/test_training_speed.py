"""benchmarks/training_speed.py: several precisions timed in turn, in one process, round after round."""

import json

from helpers import load_benchmark


def load_script():
    return load_benchmark("training_speed")


def test_precisions_are_timed_in_turn_round_after_round(capsys, one_thread):
    load_script().main(["--model", "tiny", "--precision", "fp32", "bf16", "--rounds", "2", "--min-seconds", "0",
                        "--batch-size", "2", "--rew-end-sequence-length", "5", "--horizon", "2",
                        "--num-batches-to-preload", "1", "--denoising-steps", "1",
                        "--actor-critic-channels", "4", "4", "4", "4", "--actor-critic-lstm-dim", "8"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    order = [(line["what"], line["precision"], line["round"]) for line in lines]
    world_model = [(what, precision, round_) for round_ in (1, 2) for precision in ("fp32", "bf16")
                   for what in ("denoiser_update", "world_model_update")]
    actor_critic = [("actor_critic_update", precision, round_) for round_ in (1, 2) for precision in ("fp32", "bf16")]
    assert order == world_model + actor_critic
    assert all(line["updates_per_s"] > 0 for line in lines)
    assert [line["dream_precision"] for line in lines[-4:]] == ["fp32", "bf16"] * 2
    assert all(line["actor_critic_channels"] == [4] * 4 and line["actor_critic_lstm_dim"] == 8 for line in lines[-4:])
