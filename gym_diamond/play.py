"""Playing a dream by hand: keyboard to action, frames to a pygame window. Needs the ``[play]`` extra.

``examples/play_dream.py`` puts these together; :class:`Keyboard` can also be fed scripted events,
which is how the tests play.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from gym_diamond.errors import UserError
from gym_diamond.render import upscale

try:
    import pygame
except ImportError as e:
    raise ImportError('playing a dream needs pygame: pip install "gym-diamond[play]"') from e

JOYSTICK = {pygame.K_UP: "UP", pygame.K_DOWN: "DOWN", pygame.K_LEFT: "LEFT", pygame.K_RIGHT: "RIGHT",
            pygame.K_SPACE: "FIRE"}
HORIZON_KEYS = {pygame.K_PAGEUP: 10, pygame.K_RIGHTBRACKET: 10, pygame.K_PAGEDOWN: -10, pygame.K_LEFTBRACKET: -10}
ORDER = ("UP", "DOWN", "RIGHT", "LEFT", "FIRE")  # how ALE spells combined actions: "UPRIGHT", "DOWNLEFTFIRE"


def action_for(pressed: set[str], meanings: list[str]) -> int:
    """The action whose meaning is exactly the pressed set ({"UP", "FIRE"} -> "UPFIRE"), else NOOP."""
    name = "".join(part for part in ORDER if part in pressed) or "NOOP"
    return meanings.index(name if name in meanings else "NOOP")


class Keyboard:
    """The player's intent, read once per frame with :meth:`poll`.

    Arrows and space are the joystick, held together for the game's combined actions; Enter asks for
    a restart; m hands play to the agent and back (when ``agent_available``); r shows the real game
    beside the dream (turning it on asks for a restart: both must start together); PageUp/PageDown
    or ] and [ change the imagination horizon by 10; Esc or closing the window quits.
    ``events`` replaces the keyboard with one list of events per frame (an exhausted script is idle).
    """

    def __init__(self, meanings: list[str], horizon: int, agent_available: bool = False,
                 events: Iterable[list[pygame.event.Event]] | None = None) -> None:
        if horizon < 1:
            raise UserError(f"horizon must be a positive integer, got {horizon!r}")
        self.meanings, self.horizon, self.agent_available = list(meanings), horizon, agent_available
        self.held: set[str] = set()
        self.agent_plays = self.show_real = self.switched = self.restart = False
        self._first = True
        self._script = None if events is None else iter(events)

    def poll(self) -> bool:
        """Read this frame's events; False once the player quits.

        Afterwards ``restart`` says whether this frame should start a new dream (always on the first
        frame) and ``switched`` whether the player just handed play to the agent or took it back.
        """
        self.restart, self.switched, self._first = self._first, False, False
        for event in pygame.event.get() if self._script is None else next(self._script, []):
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                return False
            if event.type == pygame.KEYUP:
                self.held.discard(JOYSTICK.get(event.key))
            elif event.type == pygame.KEYDOWN:
                self._press(event.key)
        return True

    def _press(self, key: int) -> None:
        if key in JOYSTICK:
            self.held.add(JOYSTICK[key])
        elif key in HORIZON_KEYS:
            self.horizon = max(1, self.horizon + HORIZON_KEYS[key])
        elif key == pygame.K_m and self.agent_available:
            self.agent_plays, self.switched = not self.agent_plays, True
        elif key == pygame.K_r:
            self.show_real = not self.show_real
            self.restart = self.restart or self.show_real
        elif key == pygame.K_RETURN:
            self.restart = True

    def action(self) -> int:
        """The joystick's action in the game's action set."""
        return action_for(self.held, self.meanings)


class Screen:
    """A pygame window showing frames side by side, each pixel a ``scale`` x ``scale`` block, at ``fps``."""

    def __init__(self, scale: int = 4, fps: int = 15) -> None:
        pygame.init()
        self.scale, self.fps = scale, fps
        self.clock = pygame.time.Clock()
        self.surface: pygame.Surface | None = None

    def show(self, frames: list[np.ndarray], caption: str) -> None:
        """Draw uint8 frames (h, w, 3) left to right, resizing the window to fit, then wait for the next tick."""
        picture = np.concatenate([upscale(frame, frame.shape[0] * self.scale) for frame in frames], axis=1)
        if self.surface is None or self.surface.get_size() != picture.shape[1::-1]:
            self.surface = pygame.display.set_mode(picture.shape[1::-1])
        pygame.surfarray.blit_array(self.surface, picture.swapaxes(0, 1))  # surfarray is (width, height, 3)
        pygame.display.set_caption(caption)
        pygame.display.flip()
        self.clock.tick(self.fps)

    @property
    def size(self) -> tuple[int, int]:
        """The window's (width, height); (0, 0) before the first frame."""
        return self.surface.get_size() if self.surface is not None else (0, 0)

    def close(self) -> None:
        """Close the window and pygame."""
        pygame.quit()
