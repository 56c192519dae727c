"""Evaluation protocols and retrieval metrics, shared by training and `phpq-eval --model` (no torch)."""
