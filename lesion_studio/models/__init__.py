"""Torch networks, losses, trainers, checkpoints and inference. No Qt imports."""
