"""Offline speech synthesis with eSpeak NG (the library shipped in the PyPI package
``espeakng-loader``), driven through ctypes. Used to build the embedded ``av-digits`` dataset."""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from polymodal.errors import MissingDependencyError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The eSpeak NG engine (one per process; eSpeak keeps global state, so calls are locked)."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise MissingDependencyError("espeakng-loader", "Speech synthesis for av-digits") from err
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.sample_rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                           espeakng_loader.get_data_path().encode(), 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise (code {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.c_void_p) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synth(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """``text`` spoken by ``voice`` (e.g. ``en-us+f2``) -> float32 waveform at ``sample_rate``.

        Args:
            rate: words per minute (80-450).
            pitch: base pitch 0-100.
            pitch_range: intonation range 0-100.
        """
        with self._lock:
            code = self._lib.espeak_SetVoiceByName(voice.encode())
            if code != 0:
                raise ValueError(f"eSpeak NG has no voice '{voice}' (error {code})")
            for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
                self._lib.espeak_SetParameter(parameter, int(value), 0)
            self._chunks = []
            data = text.encode("utf-8")
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0
