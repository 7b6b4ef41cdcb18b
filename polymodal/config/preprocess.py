"""What each kind's preprocessing accepts: the ``preprocess`` section of a modality (image, text,
audio, signal, tabular, video), with the bounds past which a value is surely a typo."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator, model_validator

from polymodal.config.base import StrictModel
from polymodal.config.finetune import LocalPath, transformers_folder_problem
from polymodal.config.mel import check_audio_frames
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.text import clean
from polymodal.utils.warn import warn_user

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

# Upper bounds where a larger value is surely a typo and would exhaust memory before any error:
MAX_IMAGE_SIDE = 4096  # pixels per side of a resized image or video frame (4K); 3 x 4096^2 floats = 200 MB
MAX_TEXT_TOKENS = 131_072  # tokens per text: the longest contexts (128k) that transformers models take
MAX_VOCAB = 10_000_000  # vocabulary entries (an embedding row each)
MAX_AUDIO_SECONDS = 3600.0  # one hour per clip: 57.6M samples at 16 kHz, 230 MB per clip
MAX_SAMPLE_RATE = 384_000  # Hz: the highest rate audio hardware records
MAX_SIGNAL_LENGTH = 16_777_216  # samples per signal window (2^24)
ImageSide = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]
StopWordList = Annotated[list[str], Field(min_length=1)]  # the user's own stop words (TextPreprocess.stopwords)
StopWordListName = Literal["english", "english_all"]  # the named lists TextPreprocess.stopwords takes
STOP_WORD_LISTS: tuple[str, ...] = get_args(StopWordListName)


# --- preprocessing -----------------------------------------------------------------------------
class ImageAugment(StrictModel):
    """Training-only augmentation (torchvision transforms v2), applied after the cache."""

    hflip: bool = False
    rotate: Annotated[float, Field(ge=0, le=180)] = 0.0
    translate: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    scale: tuple[PositiveFloat, PositiveFloat] = (1.0, 1.0)
    brightness: Annotated[float, Field(ge=0, le=1)] = 0.0
    contrast: Annotated[float, Field(ge=0, le=1)] = 0.0


class ImagePreprocess(StrictModel):
    """Decode, convert colour, resize and normalise images.

    Attributes:
        size: output side (square) or ``[height, width]``; at most 4096 pixels a side.
        color: ``rgb`` (3 channels), ``gray`` (1) or ``hsv`` (3).
        resize: ``pad`` keeps the aspect ratio and pads, ``crop`` keeps it and centre-crops,
            ``stretch`` ignores it.
        normalize: ``unit`` scales to [0, 1]; ``standard`` subtracts a per-channel mean and divides
            by a std, both fitted on the training images unless ``mean``/``std`` are given
            (e.g. ImageNet's).
        max_pixels: images with more pixels are refused (decompression-bomb guard).
        background: what shows through transparent pixels (alpha, a GIF's transparent colour):
            the image is composited onto ``white`` or ``black`` before colour conversion; ``null``
            drops the transparency as Pillow does (the colours stored under it show; runs saved
            before this setting read that way).
        value_range: ``[low, high]``, the pixel values that read as black and white in images
            stored wider than 8 bits (16-bit PNG/TIFF, 32-bit and float TIFF, ``.npy`` arrays of
            any type but uint8 and bool), mapped linearly onto 0-255 and clipped beyond: e.g.
            ``[0, 4095]`` for 12-bit X-rays, ``[-1000, 400]`` for a CT window, ``[0, 1]`` for float
            images. Every image keeps its absolute brightness (an exposure, a temperature).
            ``null``: each such image is scaled by its own maximum (integers past 255) or taken
            as [0, 1] (floats up to 1), which keeps its contrast but not its level. 8-bit images
            are read as they are either way.
    """

    size: ImageSide | tuple[ImageSide, ImageSide] = 224
    color: Literal["rgb", "gray", "hsv"] = "rgb"
    resize: Literal["pad", "crop", "stretch"] = "pad"
    normalize: Literal["unit", "standard"] = "unit"
    mean: list[float] | None = None
    std: list[PositiveFloat] | None = None
    augment: ImageAugment | None = None
    max_pixels: PositiveInt = 50_000_000
    background: Literal["white", "black"] | None = "white"
    value_range: tuple[float, float] | None = None

    @field_validator("value_range")
    @classmethod
    def _low_below_high(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"expected [low, high] with low < high; got {list(value)}")
        return value

    @model_validator(mode="after")
    def _mean_std_match_channels(self) -> ImagePreprocess:
        channels = 1 if self.color == "gray" else 3
        if (self.mean is None) != (self.std is None):
            given, absent = ("mean", "std") if self.std is None else ("std", "mean")
            raise ValueError(f"{given} is given without {absent}: give both (e.g. ImageNet's) or neither "
                             "(both fitted on the training images)")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != channels:
                raise ValueError(
                    f"{key} must have {channels} value(s) for color '{self.color}'; got {len(value)}"
                )
        return self


class TextPreprocess(StrictModel):
    """Clean and tokenise text.

    Attributes:
        lowercase: lower-case the text.
        strip_punctuation: punctuation and symbols (by Unicode category: emoji too) become spaces.
        join_apostrophes: with ``strip_punctuation``, an apostrophe inside a word (``'``, U+2019
            ``’``, U+02BC ``ʼ``) is deleted, not spaced: ``can't`` is ``cant`` and ``couldn’t``
            ``couldnt``, so that negations survive stop-word removal (the ``english`` list keeps
            ``cant``; ``can t`` would lose its ``t``); quotes around a word still go. False: the
            apostrophe splits the word (``can t``), as runs saved before this setting do.
        keep_number_punctuation: with ``strip_punctuation``, a ``.``, ``,``, ``:`` or ``/`` between
            two digits stays, so that ``3.5``, ``1,000``, ``12:30`` and ``120/80`` are one word
            each, not two (``3 5``); the same marks elsewhere (``end.``, ``.5``) and every other
            mark (``5-10``) still go. The ``wordpiece`` / ``bpe`` tokenizers split the word
            again at the mark (``3``, ``.``, ``5``: the mark is a token of its own there).
            Runs saved before this setting split numbers (false).
        stopwords: words removed after cleaning. ``false``: none. ``true`` or ``english``:
            scikit-learn's English list without its negations (``no``, ``not``, ``nor``,
            ``never``, ``none``, ``noone``, ``nobody``, ``nothing``, ``nowhere``, ``neither``,
            ``cannot``, ``cant``, ``couldnt``, ``hasnt``, ``without``: "no pneumonia" is not
            "pneumonia"). ``english_all``: the whole list, negations included (what ``true``
            meant for runs saved before ``english``, which keep it). A list of words: those,
            each cleaned as the text is (lower-cased with ``lowercase``) and matched as the
            cleaned word is written (with ``lowercase`` off, ``US`` is not ``us``; the English
            lists match any case); each entry must clean to one word.
        tokenizer: ``word`` (vocabulary from the training data), ``wordpiece`` / ``bpe`` (trained
            on the training corpus with the tokenizers library), ``pretrained`` (a local tokenizer
            folder, ``tokenizer_path``; defaults to the ``hf`` encoder's folder).
        vocab_size: cap on the vocabulary (special tokens included); at most 10,000,000.
        min_freq: words seen fewer times in training become the unknown token.
        max_tokens: longer texts are truncated; batches are padded to their longest text; at most
            131,072.
        unknown_rate: training only, with a vocabulary learnt from the training texts (``word``,
            ``wordpiece``, ``bpe``): each token is read as the unknown token with this probability,
            so that the unknown token's embedding learns what an unseen word means (with every
            training word in the vocabulary it would otherwise never train, and the words a test
            text brings that training never saw would move predictions at random); 0: never.
    """

    lowercase: bool = True
    strip_punctuation: bool = True
    join_apostrophes: bool = True
    keep_number_punctuation: bool = True
    stopwords: bool | StopWordListName | StopWordList = False
    tokenizer: Literal["word", "wordpiece", "bpe", "pretrained"] = "word"
    tokenizer_path: LocalPath | None = None
    vocab_size: Annotated[int, Field(ge=8, le=MAX_VOCAB)] = 20_000
    min_freq: PositiveInt = 1
    max_tokens: Annotated[int, Field(gt=0, le=MAX_TEXT_TOKENS)] = 64
    unknown_rate: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.1

    @field_validator("stopwords", mode="before")
    @classmethod
    def _stop_words_given(cls, value: Any) -> Any:
        """One message for a value of no accepted form (pydantic would list each form's complaint)."""
        if isinstance(value, bool) or value in STOP_WORD_LISTS:
            return value
        allowed = f"false, true, {', '.join(repr(name) for name in STOP_WORD_LISTS)} or a list of words"
        if not isinstance(value, list):
            hint = did_you_mean(value, STOP_WORD_LISTS) if isinstance(value, str) else ""
            raise ValueError(f"must be {allowed}{hint}")  # the message ends with what was given
        if not value:
            raise ValueError(f"must be {allowed}, not an empty list (to remove no word: false)")
        for index, word in enumerate(value):
            if not isinstance(word, str):
                raise ValueError(f"item {index} must be a word (a string), not {type(word).__name__} {word!r}")
        return value

    @field_validator("stopwords")
    @classmethod
    def _english_by_default(cls, value: bool | str | list[str], info: ValidationInfo) -> bool | str | list[str]:
        """``true`` is ``english`` (negations kept); in a run saved before ``english`` existed,
        ``true`` removed the whole list, and keeps doing so (``english_all``)."""
        if value is True:
            return "english_all" if (info.context or {}).get("saved_run") else "english"
        return value

    @model_validator(mode="after")
    def _stop_words_are_words(self) -> TextPreprocess:
        if not isinstance(self.stopwords, list):
            return self
        for index, word in enumerate(self.stopwords):
            cleaned = clean(word, lowercase=self.lowercase, strip_punctuation=self.strip_punctuation,
                            join_apostrophes=self.join_apostrophes,
                            keep_number_punctuation=self.keep_number_punctuation).split()
            if len(cleaned) != 1:
                got = "nothing" if not cleaned else f"{len(cleaned)} words ({' '.join(cleaned)!r})"
                raise ValueError(f"stopwords item {index} must clean to one word, as the text is cleaned (a stop "
                                 f"word is matched against the cleaned text's words); {word!r} cleans to {got}")
        return self

    @model_validator(mode="after")
    def _pretrained_needs_path(self) -> TextPreprocess:
        if self.tokenizer != "pretrained" and self.tokenizer_path is not None:
            raise ValueError(f"tokenizer_path is only used with tokenizer 'pretrained'; got '{self.tokenizer}'")
        problem = None if self.tokenizer_path is None else transformers_folder_problem(self.tokenizer_path, model=False)
        if problem is not None:
            raise ValueError(f"tokenizer_path: {problem}")
        return self


class AudioAugment(StrictModel):
    """Training-only SpecAugment-style augmentation on the (normalised) features, per sample:
    up to ``time_masks`` masks of at most ``time_width`` frames and ``freq_masks`` masks of at
    most ``freq_width`` bins are zeroed; ``shift`` rolls each clip by up to that many frames.

    On ``features: waveform`` a frame is ``hop_ms`` of samples, so a time mask or a roll spans the
    same time as on frames; a waveform has no frequency axis, so frequency masks and ``warp`` do
    not apply (the default masks are skipped; other values, or any ``warp``, are refused).

    Attributes:
        warp: stretch the frequency axis by a factor drawn from ``[1 - warp, 1 + warp]``,
            anchored at the lowest bin: vocal-tract-length perturbation (Jaitly & Hinton, 2013),
            which makes a few training voices stand for many; 0.1 is usual.
        stretch: stretch the time axis likewise, anchored at the first frame (speaking rate); on a
            waveform this resamples it (linear interpolation), changing speed and pitch together
            (speed perturbation).
    """

    time_masks: Annotated[int, Field(ge=0, le=10)] = 2
    time_width: Annotated[int, Field(ge=1)] = 10
    freq_masks: Annotated[int, Field(ge=0, le=10)] = 2
    freq_width: Annotated[int, Field(ge=1)] = 6
    shift: Annotated[int, Field(ge=0)] = 0
    warp: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    stretch: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class AudioPreprocess(StrictModel):
    """Decode, resample, trim/pad and featurise audio.

    Attributes:
        features: ``waveform`` (raw samples), ``spectrogram`` (log power), ``log_mel`` or ``mfcc``.
        frame_ms / hop_ms: analysis window and step in milliseconds (10-30 ms frames are usual).
        normalize: ``global`` standardises each feature bin with training statistics,
            ``utterance`` standardises each clip on its own, ``none`` leaves values as they are.
        sample_rate: at most 384,000 Hz.
        max_seconds: clips are cut (``crop``: from the ``start`` or the ``center``) or zero-padded
            to this length; at most 3600 (an hour).
        top_db: clip each clip's dB features (``spectrogram``, ``log_mel``, ``mfcc``'s mel energies)
            at this many dB below its peak, as librosa's ``power_to_db`` and ``feature.mfcc`` do
            by default (80); None: no clipping (silence stays at -100 dB).
        n_mels: mel filters (``log_mel``, ``mfcc``): at most the ``n_fft // 2 + 1`` bins of a frame
            (``n_fft = round(frame_ms * sample_rate / 1000)``), and few enough that every filter
            covers a bin (see :func:`check_audio_frames`).
    """

    sample_rate: Annotated[int, Field(gt=0, le=MAX_SAMPLE_RATE)] = 16_000
    max_seconds: Annotated[float, Field(gt=0.0, le=MAX_AUDIO_SECONDS)] = 1.0
    crop: Literal["start", "center"] = "start"
    features: Literal["waveform", "spectrogram", "log_mel", "mfcc"] = "log_mel"
    frame_ms: Annotated[float, Field(ge=1.0, le=200.0)] = 25.0
    hop_ms: Annotated[float, Field(ge=1.0, le=200.0)] = 10.0
    n_mels: PositiveInt = 40
    n_mfcc: PositiveInt = 13
    fmin: Annotated[float, Field(ge=0.0)] = 0.0
    fmax: PositiveFloat | None = None
    top_db: PositiveFloat | None = None
    normalize: Literal["global", "utterance", "none"] = "global"
    augment: AudioAugment | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AudioPreprocess:
        if self.hop_ms > self.frame_ms:
            raise ValueError(f"hop_ms ({self.hop_ms}) must not exceed frame_ms ({self.frame_ms})")
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")
        if self.fmax is not None and self.fmax > self.sample_rate / 2:
            raise ValueError(f"fmax ({self.fmax}) must be at most sample_rate / 2 ({self.sample_rate / 2})")
        if self.top_db is not None and self.features == "waveform":
            raise ValueError("top_db clips dB features (spectrogram, log_mel, mfcc); features is 'waveform'")
        return self

    @model_validator(mode="after")
    def _waveform_has_no_frequency_axis(self, info: ValidationInfo) -> AudioPreprocess:
        """Frequency augmentation chosen for a waveform is refused: it would do nothing. The default
        masks are skipped there without a word (a config written out in full, every default
        spelled, still loads), and so is a saved run trained before this check."""
        if self.features != "waveform" or self.augment is None or (info.context or {}).get("saved_run"):
            return self
        augment, fields = self.augment, AudioAugment.model_fields
        wrong = [f"{key} {getattr(augment, key)}" for key in ("freq_masks", "freq_width")
                 if augment.freq_masks > 0 and getattr(augment, key) != fields[key].default]
        wrong += [f"warp {augment.warp}"] if augment.warp > 0 else []
        if wrong:
            raise ValueError(f"augment: frequency masks and warp need a frequency axis, which features 'waveform' "
                             f"lacks (time masks, shift and stretch apply); set freq_masks: 0 and warp: 0, or use "
                             f"features log_mel, spectrogram or mfcc; got {', '.join(wrong)}")
        return self

    @model_validator(mode="after")
    def _frames_fit(self, info: ValidationInfo) -> AudioPreprocess:
        try:
            check_audio_frames(self)
        except ValueError as err:
            if not (info.context or {}).get("saved_run"):
                raise
            # a run trained before this check (librosa only warned) still loads and predicts as trained
            warn_user(f"this run's audio settings would be refused for a new run: {err}")
        return self


class SignalSpectrogram(StrictModel):
    """Short-time Fourier power per channel (periodic Hann window, centred frames), on a log
    scale; the channels of the output become ``channels x (n_fft // 2 + 1)`` frequency rows.

    Attributes:
        n_fft: samples per frame: the frequency resolution is the sample rate / ``n_fft`` (CWRU's
            12 kHz vibration: 64 gives 188 Hz bins, 256 gives 47 Hz; fault frequencies of a
            bearing need the finer ones). In samples of the signal as read (after resampling).
        hop: samples between frames (``n_fft // 2`` overlaps frames by half).
        scale: how each bin's power ``p`` (in the signal's units, squared) becomes a feature.
            ``db``: ``10 * log10(p + 1e-10)``, decibels (relative to a power of 1) over a fixed
            floor of 1e-10 (:data:`polymodal.utils.signals.SPECTROGRAM_FLOOR`; silence reads
            -100 dB): a log at any amplitude, so a signal ten times weaker reads 20 dB lower
            whatever its units, and a dead or unplugged sensor lies far from a live one.
            ``log1p``: ``log(1 + p)``, a log only where ``p`` is well above 1; below, ``log1p(p)``
            is about ``p``, a linear scale (CWRU's vibration in g, ``n_fft: 128``: median bin power
            about 0.002), on which silence lies next to ordinary vibration once standardised. Default
            ``db``; a run saved before this key existed loads with ``log1p``, as it was trained.
    """

    n_fft: Annotated[int, Field(ge=4)] = 64
    hop: PositiveInt = 32
    scale: Literal["db", "log1p"] = "db"


class SignalAugment(StrictModel):
    """Training-only augmentation of the standardised windows, per sample, after the cache
    (a spectrogram's frequency rows are its channels, its frames its steps).

    Attributes:
        gain: scale each channel by a factor drawn from ``[1 - gain, 1 + gain]`` (sensor
            sensitivity, mounting).
        noise: add Gaussian noise of this standard deviation (in units of the standardised values).
        shift: roll each window by up to this many steps within its valid samples (or frames).
        erase: zero one band of up to this fraction of the window (a dropout of the sensor).
    """

    gain: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    noise: Annotated[float, Field(ge=0.0)] = 0.05
    shift: Annotated[int, Field(ge=0)] = 0
    erase: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class SignalPreprocess(StrictModel):
    """Read a 1-D multichannel recording and make it a fixed-length, standardised window.

    Attributes:
        key: array name inside ``.npz``/``.mat`` files (default: the only array, or ``data``).
        channels: channel indices (or column names for ``.csv``) to keep; all when unset.
        layout: how a 2-D ``.npy`` / ``.npz`` / ``.mat`` array is laid out: ``channels_first``
            (C, T), ``channels_last`` (T, C), or ``auto`` (the longer axis is time: set one of the
            others when a clip can be shorter than its channel count). A CSV's columns and an
            audio file's channels are always channels.
        sample_rate / resample_to: when both are set, signals are resampled.
        length: samples per window after resampling; longer signals are cropped, shorter
            zero-padded (and masked); at most 2^24. Left unset, fitting warns when the first
            training file is not 1,024 samples long.
        crop: which part of a longer signal is kept: its ``start`` or its ``center``.
        spectrogram: turn each window into a log power spectrogram (see :class:`SignalSpectrogram`
            and its ``scale``); unset: the encoder reads the samples themselves.
        normalize: ``global`` standardises each channel (each frequency row of a spectrogram)
            with its mean and standard deviation over the training set; ``sample`` does it per
            window, which removes each window's level and, for a spectrogram, its spectral
            envelope (the shape of the spectrum, often what tells classes apart); ``none``.
        augment: training-only perturbations (see :class:`SignalAugment`); unset: none.
    """

    key: str | None = None
    channels: Annotated[list[int] | list[str], Field(min_length=1)] | None = None
    layout: Literal["auto", "channels_first", "channels_last"] = "auto"
    sample_rate: PositiveFloat | None = None
    resample_to: PositiveFloat | None = None
    length: Annotated[int, Field(gt=0, le=MAX_SIGNAL_LENGTH)] = 1024
    crop: Literal["start", "center"] = "start"
    spectrogram: SignalSpectrogram | None = None
    normalize: Literal["global", "sample", "none"] = "global"
    augment: SignalAugment | None = None

    @model_validator(mode="after")
    def _resample_needs_rate(self) -> SignalPreprocess:
        if self.resample_to is not None and self.sample_rate is None:
            raise ValueError("resample_to needs sample_rate (the rate of the files)")
        return self


class TabularPreprocess(StrictModel):
    """Numbers are imputed, optionally flagged when missing, and scaled; categories are indexed.

    Attributes:
        scale: ``standard`` (mean and standard deviation), ``minmax`` (to [0, 1] on the training
            range), ``robust`` (median and interquartile range: a few outliers barely move it) or
            ``none``; fitted on the training rows after imputation.
        normalize_categories: how a categorical cell is keyed, in training and at prediction
            alike: ``strip`` (surrounding whitespace dropped: ``'current '`` is ``'current'``),
            ``strip_lower`` (also lower-cased: ``'M'`` is ``'m'``) or ``none`` (as written; runs
            saved before this setting read categories so). Categories that still differ only
            in case or whitespace are warned about at fit time.
        unknown_rate: training only: each categorical cell holding a learned category is read as
            the unknown category (index 0, that of an empty cell too) with this probability, so
            that its embedding learns what a category training never saw means (with every
            training category learned, ``min_category_count: 1``, it would otherwise train only on
            empty cells, and an unseen category at prediction would read an untrained vector);
            0: never. Validation, prediction and exports never apply it.
    """

    impute: Literal["mean", "median", "zero"] = "mean"
    missing_indicator: bool = True
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"
    max_categories: Annotated[int, Field(ge=1)] = 1000
    min_category_count: PositiveInt = 1
    normalize_categories: Literal["none", "strip", "strip_lower"] = "strip"  # values.CATEGORY_NORMALIZATIONS
    unknown_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1


class VideoPreprocess(ImagePreprocess):
    """Decode a video (mp4/avi/webm/mkv/mov with PyAV, a folder of frame images, or a ``.npy`` of
    (T, H, W[, C]) frames), sample ``frames`` frames, and treat each like an image (colour, resize,
    normalisation, training-only ``augment``: the image settings). Augmentation draws once per
    clip: every frame of a clip gets the same flip, affine map and colour factors.

    Attributes:
        frames: frames per clip.
        sampling: ``uniform`` spreads them evenly over the whole clip, in time where a container
            stamps its frames (a variable-frame-rate clip), else by index (a short clip repeats frames);
            ``stride`` takes every ``stride``-th frame from the start (a short clip is zero-padded
            and masked).
        max_frames: clips with more frames are refused (a guard against decoding hours of video).
    """

    size: ImageSide | tuple[ImageSide, ImageSide] = 64
    frames: Annotated[int, Field(ge=1, le=1024)] = 8
    sampling: Literal["uniform", "stride"] = "uniform"
    stride: PositiveInt = 1
    max_frames: PositiveInt = 100_000

    @model_validator(mode="after")
    def _checks(self) -> VideoPreprocess:
        if self.stride != 1 and self.sampling != "stride":  # (a saved config writes the default stride 1)
            raise ValueError(f"stride applies with sampling: stride; sampling is '{self.sampling}' "
                             "(set sampling: stride, or drop stride)")
        return self


__all__ = [
    "MAX_AUDIO_SECONDS", "MAX_IMAGE_SIDE", "MAX_SAMPLE_RATE", "MAX_SIGNAL_LENGTH", "MAX_TEXT_TOKENS", "MAX_VOCAB",
    "AudioAugment", "AudioPreprocess", "ImageAugment", "ImagePreprocess", "ImageSide", "Probability",
    "SignalPreprocess", "SignalSpectrogram", "TabularPreprocess", "TextPreprocess", "VideoPreprocess",
]
