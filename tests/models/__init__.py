"""Tests of polymodal.models (encoders, fusions, heads, objectives, MultimodalNet)."""
