"""Encoder configs. The ``name`` literal of each class is the name users write in YAML."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationInfo, model_validator

from polymodal.config.base import StrictModel
from polymodal.config.finetune import LocalPath, LoraConfig, UnfreezeConfig, transformers_folder_problem
from polymodal.utils.warn import warn_user

Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


def check_heads(cfg: object) -> object:
    """Attention splits ``dim`` evenly across ``heads``."""
    dim, heads = cfg.dim, cfg.heads  # type: ignore[attr-defined]
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    return cfg


class EncoderConfig(StrictModel):
    """Fields every encoder has.

    Attributes:
        freeze: ``none`` trains everything, ``all`` freezes the encoder (linear probing), an integer
            N trains only the last N blocks of a pretrained backbone. Batch-norm layers of frozen
            parts stay in eval mode (their running statistics are kept).
        unfreeze: gradual unfreezing: more trailing blocks become trainable as epochs pass.
        cache: compute the (frozen) encoder's outputs once per input and store them (on disk under
            ``data.cache_dir``, memory-mapped, reused across epochs and runs; in memory without
            it); training then never runs this encoder. Needs ``freeze: all``. An encoder that nests
            another (``frame_cnn``'s ``frame``) may cache that front stage only (:meth:`cached_stage`).
    """

    kinds: ClassVar[tuple[str, ...]] = ()
    freeze: Literal["none", "all"] | Annotated[int, Field(ge=0)] = "none"
    unfreeze: UnfreezeConfig | None = None
    cache: bool = False

    def _cache_refusal(self) -> str:
        """Why ``cache: true`` is refused when part of the encoder would train (a kind whose encoder
        nests another says which freeze it means)."""
        lora = getattr(self, "lora", None)
        got = (f"got freeze: {self.freeze!r}, unfreeze: {'set' if self.unfreeze is not None else None}, lora: "
               f"{'set' if lora is not None else None}")
        if self.freeze != "all":  # named under freeze (frame.freeze for a frame encoder): the key to change
            return (f"freeze: must be all for cache: true, which stores the outputs of a frozen encoder (without "
                    f"unfreeze or lora either); set freeze: all or drop cache ({got})")
        return f"cache: true stores the outputs of a frozen encoder; it needs freeze: all without unfreeze or lora ({got})"

    def cached_stage(self) -> tuple[str, EncoderConfig] | None:
        """The frozen front stage whose outputs the feature cache stores while the rest of this encoder
        trains on them: (its key, its config); None where ``cache`` (if set) stores the whole
        encoder's outputs. The cache key hashes this stage's config and weights only, so that
        training the rest never invalidates it (see :mod:`polymodal.data.embeddings`)."""
        return None

    def caches_features(self) -> bool:
        """Whether the feature cache stores this encoder's outputs (``cache``) or those of its front
        stage (:meth:`cached_stage`) in place of the inputs."""
        return self.cache or self.cached_stage() is not None

    @model_validator(mode="after")
    def _check_fine_tuning(self, info: ValidationInfo) -> EncoderConfig:
        lora = getattr(self, "lora", None)
        if self.cache and (self.freeze != "all" or self.unfreeze is not None or lora is not None):
            raise ValueError(self._cache_refusal())
        projection = type(self).model_fields.get("dim")  # optional on pretrained backbones: a new layer
        if (self.freeze == "all" and self.unfreeze is None and projection is not None and projection.default is None
                and getattr(self, "dim", None) is not None and not (info.context or {}).get("saved_run")):
            raise ValueError(f"dim: {self.dim} adds a projection after the backbone, which freeze: all would keep at its "
                             "random initialisation; drop dim (the head learns the mapping), or freeze a number "
                             "of trailing blocks instead")
        if self.unfreeze is not None and self.freeze == "none":
            raise ValueError("unfreeze gradually trains frozen blocks; it needs freeze: all or a number of trailing "
                             "blocks (got freeze: 'none')")
        return self

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        """Preprocessing settings this encoder brings (input size, mean/std, sample rate...); they
        apply wherever the user did not set the field (see ``follow_encoder_preprocess``)."""
        return {}

    def check_preprocess(self, preprocess: Any) -> None:
        """Raise ValueError when ``preprocess`` cannot feed this encoder."""


# --- image -------------------------------------------------------------------------------------
# the largest image side (pixels) whose cnn flattens its last feature map when pool is left unset:
# above, the projection of the flattened map ((side/4)^2 x 64 x 128 weights with the defaults) outgrows
# the data, and the map's mean is taken instead
FLATTEN_MAX_SIDE = 32


class ImageCnnConfig(EncoderConfig):
    """LeNet/VGG-style stack: per stage, ``convs_per_stage`` 3x3 convs then a 2x2 max-pool.

    Attributes:
        pool: how the last feature map becomes the ``dim`` vector: ``flatten`` projects the
            whole map (where a stroke is matters; the projection has (side / 2^stages)^2 x
            channels x dim weights, millions for photos), ``avg`` its per-channel mean (as
            ResNets do; few weights at any size). Left unset: ``flatten`` for images of at most
            :data:`FLATTEN_MAX_SIDE` pixels a side, ``avg`` above (224 px would make 25.7
            million projection weights with the default channels and ``dim``).
    """

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["cnn"] = "cnn"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64], min_length=1)
    convs_per_stage: PositiveInt = 1
    kernel: PositiveInt = 3
    batch_norm: bool = True
    dropout: Dropout = 0.0
    pool: Literal["flatten", "avg"] = Field("flatten", description=(
        f"flatten for images of at most {FLATTEN_MAX_SIDE} px a side, avg above, when left unset"))


class ResNetConfig(EncoderConfig):
    """torchvision ResNet; ``weights`` is a local state-dict file (never downloaded). With weights,
    images are standardised with ImageNet's mean and std unless ``preprocess`` says otherwise."""

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["resnet"] = "resnet"
    depth: Literal[18, 34, 50] = 18
    dim: PositiveInt | None = None
    weights: LocalPath | None = None

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        from polymodal.config.pretrained_data import imagenet_preprocess

        return {} if self.weights is None else imagenet_preprocess(preprocess)


class TimmConfig(EncoderConfig):
    """Any timm architecture; ``weights`` is a local file (``.pth``/``.safetensors``, or
    ``pkg:efficientnet-lite0``). With weights, the architecture's own data config (input size,
    mean, std, as timm declares it) sets the preprocessing fields the user leaves unset."""

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["timm"] = "timm"
    arch: str = "resnet18"
    dim: PositiveInt | None = None
    weights: LocalPath | None = None
    lora: LoraConfig | None = None

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        from polymodal.config.pretrained_data import timm_preprocess

        return {} if self.weights is None else timm_preprocess(self.arch, preprocess)


# --- sequences (audio frames, signal samples) --------------------------------------------------
class SequenceRnnConfig(EncoderConfig):
    """LSTM/GRU over a sequence of feature vectors (audio frames, signal samples)."""

    kinds: ClassVar[tuple[str, ...]] = ("audio", "signal")
    name: Literal["rnn"] = "rnn"
    hidden: PositiveInt = 128
    layers: PositiveInt = 1
    cell: Literal["lstm", "gru"] = "gru"
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max"] = "mean"
    dropout: Dropout = 0.0
    stem_stride: PositiveInt = Field(1, description="strided conv before the RNN to shorten long signals")


class SequenceTransformerConfig(EncoderConfig):
    """A small Transformer encoder over a sequence of feature vectors, trained from scratch."""

    kinds: ClassVar[tuple[str, ...]] = ("audio", "signal")
    name: Literal["transformer"] = "transformer"
    dim: PositiveInt = 128
    layers: PositiveInt = 2
    heads: PositiveInt = 4
    ff: PositiveInt = 256
    dropout: Dropout = 0.1
    pooling: Literal["cls", "mean"] = "mean"
    stem_stride: PositiveInt = 1

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SequenceTransformerConfig:
        return check_heads(self)


class MelCnnConfig(EncoderConfig):
    """2-D CNN over a (time, frequency) spectrogram.

    Attributes:
        frequency: how each frame's remaining frequency bins become its token: ``flatten``
            keeps them side by side (channels x bins), so where in the spectrum a pattern sits
            (formants) survives; ``mean`` averages them away (invariant to frequency shifts,
            and blind to them). On FSDD digits from unseen speakers: 75.6% vs 45.4% test
            accuracy (``benchmarks/semi_fsdd.py`` config, all 1,800 labels, 15 epochs, seed 0).
    """

    kinds: ClassVar[tuple[str, ...]] = ("audio",)
    name: Literal["mel_cnn"] = "mel_cnn"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64, 128], min_length=1)
    batch_norm: bool = True
    dropout: Dropout = 0.1
    frequency: Literal["flatten", "mean"] = "flatten"


