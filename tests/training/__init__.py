"""Tests of polymodal.training (Lightning module, Trainer set-up)."""
