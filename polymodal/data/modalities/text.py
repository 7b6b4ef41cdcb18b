"""Text: cleaning (lower-casing, punctuation, stop words) and tokenisation.

Tokenisers: ``word`` (a vocabulary built from the training texts), ``wordpiece`` and ``bpe``
(trained on the training texts with the tokenizers library) and ``pretrained`` (a local
tokenizer folder read with transformers, never downloaded).

Cached form: ``ids`` int32 (max_tokens,) padded with the pad id, ``length`` int32. At batch
time the padding is trimmed to the longest text of the batch and an attention mask is built.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch

from polymodal.config.modalities import TextModality
from polymodal.config.preprocess import TextPreprocess
from polymodal.data.cells import cell_text
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor
from polymodal.errors import NotFittedError, SchemaMismatchError
from polymodal.utils.device import exporting
from polymodal.utils.io import model_files_digest
from polymodal.utils.text import UNK_ID, clean, cleaner, padded_ids, word_ids

PAD, UNK = "[PAD]", "[UNK]"


# the negations of scikit-learn's English list, which stopwords 'english' keeps: "no pneumonia" is not "pneumonia"
ENGLISH_NEGATIONS = frozenset({"no", "not", "nor", "never", "none", "noone", "nobody", "nothing", "nowhere", "neither",
                               "cannot", "cant", "couldnt", "hasnt", "without"})


def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list, whole (``stopwords: english_all``)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def stop_words(cfg: TextPreprocess) -> frozenset[str]:
    """The words ``cfg.stopwords`` removes: none, scikit-learn's English list without
    :data:`ENGLISH_NEGATIONS` (``english``) or whole (``english_all``), or the user's own
    words, each cleaned as the text is (so that they match the cleaned text's words)."""
    chosen = cfg.stopwords
    if chosen is False:
        return frozenset()
    if chosen == "english_all":
        return english_stop_words()
    if isinstance(chosen, list):
        return frozenset(clean(word, lowercase=cfg.lowercase, strip_punctuation=cfg.strip_punctuation,
                               join_apostrophes=cfg.join_apostrophes,
                               keep_number_punctuation=cfg.keep_number_punctuation) for word in chosen)
    return english_stop_words() - ENGLISH_NEGATIONS  # english (true is read as english when validated)


def clean_text(text: str, cfg: TextPreprocess) -> str:
    """Apply the configured lower-casing, punctuation stripping and stop-word removal (see
    :func:`polymodal.utils.text.cleaner`, which the deployment runtime builds its cleaning with too)."""
    return text_cleaner(cfg)(text)


def text_cleaner(cfg: TextPreprocess) -> Callable[[str], str]:
    """:func:`clean_text` for one config, built once (a preprocessor cleans every text with it)."""
    return cleaner(cfg.model_dump(), stop_words(cfg))


def _train_subword(kind: str, texts: Sequence[str], cfg: TextPreprocess) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_freq, special_tokens=[PAD, UNK])
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_freq, special_tokens=[PAD, UNK])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _as_before(config: dict[str, Any]) -> dict[str, Any]:
    """See :meth:`TextPreprocessor.encoding_config`."""
    for setting in ("keep_number_punctuation", "join_apostrophes"):  # each acts only with strip_punctuation
        if not (config.get(setting) and config.get("strip_punctuation")):
            config.pop(setting, None)
    if config.get("stopwords") == "english_all":
        config["stopwords"] = True
    return config


