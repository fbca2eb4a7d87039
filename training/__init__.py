"""Building DIAMOND world models from real Atari data and training agents in them.

Subpackages, in the order a run uses them (each imports only ``gym_diamond`` and those before it):

- ``training.runtime``: plumbing shared by every stage (command-line errors, files and locks, states, logs, charts).
- ``training.data``: real play: ALE environments with DIAMOND's protocol, the players (random, scripted, trained
  agents), collection, the episode dataset, the game objects read from frames.
- ``training.agents``: training agents: DIAMOND's actor-critic in a dream, SB3 in a dream, real-game evaluation.
- ``training.fidelity``: how faithful a world model is, open loop and closed loop.
- ``training.world_model``: training the world model.
- ``training.diamond``: DIAMOND's own checkpoints in and out.

On top: ``training.pipeline`` (DIAMOND end to end) with its ``training.presets``, ``training.gates`` (the
quality gates a shipped dream passes) and ``training.ship``.
"""
