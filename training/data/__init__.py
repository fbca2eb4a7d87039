"""Real play: ALE vector environments with DIAMOND's protocol, the players that collect (random, scripted,
trained agents), collection, the episode dataset, and the game objects (ball, paddles, boxers) read from frames.
"""
