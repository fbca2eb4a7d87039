"""Every outcome of a function's random draws, each with its probability: how the fixture script and
tests/test_diamond_training.py compare DIAMOND's batch sampler with ours exactly, not by sampling."""

from __future__ import annotations


class Enumerator:
    """Walks every outcome of a function's random draws (depth first), with each outcome's probability.

    ``pick(probs)`` is one draw among ``len(probs)`` options; ``next_run()`` moves to the next combination.
    """

    def __init__(self) -> None:
        self.path: list[int] = []
        self.arity: list[int] = []
        self.depth, self.prob = 0, 1.0

    def pick(self, probs: list[float]) -> int:
        if self.depth == len(self.path):
            self.path.append(0)
            self.arity.append(len(probs))
        i = self.path[self.depth]
        self.depth += 1
        self.prob *= probs[i]
        return i

    def next_run(self) -> bool:
        self.depth, self.prob = 0, 1.0
        while self.path:
            self.path[-1] += 1
            if self.path[-1] < self.arity[-1]:
                return True
            self.path.pop()
            self.arity.pop()
        return False