@PREPROCESSORS.register(TextModality)
class TextPreprocessor(Preprocessor):
    """See the module docstring."""

    kind = "text"
    file_based = False
    featurize_version = 5  # 2: an empty cleaned text is one [UNK]; NFC before cleaning. 3: cell_text. 4: marks kept, CJK spaced.
    # 5: format characters and variation selectors (emoji sequences) deleted
    batch_time_fields = frozenset({"unknown_rate"})  # applied to batches: the cached ids stay valid
    location_fields = frozenset({"tokenizer_path"})  # its files' content is in encoding_state

    def __init__(self, name: str, cfg: TextPreprocess):
        super().__init__(name)
        self.cfg = cfg
        self.vocab: list[str] | None = None  # word tokenizer
        self.tokenizer_json: str | None = None  # wordpiece / bpe

    @classmethod
    def from_config(cls, cfg: TextModality, *, name: str) -> TextPreprocessor:
        return cls(name, cfg.preprocess)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        texts = [self._clean(cell_text(v)) for v in values]
        if self.cfg.tokenizer == "word":
            counts = Counter(word for text in texts for word in text.split())
            kept = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= self.cfg.min_freq]
            self.vocab = [PAD, UNK, *kept[: self.cfg.vocab_size - 2]]
        elif self.cfg.tokenizer in ("wordpiece", "bpe"):
            self.tokenizer_json = _train_subword(self.cfg.tokenizer, texts, self.cfg).to_str()
        self.__dict__.pop("_encoder", None)

    @cached_property
    def _clean(self) -> Callable[[str], str]:
        return text_cleaner(self.cfg)

    @cached_property
    def _encoder(self) -> Any:
        """A callable text -> list of ids, built from the fitted state."""
        cfg = self.cfg
        if cfg.tokenizer == "word":
            if self.vocab is None:
                raise NotFittedError(f"text modality '{self.name}': the word vocabulary is not fitted")
            return word_ids(self.vocab)
        if cfg.tokenizer == "pretrained":
            tokenizer = self._pretrained
            return lambda text: tokenizer(text, truncation=True, max_length=cfg.max_tokens)["input_ids"]
        if self.tokenizer_json is None:
            raise NotFittedError(f"text modality '{self.name}': the {cfg.tokenizer} tokenizer is not fitted")
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return lambda text: tokenizer.encode(text).ids

    @cached_property
    def _pretrained(self) -> Any:
        from transformers import AutoTokenizer

        # the folder's own Python code (auto_map) never runs: left unset, transformers asks at a terminal
        return AutoTokenizer.from_pretrained(str(self.cfg.tokenizer_path), local_files_only=True,
                                             trust_remote_code=False)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for spawned DataLoader workers): cached tokenizer closures are rebuilt lazily."""
        state = dict(self.__dict__)
        state.pop("_encoder", None)
        state.pop("_clean", None)
        state.pop("_pretrained", None)
        state.pop("_tokenizer_digest", None)
        return state

    # -- encoding -----------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The tokens a text becomes (for inspection and token-level attributions)."""
        ids = self.decode(text)
        if self.cfg.tokenizer == "word":
            return [self.vocab[i] for i in ids]
        if self.cfg.tokenizer == "pretrained":
            return self._pretrained.convert_ids_to_tokens(ids)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return [tokenizer.id_to_token(i) for i in ids]

    def token_labels(self, text: str) -> list[str]:
        """:meth:`tokenize`, where a word the vocabulary lacks shows as itself, marked, not as
        ``[UNK]`` (``lucchetto (unknown)``): what a token-level attribution is labelled with."""
        tokens = self.tokenize(text)
        if self.cfg.tokenizer != "word":
            return tokens
        words = self._clean(cell_text(text)).split()[: self.cfg.max_tokens]
        if len(words) != len(tokens):  # a text cleaned to nothing: its one [UNK] stands for no word
            return tokens
        return [f"{word} (unknown)" if token == UNK else token for word, token in zip(words, tokens, strict=True)]

    def decode(self, value: Any) -> list[int]:
        """A text's token ids; one that cleans to nothing (punctuation, stop words) is one unknown
        token, so that every present text has a position to attend to."""
        ids = self._encoder(self._clean(cell_text(value)))
        return ids[: self.cfg.max_tokens] or [self.unk_id]

    def featurize(self, samples: Sequence[list[int]]) -> dict[str, np.ndarray]:
        return padded_ids(samples, self.cfg.max_tokens, self.pad_id)

    def spec(self) -> dict[str, ArraySpec]:
        return {"ids": ArraySpec((self.cfg.max_tokens,), "int32"), "length": ArraySpec((), "int32")}

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        lengths = arrays["length"].long()
        if exporting():  # an exported graph keeps max_tokens (the mask hides the padding):
            longest = arrays["ids"].shape[1]  # the trimming below has a data-dependent length torch.export refuses
        else:  # padding past the batch's longest text is trimmed
            longest = max(int(lengths.max()) if lengths.numel() else 1, 1)
        ids = arrays["ids"][:, :longest].long()  # (B, T)
        mask = torch.arange(longest)[None, :] < lengths[:, None]
        if train and self.cfg.unknown_rate > 0 and self.cfg.tokenizer != "pretrained":  # see TextPreprocess
            ids = ids.masked_fill((torch.rand(ids.shape) < self.cfg.unknown_rate) & mask, self.unk_id)
        return {"x": ids, "mask": mask}

    # -- facts and state ----------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        if self.cfg.tokenizer == "pretrained":
            pad = self._pretrained.pad_token_id
            return 0 if pad is None else int(pad)
        return 0

    @property
    def unk_id(self) -> int:
        if self.cfg.tokenizer == "pretrained":
            unk = self._pretrained.unk_token_id
            return self.pad_id if unk is None else int(unk)
        return UNK_ID

    @property
    def vocab_size(self) -> int:
        if self.cfg.tokenizer == "word":
            return len(self.vocab or [])
        if self.cfg.tokenizer == "pretrained":
            return len(self._pretrained)
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json).get_vocab_size()

    def encoder_context(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "pad_id": self.pad_id, "max_tokens": self.cfg.max_tokens,
                "vocab": self.vocab}

    def get_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "tokenizer_json": self.tokenizer_json}

    def encoding_config(self) -> dict[str, Any]:
        """The settings as runs saved before ``keep_number_punctuation``, ``join_apostrophes`` and
        ``stopwords: english`` wrote them, wherever they clean alike: ``keep_number_punctuation``
        and ``join_apostrophes`` each left out when false (or idle, with ``strip_punctuation``
        off), ``english_all`` written ``true``; so that those runs keep their fingerprint (the one
        their weights record, which serving checks an export against) and their cached features."""
        return _as_before(super().encoding_config())

    def settings_digest_config(self) -> dict[str, Any]:
        """The settings, spelt as :meth:`encoding_config` spells them."""
        return _as_before(super().settings_digest_config())

    def runtime_settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The base's, plus the stop-word list, and a pretrained tokenizer as its tokenizers-library
        JSON (with the ids and the side it cuts from, a setting of the tokenizer, not of its JSON)
        in place of the folder it was loaded from on this machine.

        Raises:
            SchemaMismatchError: the pretrained tokenizer has no tokenizers-library ("fast") form.
        """
        settings, state = super().runtime_settings()
        if self.cfg.tokenizer == "pretrained":
            tokenizer = self._pretrained
            if not getattr(tokenizer, "is_fast", False):
                raise SchemaMismatchError(
                    f"the pretrained tokenizer {type(tokenizer).__name__} has no tokenizers-library form (a 'fast' "
                    "tokenizer, tokenizer.json) for the runtime to run; predict with 'polymodal predict' or the "
                    "Python API, or save the model folder with its fast tokenizer "
                    "(AutoTokenizer.from_pretrained(...).save_pretrained(...))")
            state.update(tokenizer_json=tokenizer.backend_tokenizer.to_str(), pad_id=self.pad_id, unk_id=self.unk_id,
                         truncation_side=getattr(tokenizer, "truncation_side", "right"))
            settings["tokenizer_path"] = None
        if self.cfg.stopwords:
            state["stop_words"] = sorted(stop_words(self.cfg))
        return settings, state

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.vocab = state.get("vocab")
        self.tokenizer_json = state.get("tokenizer_json")
        self.__dict__.pop("_encoder", None)

    def encoding_state(self) -> dict[str, Any]:
        """The fitted vocabulary or tokenizer; for a pretrained tokenizer, the content of its folder
        (another tokenizer saved at the same path gives other ids): the files a run copies of it."""
        state = self.get_state()
        if self.cfg.tokenizer == "pretrained":
            state["tokenizer_files"] = self._tokenizer_digest
        return state

    @cached_property
    def _tokenizer_digest(self) -> str:
        """The pretrained tokenizer folder's files, model weights and hidden files left out (a model
        folder often holds both): those the run's copy of the folder holds."""
        return model_files_digest(self.cfg.tokenizer_path)
