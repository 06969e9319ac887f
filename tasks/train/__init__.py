"""Training: shared options and results, backends (torch loop, HF Trainer), checkpoints, DDP."""
