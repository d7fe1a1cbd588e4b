"""Training and evaluation loop, distributed setup, checkpoints."""
