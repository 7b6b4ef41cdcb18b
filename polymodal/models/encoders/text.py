"""Text encoders over token ids (B, T) with an attention mask: mean of word vectors
(``embedding_bag``), ``rnn``, ``cnn``, a small ``transformer`` and ``hf`` (a transformers model
read from a local folder)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polymodal.config.encoders import EmbeddingBagConfig, HfConfig, TextCnnConfig, TextRnnConfig, TextTransformerConfig
from polymodal.config.finetune import LoraConfig
from polymodal.errors import EncoderSettingError
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.encoders.sequence import RnnCore, TransformerCore
from polymodal.models.layers import masked_max, masked_mean
from polymodal.models.lora import add_lora
from polymodal.models.registry import ENCODERS
from polymodal.models.weights import reading_setting, small_files
from polymodal.models.word_vectors import load_word_vectors


def _embedding(vocab_size: int, dim: int, pad_id: int) -> nn.Embedding:
    return nn.Embedding(vocab_size, dim, padding_idx=pad_id)


@ENCODERS.register(EmbeddingBagConfig)
class EmbeddingBag(Encoder):
    """Masked mean of word vectors, optionally initialised from a local word-vector file."""

    def __init__(self, vocab_size: int, pad_id: int, dim: int = 128, vectors: Path | None = None,
                 vocab: list[str] | None = None, train_vectors: bool = True):
        super().__init__()
        self.embedding = _embedding(vocab_size, dim, pad_id)
        self.train_vectors = train_vectors
        if vectors is not None:
            if vocab is None:
                raise EncoderSettingError("vectors", "word vectors need the modality's preprocess.tokenizer 'word'")
            with reading_setting("vectors"):
                matrix, found = load_word_vectors(vectors, vocab)
            if matrix.shape[1] != dim:
                raise EncoderSettingError("dim", f"the word vectors in {vectors} are {matrix.shape[1]}-d; set encoder.dim "
                                                 f"to {matrix.shape[1]}")
            with torch.no_grad():
                rows = torch.as_tensor(found)
                self.embedding.weight[rows] = torch.as_tensor(matrix[found])
            self.embedding.weight.requires_grad_(train_vectors)
            self.pretrained = True
            self.coverage = len(found) / max(len(vocab), 1)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: EmbeddingBagConfig, *, vocab_size: int, pad_id: int, vocab: list[str] | None = None,
                    restore: bool = False, **_: Any) -> EmbeddingBag:
        """``restore=True``: the word vectors come with a saved run's weights, not from ``vectors``."""
        encoder = cls(vocab_size, pad_id, cfg.dim, None if restore else cfg.vectors, vocab, cfg.train_vectors)
        if restore and cfg.vectors is not None:
            encoder.pretrained = True
            encoder.embedding.weight.requires_grad_(cfg.train_vectors)
        return encoder

    def freeze(self, spec: str | int) -> None:
        """As :meth:`Encoder.freeze`, but loaded word vectors with ``train_vectors: false`` stay
        fixed whatever number of blocks trains."""
        super().freeze(spec)
        if self.pretrained and not self.train_vectors:
            self.embedding.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        tokens = self.embedding(x)  # (B, T, D)
        return EncoderOutput(masked_mean(tokens, mask), tokens, mask)


@ENCODERS.register(TextRnnConfig)
class TextRnn(Encoder):
    """Word embeddings -> LSTM/GRU (optionally bidirectional) -> masked pooling."""

    def __init__(self, vocab_size: int, pad_id: int, embed_dim: int = 128, hidden: int = 128, layers: int = 1,
                 cell: str = "gru", bidirectional: bool = True, dropout: float = 0.0, pooling: str = "mean"):
        super().__init__()
        self.embedding = _embedding(vocab_size, embed_dim, pad_id)
        self.core = RnnCore(embed_dim, hidden, layers, cell, bidirectional, dropout, pooling)
        self.output_dim = self.core.output_dim

    @classmethod
    def from_config(cls, cfg: TextRnnConfig, *, vocab_size: int, pad_id: int, **_: Any) -> TextRnn:
        return cls(vocab_size, pad_id, cfg.embed_dim, cfg.hidden, cfg.layers, cfg.cell, cfg.bidirectional,
                   cfg.dropout, cfg.pooling)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        return self.core(self.embedding(x), mask)


