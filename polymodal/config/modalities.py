"""Per-modality configs: which column(s) to read, how to preprocess them (:mod:`polymodal.config.preprocess`),
how to encode them (:mod:`polymodal.config.encoders`)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from polymodal.config.base import StrictModel
from polymodal.config.encoders import (
    FLATTEN_MAX_SIDE,
    AudioEncoder,
    Cnn1dConfig,
    HfConfig,
    ImageCnnConfig,
    ImageEncoder,
    MelCnnConfig,
    SignalEncoder,
    TabularEncoder,
    TabularMlpConfig,
    TextEncoder,
    TextRnnConfig,
)
from polymodal.config.finetune import follow_encoder_preprocess, transformers_folder_problem
from polymodal.config.preprocess import (
    AudioPreprocess,
    ImagePreprocess,
    SignalPreprocess,
    TabularPreprocess,
    TextPreprocess,
    VideoPreprocess,
)
from polymodal.config.video import FrameCnnConfig, VideoEncoder

# the schema's description of a preprocess section whose defaults a pretrained encoder changes
FOLLOWS_ENCODER = ("fields left unset follow a pretrained encoder (one with weights, a speech embedding): the {what} "
                   "it was trained with replace these defaults")


# --- modalities --------------------------------------------------------------------------------
class ModalityConfig(StrictModel):
    """Fields shared by every modality."""

    file_based: ClassVar[bool] = True
    folder_cells: ClassVar[bool] = False  # a cell may name a folder (video: a folder of frame images)
    column: str


class ImageModality(ModalityConfig):
    kind: Literal["image"]
    preprocess: ImagePreprocess = Field(default_factory=ImagePreprocess,
                                   description=FOLLOWS_ENCODER.format(what="input size and normalisation"))
    encoder: ImageEncoder = Field(default_factory=ImageCnnConfig)

    @model_validator(mode="after")
    def _preprocess_follows_encoder(self) -> ImageModality:
        """A pretrained backbone brings its input size and normalisation unless the user set them;
        the ``cnn`` encoder's ``pool`` left unset follows the image size (:data:`FLATTEN_MAX_SIDE`)."""
        follow_encoder_preprocess(self)
        encoder, size = self.encoder, self.preprocess.size
        side = max(size) if isinstance(size, tuple) else size
        if isinstance(encoder, ImageCnnConfig) and "pool" not in encoder.model_fields_set and side > FLATTEN_MAX_SIDE:
            self.encoder = encoder.model_copy(update={"pool": "avg"})
        return self


class TextModality(ModalityConfig):
    file_based: ClassVar[bool] = False
    kind: Literal["text"]
    preprocess: TextPreprocess = Field(default_factory=TextPreprocess, description=(
        "with encoder 'hf', tokenizer, lowercase, strip_punctuation and max_tokens left unset follow the "
        "model's folder: its own tokenizer (tokenizer: pretrained), the text as written, its maximum input length"))
    encoder: TextEncoder = Field(default_factory=TextRnnConfig)

    @model_validator(mode="after")
    def _tokenizer_follows_hf_encoder(self) -> TextModality:
        """A pretrained text encoder brings its own tokenizer and maximum input length unless the user
        chose them."""
        prep = self.preprocess
        if isinstance(self.encoder, HfConfig):
            if "tokenizer" not in prep.model_fields_set:
                update: dict[str, object] = {"tokenizer": "pretrained", "tokenizer_path": self.encoder.path}
                # the model's tokenizer normalises text its own way; keep the text as written
                update.update({k: False for k in ("lowercase", "strip_punctuation") if k not in prep.model_fields_set})
                problem = transformers_folder_problem(self.encoder.path, model=False)
                if problem is not None:  # the tokenizer is read from the model's folder
                    raise ValueError(f"encoder.path: {problem} (or name another folder as preprocess.tokenizer_path)")
                self.preprocess = prep.model_copy(update=update)
            elif prep.tokenizer != "pretrained":
                raise ValueError(
                    f"encoder 'hf' needs the model's own tokenizer (preprocess.tokenizer: pretrained); "
                    f"got tokenizer '{prep.tokenizer}'"
                )
            follow_encoder_preprocess(self)  # max_tokens: the folder's own limit
        if self.preprocess.tokenizer == "pretrained" and self.preprocess.tokenizer_path is None:
            raise ValueError("preprocess.tokenizer 'pretrained' needs preprocess.tokenizer_path (a local folder)")
        return self


