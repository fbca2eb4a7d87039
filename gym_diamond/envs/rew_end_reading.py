"""How a dream keeps the reward/termination model's LSTM state over an episode of any length.

DIAMOND trains the reward/termination model on sequences of 19 transitions from a zero state (its
``rew_end_model`` ``seq_length``) and imagines 15 steps after a burn-in of 3, so its reader never runs past what it
was trained on. A gymnasium dream runs for hundreds of steps. Carried that long, the LSTM drifts out of its trained
range: read over 148 whole held-out Breakout lives it called 124 endings that were not there (termination precision
0.52, against 0.90 from fresh sequences of 19 and 0.85 from the staggered states below; ``benchmarks/long_reads.py``).

:class:`StaggeredReading` (the default) keeps two states, each restarted from zero every ``window`` transitions,
half a window apart, and reads the older: once an episode is half a window old every read comes from a state that
has seen between half a window and a whole one, as in training. :class:`CarriedReading` keeps one state over the
whole episode, as DIAMOND's ``WorldModelEnv`` does. Both burn their states in on a new episode's real context.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gym_diamond.errors import UserError
from gym_diamond.nn.blocks import LSTMState

__all__ = ["DEFAULT_WINDOW", "BurnIn", "CarriedReading", "RewEndReading", "StaggeredReading", "check_window",
           "reading_for"]

DEFAULT_WINDOW = 19  # DIAMOND's reward/termination training sequences (transitions from a zero state)

BurnIn = Callable[[Tensor, Tensor], LSTMState]
"""The LSTM state after the transitions of contexts (r, l, c, h, w), any l, with their actions (r, l), from zero:
``RewEndModel.burn_in``."""


def check_window(window: int | None) -> int | None:
    """A window of 2 or more transitions, or None (one state carried over the whole episode)."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 2):
        raise UserError(f"rew_end_window must be an integer of at least 2 transitions, or None to carry one state "
                        f"over the whole episode; got {window!r}")
    return window


def _put(old: Tensor, new: Tensor, rows: Tensor | None, mask: Tensor) -> Tensor:
    """``old`` with the dreams that restart replaced: dim 1 rows ``rows`` (new holds those) or where ``mask``."""
    if rows is not None:
        return old.index_copy(1, rows, new)
    return torch.where(mask.view(1, -1, *([1] * (old.ndim - 2))), new, old)


class RewEndReading:
    """The LSTM state(s) of n dreams: what a step reads from, and how a restart or a step changes them.

    ``state`` holds k states per dream as k * n rows (state j of dream i at row j * n + i); ``before_step``'s
    ``read_from`` (n,) says which of them each dream's reward and termination are read from (None: the only one).
    """

    copies = 1

    def __init__(self, burn_in: BurnIn, initial_state: LSTMState) -> None:
        """``initial_state``: the zero state of n dreams (``RewEndModel.initial_state(n)``)."""
        self.burn_in = burn_in
        self.n = initial_state[0].shape[1]
        self.state: LSTMState = tuple(s.repeat(1, self.copies, 1) for s in initial_state)

    def before_step(self) -> tuple[LSTMState, Tensor | None]:
        """The state(s) the next step starts from and which one each dream reads."""
        return self.state, None

    def after_step(self, state: LSTMState) -> None:
        """Keep the state(s) a step returned."""
        self.state = state

    def restart(self, mask: Tensor, context: Tensor, actions: Tensor, rows: Tensor | None = None) -> None:
        """Dreams in ``mask`` (n,) start again from real ``context`` (L frames) and ``actions``: for all n dreams,
        or, where ``rows`` (the indices of ``mask``) is given, for those rows only."""
        burnt = self.burn_in(context, actions)
        self.state = tuple(_put(old, new, rows, mask) for old, new in zip(self.state, burnt, strict=True))


class CarriedReading(RewEndReading):
    """One state per dream, carried from its burn-in to the end of the episode (DIAMOND's ``WorldModelEnv``)."""


class StaggeredReading(RewEndReading):
    """Two states per dream, each restarted from zero every ``window`` transitions, half a window apart; the older
    one is read."""

    copies = 2

    def __init__(self, burn_in: BurnIn, initial_state: LSTMState, window: int = DEFAULT_WINDOW) -> None:
        super().__init__(burn_in, initial_state)
        self.window = check_window(window)
        self.offset = (window + 1) // 2
        # transitions each state (2, n) has read since it was zero; 0 or less: not begun, kept zero until it begins
        self.ages = torch.zeros(2, self.n, dtype=torch.long, device=initial_state[0].device)
        self._restart_ages: dict[int, Tensor] = {}  # the ages a restart sets, by the context's transitions

    def before_step(self) -> tuple[LSTMState, Tensor]:
        self.ages = torch.where(self.ages >= self.window, torch.zeros_like(self.ages), self.ages)
        zero = (self.ages <= 0).view(1, 2 * self.n, 1)
        self.state = tuple(torch.where(zero, torch.zeros_like(s), s) for s in self.state)
        return self.state, (self.ages[1] > self.ages[0]).long()

    def after_step(self, state: LSTMState) -> None:
        super().after_step(state)
        self.ages = self.ages + 1

    def restart(self, mask: Tensor, context: Tensor, actions: Tensor, rows: Tensor | None = None) -> None:
        """The first state burnt in on the context's L - 1 transitions; the second on its last L - 1 - half a
        window of them where there are that many, else begun that many steps later (kept zero until then)."""
        transitions = context.shape[1] - 1
        second_age = transitions - self.offset
        first = self.burn_in(context, actions)
        if second_age > 0:
            second = self.burn_in(context[:, -second_age - 1:], actions[:, -second_age - 1:])
        else:
            second = tuple(torch.zeros_like(s) for s in first)
        halves = [tuple(s[:, j * self.n:(j + 1) * self.n] for s in self.state) for j in range(2)]
        self.state = tuple(torch.cat([_put(a, new_a, rows, mask), _put(b, new_b, rows, mask)], dim=1)
                           for a, b, new_a, new_b in zip(*halves, first, second, strict=True))
        if transitions not in self._restart_ages:  # made once: a restart on a GPU copies nothing from the host
            self._restart_ages[transitions] = torch.tensor([[transitions], [second_age]], device=self.ages.device)
        ages = self._restart_ages[transitions]
        self.ages = _put(self.ages, ages.expand(2, self.n if rows is None else len(rows)), rows, mask)


def reading_for(burn_in: BurnIn, initial_state: LSTMState, window: int | None) -> RewEndReading:
    """Staggered states restarted every ``window`` transitions, or one carried state where ``window`` is None."""
    if check_window(window) is None:
        return CarriedReading(burn_in, initial_state)
    return StaggeredReading(burn_in, initial_state, window)
