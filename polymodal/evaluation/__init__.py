"""Evaluation layer: reports and plots (robustness, attribution and retrieval metrics grow here)."""