class Cnn1dConfig(EncoderConfig):
    """1-D CNN over (channels, samples) signals, one stride-2 pooling stage per entry of ``channels``."""

    kinds: ClassVar[tuple[str, ...]] = ("signal",)
    name: Literal["cnn1d"] = "cnn1d"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64, 128], min_length=1)
    kernel: PositiveInt = 7
    stem_stride: PositiveInt = 1
    batch_norm: bool = True
    dropout: Dropout = 0.1


# --- text --------------------------------------------------------------------------------------
class EmbeddingBagConfig(EncoderConfig):
    """Mean of word vectors; ``vectors`` initialises them from a local word-vector file."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["embedding_bag"] = "embedding_bag"
    dim: PositiveInt = 128
    vectors: LocalPath | None = None
    train_vectors: bool = True


def _reads_every_token(config: Any, info: ValidationInfo) -> Any:
    """A text encoder has no strided front (``stem_stride`` shortens audio and signal sequences)."""
    if config.stem_stride != 1:
        said = (f"stem_stride: {config.stem_stride} shortens audio and signal sequences; the text {config.name} reads "
                "every token (preprocess.max_tokens shortens texts)")
        if not (info.context or {}).get("saved_run"):
            raise ValueError(f"{said}: remove it")
        # a run saved before the check trained without a stride (the key was ignored) and loads as trained
        warn_user(f"this run's text encoder would be refused for a new run: {said}")
    return config


class TextRnnConfig(SequenceRnnConfig):
    """Word embeddings followed by an LSTM/GRU."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    embed_dim: PositiveInt = 128

    @model_validator(mode="after")
    def _no_stem(self, info: ValidationInfo) -> TextRnnConfig:
        return _reads_every_token(self, info)


