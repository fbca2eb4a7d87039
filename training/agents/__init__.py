"""Training agents: DIAMOND's actor-critic losses and imagination loop, the actor-critic in a frozen dream,
SB3 in a dream, rollouts that count reward and end events, and real-game evaluation.
"""