class AudioModality(ModalityConfig):
    kind: Literal["audio"]
    preprocess: AudioPreprocess = Field(default_factory=AudioPreprocess,
                                   description=FOLLOWS_ENCODER.format(what="sample rate, features and normalisation"))
    encoder: AudioEncoder = Field(default_factory=MelCnnConfig)

    @model_validator(mode="after")
    def _preprocess_follows_encoder(self) -> AudioModality:
        """A pretrained audio encoder brings its sample rate and features unless the user set them."""
        follow_encoder_preprocess(self)
        return self

    @model_validator(mode="after")
    def _encoder_fits_features(self) -> AudioModality:
        if isinstance(self.encoder, MelCnnConfig) and self.preprocess.features == "waveform":
            raise ValueError("encoder 'mel_cnn' needs spectral features; preprocess.features is 'waveform'")
        return self


class SignalModality(ModalityConfig):
    kind: Literal["signal"]
    preprocess: SignalPreprocess = Field(default_factory=SignalPreprocess)
    encoder: SignalEncoder = Field(default_factory=Cnn1dConfig)


class VideoModality(ModalityConfig):
    folder_cells: ClassVar[bool] = True
    kind: Literal["video"]
    preprocess: VideoPreprocess = Field(default_factory=VideoPreprocess,
                                   description=FOLLOWS_ENCODER.format(what="frame size and normalisation"))
    encoder: VideoEncoder = Field(default_factory=FrameCnnConfig)

    @model_validator(mode="after")
    def _preprocess_follows_encoder(self) -> VideoModality:
        """A pretrained frame encoder brings its input size and normalisation unless the user set them."""
        follow_encoder_preprocess(self)
        return self


class TabularModality(StrictModel):
    """Several inline columns read as one modality.

    Attributes:
        columns: numeric columns.
        categorical: categorical columns.
    """

    file_based: ClassVar[bool] = False
    kind: Literal["tabular"]
    columns: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    preprocess: TabularPreprocess = Field(default_factory=TabularPreprocess)
    encoder: TabularEncoder = Field(default_factory=TabularMlpConfig)

    @model_validator(mode="after")
    def _has_columns(self) -> TabularModality:
        if not self.columns and not self.categorical:
            raise ValueError("a tabular modality needs at least one entry in columns or categorical")
        overlap = sorted(set(self.columns) & set(self.categorical))
        if overlap:
            raise ValueError(f"columns and categorical must not share names; both list {overlap}")
        return self

    @property
    def all_columns(self) -> list[str]:
        return [*self.columns, *self.categorical]


AnyModality = Annotated[
    ImageModality | TextModality | AudioModality | SignalModality | TabularModality | VideoModality,
    Field(discriminator="kind"),
]


def modality_columns(modality: object) -> list[str]:
    """The manifest columns a modality reads."""
    if isinstance(modality, TabularModality):
        return modality.all_columns
    return [modality.column]  # type: ignore[attr-defined]


def text_columns(modality: object) -> list[str]:
    """The manifest columns a modality reads as text, never as numbers: all but a table's
    numeric columns (file paths, texts, categories)."""
    if isinstance(modality, TabularModality):
        return list(modality.categorical)
    return modality_columns(modality)


__all__ = [
    "AnyModality", "AudioModality", "ImageModality", "ModalityConfig", "SignalModality", "TabularModality",
    "TextModality", "VideoModality", "modality_columns", "text_columns",
]
