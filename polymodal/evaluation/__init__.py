"""Evaluation layer: what is measured on a fitted model beyond its metrics: accuracy per modality
subset, corruption sweeps, modality attribution (Shapley values, integrated gradients),
calibration and complexity, and the pages that show them (``report.html``, the explain
page)."""
