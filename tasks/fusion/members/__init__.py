"""Fusion members: resolve and download a logged model, rebuild it, give its logits."""