@ENCODERS.register(TextCnnConfig)
class TextCnn(Encoder):
    """Parallel 1-D convolutions of several widths over word embeddings, max-pooled over time."""

    def __init__(self, vocab_size: int, pad_id: int, embed_dim: int = 128, channels: int = 100,
                 kernel_sizes: tuple[int, ...] = (3, 4, 5), dropout: float = 0.1):
        super().__init__()
        self.embedding = _embedding(vocab_size, embed_dim, pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k, padding=k // 2) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = channels * len(kernel_sizes)

    @classmethod
    def from_config(cls, cfg: TextCnnConfig, *, vocab_size: int, pad_id: int, **_: Any) -> TextCnn:
        return cls(vocab_size, pad_id, cfg.embed_dim, cfg.channels, tuple(cfg.kernel_sizes), cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        emb = self.embedding(x).transpose(1, 2)  # (B, E, T)
        maps = [torch.relu(conv(emb))[..., : x.shape[1]].transpose(1, 2) for conv in self.convs]  # (B, T, C) each
        tokens = torch.cat(maps, dim=-1)  # (B, T, C * K)
        return EncoderOutput(self.dropout(masked_max(tokens, mask)), tokens, mask)


@ENCODERS.register(TextTransformerConfig)
class TextTransformer(Encoder):
    """Word embeddings + sinusoidal positions -> a small Transformer encoder."""

    def __init__(self, vocab_size: int, pad_id: int, dim: int = 128, layers: int = 2, heads: int = 4, ff: int = 256,
                 dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        self.embedding = _embedding(vocab_size, dim, pad_id)
        self.core = TransformerCore(dim, layers, heads, ff, dropout, pooling)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: TextTransformerConfig, *, vocab_size: int, pad_id: int, **_: Any) -> TextTransformer:
        return cls(vocab_size, pad_id, cfg.dim, cfg.layers, cfg.heads, cfg.ff, cfg.dropout, cfg.pooling)

    def blocks(self) -> list[nn.Module]:
        return [self.embedding, *self.core.encoder.layers, self.core.norm]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        return self.core(self.embedding(x), mask)


@contextmanager
def _without_transformers_bars() -> Iterator[None]:
    """transformers' progress bars off for the block (restored as they were)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@ENCODERS.register(HfConfig)
class HfEncoder(Encoder):
    """A transformers ``AutoModel`` from a local folder (``local_files_only``), CLS or mean pooling.
    The folder's own Python code (``auto_map``) is never run (``trust_remote_code=False``: left
    unset, transformers asks at a terminal whether to run it).

    ``lora`` adds LoRA adapters (default targets: peft's choice for the model type, e.g. BERT's
    attention ``query`` and ``value``). ``restore=True`` builds the model from the folder's
    ``config.json`` alone (a saved run's ``model.safetensors`` supplies the weights).
    """

    def __init__(self, path: Path, pooling: str = "mean", lora: LoraConfig | None = None, restore: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if not Path(path).is_dir():
            raise FileNotFoundError(f"encoder 'hf': model folder not found: {path}")
        if restore:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
            self.model = AutoModel.from_config(config, trust_remote_code=False)
        else:
            with _without_transformers_bars():  # a local model loads in a second: its own bar is noise in logs
                self.model = AutoModel.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        if getattr(self.model, "pooler", None) is not None:  # unused (we pool ourselves): drop its weights
            self.model.pooler = None
        self.path = Path(path)
        self.pooling = pooling
        self.pretrained = True
        self.output_dim = int(self.model.config.hidden_size)
        if lora is not None:
            add_lora(self.model, lora.targets if lora.targets is not None else self.lora_targets(), lora.r, lora.alpha,
                     lora.dropout)

    @classmethod
    def from_config(cls, cfg: HfConfig, *, restore: bool = False, **_: Any) -> HfEncoder:
        return cls(cfg.path, cfg.pooling, cfg.lora, restore)

    def assets(self) -> dict[str, tuple[Path, list[str]]]:
        """The folder's config, tokenizer and other small files; not its weights (the run has them)."""
        return {"path": (self.path, small_files(self.path))}

    def lora_targets(self) -> list[str]:
        """peft's default LoRA targets for this model type, else every linear layer of the layers."""
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

        targets = DEFAULTS.get(getattr(self.model.config, "model_type", ""))
        if targets:
            return list(targets)
        return [n for n, m in self.model.named_modules() if isinstance(m, nn.Linear)]

    def blocks(self) -> list[nn.Module]:
        encoder = getattr(self.model, "encoder", None)
        layers = getattr(encoder, "layer", None) if encoder is not None else None
        if layers is None:
            return list(self.model.children())
        return [self.model.embeddings, *layers]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        attention = mask.long() if mask is not None else torch.ones_like(x)
        hidden = self.model(input_ids=x, attention_mask=attention).last_hidden_state  # (B, T, D)
        pooled = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)
        return EncoderOutput(pooled, hidden, mask)