class TextCnnConfig(EncoderConfig):
    """Kim-style text CNN: parallel convolutions of several widths, max-pooled over time."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["cnn"] = "cnn"
    embed_dim: PositiveInt = 128
    channels: PositiveInt = 100
    kernel_sizes: list[PositiveInt] = Field(default=[3, 4, 5], min_length=1)
    dropout: Dropout = 0.1


class TextTransformerConfig(SequenceTransformerConfig):
    """A small Transformer over word embeddings, trained from scratch."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)

    @model_validator(mode="after")
    def _no_stem(self, info: ValidationInfo) -> TextTransformerConfig:
        return _reads_every_token(self, info)


# What a local transformers model folder declares about input length. sentence-transformers'
# ``max_seq_length`` is the length it truncates to by default (MiniLM: 256), not what the model can
# take (512 position embeddings): it is a default only, never the limit.
DEFAULT_LENGTH_KEYS = (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length"))
LIMIT_KEYS = (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length"))
MAX_SANE_TOKENS = 4096  # transformers writes a huge placeholder model_max_length when the model has none


@dataclass(frozen=True)
class TokenLengths:
    """Input lengths (in tokens) a local transformers model folder declares.

    Attributes:
        default: the length to truncate to unless the user chose one: sentence-transformers'
            ``max_seq_length``, else the tokenizer's ``model_max_length``; at most ``limit``.
            None when the folder declares neither.
        limit: the longest input the model takes: the smaller of ``max_position_embeddings``
            (``config.json``) and the tokenizer's ``model_max_length``. None when it declares neither.
        limit_source: where ``limit`` comes from (``max_position_embeddings in config.json``).
    """

    default: int | None = None
    limit: int | None = None
    limit_source: str | None = None


def _declared_tokens(folder: Path, name: str, key: str) -> int | None:
    """``key`` of the JSON file ``folder/name`` when it is a real token count (a tokenizer's
    ``model_max_length`` placeholder, above 4096, is not); None when the file or key is absent.

    Raises:
        ValueError: the file cannot be read or is not a JSON object.
    """
    file = Path(folder) / name
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"encoder 'hf': cannot read {file}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"encoder 'hf': {file} must hold a JSON object; got {type(data).__name__}")
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return None if key == "model_max_length" and value > MAX_SANE_TOKENS else value


def folder_token_lengths(folder: Path) -> TokenLengths:
    """The default and the longest input length of the model in ``folder`` (see :class:`TokenLengths`;
    all None when the folder does not exist).

    Raises:
        ValueError: one of the folder's JSON files cannot be read or is not a JSON object.
    """
    limits = [(tokens, f"{key} in {name}") for name, key in LIMIT_KEYS
              if (tokens := _declared_tokens(folder, name, key)) is not None]
    limit, source = min(limits, key=lambda found: found[0]) if limits else (None, None)
    default = next((tokens for name, key in DEFAULT_LENGTH_KEYS
                    if (tokens := _declared_tokens(folder, name, key)) is not None), None)
    if default is not None and limit is not None:
        default = min(default, limit)
    return TokenLengths(default, limit, source)


class HfConfig(EncoderConfig):
    """A transformers ``AutoModel`` read from a local folder (no hub access). The text modality
    takes the folder's tokenizer and its default input length (``preprocess.max_tokens``:
    sentence-transformers' ``max_seq_length``, else the tokenizer's ``model_max_length``) unless
    the user set them; ``max_tokens`` may go up to the model's real limit (its position embeddings)."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["hf"] = "hf"
    path: LocalPath
    pooling: Literal["cls", "mean"] = "mean"
    lora: LoraConfig | None = None

    @model_validator(mode="after")
    def _a_transformers_folder(self) -> HfConfig:
        problem = transformers_folder_problem(self.path, model=True, tokenizer=False)
        if problem is not None:
            raise ValueError(f"path: {problem}")
        return self

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        lengths = folder_token_lengths(self.path)
        if lengths.default is not None:
            return {"max_tokens": lengths.default}
        if lengths.limit is not None and preprocess.max_tokens > lengths.limit:  # the field's default: too long
            return {"max_tokens": lengths.limit}
        return {}

    def check_preprocess(self, preprocess: Any) -> None:
        lengths = folder_token_lengths(self.path)  # longer inputs would run past the model's position embeddings
        if lengths.limit is not None and preprocess.max_tokens > lengths.limit:
            raise ValueError(f"preprocess.max_tokens must be at most {lengths.limit}, the longest input the model in "
                             f"{self.path} takes ({lengths.limit_source}); got {preprocess.max_tokens}")


# --- pretrained audio --------------------------------------------------------------------------
SPEECH_RATE = 16_000
SPEECH_MIN_SAMPLES = (76 + 3) * 160  # one 76-frame embedding window of the 10 ms mel front end


class SpeechEmbeddingConfig(EncoderConfig):
    """Google's speech_embedding (a frozen ONNX model run with onnxruntime): 16 kHz waveform ->
    32-bin mel frames (its own ONNX front end) -> one 96-d embedding per 76-frame (775 ms) window,
    a window every ``window_step`` frames (10 ms each). Tokens are the windows; pooled is their
    mean. ``path`` is the folder holding ``melspectrogram.onnx`` and ``embedding_model.onnx``
    (``pkg:speech-embedding``). The modality's preprocessing follows it: 16 kHz raw waveform.
    """

    kinds: ClassVar[tuple[str, ...]] = ("audio",)
    name: Literal["speech_embedding"] = "speech_embedding"
    path: LocalPath
    window_step: PositiveInt = 8
    freeze: Literal["all"] = "all"

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        return {"sample_rate": SPEECH_RATE, "features": "waveform", "normalize": "none"}

    def check_preprocess(self, preprocess: Any) -> None:
        wanted = self.preprocess_defaults(preprocess)
        wrong = {k: getattr(preprocess, k) for k, v in wanted.items() if getattr(preprocess, k) != v}
        if wrong:
            raise ValueError(f"encoder 'speech_embedding' takes the raw 16 kHz waveform (preprocess {wanted}); "
                             f"got {wrong}")
        if preprocess.max_seconds * SPEECH_RATE < SPEECH_MIN_SAMPLES:
            raise ValueError(f"encoder 'speech_embedding' needs clips of at least {SPEECH_MIN_SAMPLES / SPEECH_RATE} s "
                             f"(one 775 ms window); preprocess.max_seconds is {preprocess.max_seconds}")


# --- tabular -----------------------------------------------------------------------------------
class TabularMlpConfig(EncoderConfig):
    """MLP over standardised numbers and embedded categories."""

    kinds: ClassVar[tuple[str, ...]] = ("tabular",)
    name: Literal["mlp"] = "mlp"
    dim: PositiveInt = 64
    hidden: list[PositiveInt] = Field(default=[64])
    category_dim: PositiveInt = 8
    dropout: Dropout = 0.1


ImageEncoder = Annotated[ImageCnnConfig | ResNetConfig | TimmConfig, Field(discriminator="name")]
TextEncoder = Annotated[
    EmbeddingBagConfig | TextRnnConfig | TextCnnConfig | TextTransformerConfig | HfConfig,
    Field(discriminator="name"),
]
AudioEncoder = Annotated[MelCnnConfig | SequenceRnnConfig | SequenceTransformerConfig | SpeechEmbeddingConfig,
                        Field(discriminator="name")]
SignalEncoder = Annotated[Cnn1dConfig | SequenceRnnConfig | SequenceTransformerConfig, Field(discriminator="name")]
TabularEncoder = TabularMlpConfig
