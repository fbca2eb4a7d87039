"""Frames for people: nearest-neighbour upscaling and an optional pygame window."""

from __future__ import annotations

import numpy as np

from gym_diamond.errors import UserError


def upscale(frames: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of uint8 frames (..., h, w, c) to (..., size, size, c), keeping pixels crisp."""
    if not isinstance(size, int) or size < 1:
        raise UserError(f"render size must be a positive integer, got {size!r}")
    h, w = frames.shape[-3:-1]
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return frames[..., rows[:, None], cols[None, :], :]


class HumanWindow:
    """A pygame window showing frames at a fixed frame rate; needs the ``[play]`` extra."""

    def __init__(self, size: int, fps: int, title: str = "gym-diamond") -> None:
        try:
            import pygame
        except ImportError as e:
            raise ImportError('render_mode="human" needs pygame: pip install "gym-diamond[play]"') from e
        self._pygame = pygame
        pygame.init()
        pygame.display.set_caption(title)
        self.screen = pygame.display.set_mode((size, size))
        self.clock = pygame.time.Clock()
        self.fps = fps

    def show(self, frame: np.ndarray) -> None:
        """frame: uint8 (size, size, 3)."""
        pg = self._pygame
        pg.event.pump()
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self.screen.blit(surface, (0, 0))
        pg.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        """Close the window (and pygame's display)."""
        self._pygame.display.quit()
