"""Text in the runtime: the training cleaning, then the word vocabulary or a tokenizers-library JSON
(trained WordPiece / BPE, or a pretrained transformers tokenizer's fast form)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polymodal.deploy.features.base import Features
from polymodal.errors import MissingDependencyError
from polymodal.utils.text import UNK_ID, cleaner, padded_ids, word_ids


class TextFeatures(Features):
    kind = "text"

    def __init__(self, name: str, meta: Mapping[str, Any], on_error: str | None = None):
        super().__init__(name, meta, on_error)
        self.clean = cleaner(self.cfg, self.state.get("stop_words") or ())
        self.max_tokens = int(self.cfg["max_tokens"])
        self.unk_id, self.pad_id = int(self.state.get("unk_id", UNK_ID)), int(self.state.get("pad_id", 0))
        if self.cfg["tokenizer"] == "word":
            self.encode = self.count = word_ids(self.state["vocab"])
            return
        try:  # wordpiece / bpe trained on the texts, or a pretrained (transformers 'fast') tokenizer: its JSON
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependencyError("tokenizers", f"text modality '{name}' ({self.cfg['tokenizer']})") from None
        whole, cut = Tokenizer.from_str(self.state["tokenizer_json"]), Tokenizer.from_str(self.state["tokenizer_json"])
        whole.no_truncation()
        whole.no_padding()
        cut.no_padding()
        if self.cfg["tokenizer"] == "pretrained":  # as transformers calls it: special tokens within max_tokens
            cut.enable_truncation(self.max_tokens, direction=self.state.get("truncation_side", "right"))
        self.encode = lambda text: cut.encode(text).ids
        self.count = lambda text: whole.encode(text).ids  # uncut: for the note that a text was cut

    def decode(self, value: Any) -> list[int]:
        if not isinstance(value, str):
            raise self.fail(f"expected a string; got {type(value).__name__}")
        return self.encode(self.clean(value))[: self.max_tokens] or [self.unk_id]  # as in training: one unknown token

    def notes(self, value: Any) -> list[str]:
        """That the text was cut to the model's ``max_tokens``, or cleaned to nothing (read as one
        unknown token)."""
        ids = self.count(self.clean(value))
        if not ids:
            return ["the text holds no word once cleaned (punctuation, stop words): read as one unknown token"]
        if len(ids) > self.max_tokens:
            side = self.state.get("truncation_side", "right")
            how = (f"cut to {self.max_tokens:,} (the tokenizer cuts from the {side})" if self.cfg["tokenizer"] == "pretrained"
                   else f"cut to its first {self.max_tokens:,}")
            return [f"{len(ids):,} tokens where the model reads {self.max_tokens:,}: {how}"]
        return []

    def featurize(self, samples: Sequence[list[int]]) -> dict[str, np.ndarray]:
        return padded_ids(samples, self.max_tokens, self.pad_id)
