"""Heads: what turns the fused representation into a task's outputs.

- :mod:`~polymodal.models.heads.joint`: the joint models a config names in ``head:`` (``mlp``,
  ``rnn``, ``cnn``, ``transformer``), registered in ``HEADS``.
- :mod:`~polymodal.models.heads.task`: heads that wrap the configured one: one per task
  (multi-task) and nearest-prototype (few-shot); ``build_heads`` is what ``build_model`` calls.
"""

from polymodal.models.heads.joint import CnnHead, MlpHead, RnnHead, TransformerHead, build_head
from polymodal.models.heads.task import MultiTaskHead, PrototypeHead, build_heads

__all__ = ["CnnHead", "MlpHead", "MultiTaskHead", "PrototypeHead", "RnnHead", "TransformerHead", "build_head",
           "build_heads"]
