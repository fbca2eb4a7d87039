"""How faithful a world model is: open-loop PSNR and objects against held-out real frames, reward and
end events, and closed-loop event rates (``python -m training.fidelity`` judges a checkpoint).
"""
