"""Policies: `reset()`, `predict_chunk(obs_window) -> [B, H, A]`, `select_action(obs)`."""
