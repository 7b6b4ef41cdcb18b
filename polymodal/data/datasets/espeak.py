"""Offline speech synthesis with eSpeak NG (the library shipped in the PyPI package
``espeakng-loader``), driven through ctypes. Used to build the embedded ``av-digits`` dataset.

eSpeak NG keeps hidden state between utterances (and seeds its noise generators from the clock),
so the same call gives different audio at different points of a process. :func:`synthesize`
makes a batch reproducible: it seeds the generator before every utterance and runs fixed
chunks of jobs each in a fresh process, so the output depends only on the jobs, never on what
ran before or on how many workers there are.
"""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path

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

    def synth(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50, pitch_range: int = 50,
              seed: int = 0) -> np.ndarray:
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
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            self._chunks = []
            data = text.encode("utf-8")
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


# (text, voice, rate, pitch, pitch_range, seed)
Job = tuple[str, str, int, int, int, int]
CHUNK = 500


# a worker process (imports this module only, not its package's converters)
WORKER = "import sys, pathlib, polymodal.data.datasets.espeak as e; e._work(pathlib.Path(sys.argv[1]))"


def _synth_chunk(jobs: list[Job], out: Path) -> None:
    """Worker side: speak ``jobs`` and save the waveforms to ``out`` (an .npz)."""
    engine = Espeak.get()
    waves = {f"w{i}": engine.synth(*job) for i, job in enumerate(jobs)}
    np.savez(out, rate=np.asarray(engine.sample_rate), **waves)


def synthesize(jobs: list[Job], workers: int = 2, progress: bool = False) -> tuple[int, list[np.ndarray]]:
    """Speak every job reproducibly (see the module docstring); returns (sample rate, waveforms).

    Each chunk of jobs runs in a fresh ``python -m polymodal.data.datasets.espeak`` process (plain
    subprocesses rather than multiprocessing, which would re-import the caller's main script);
    ``progress`` shows a bar advanced as chunks finish.
    """
    import subprocess
    import sys
    import tempfile

    from polymodal.utils.progress import progress_bar

    chunks = [jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    waves: list[np.ndarray] = []
    rate = 0
    with tempfile.TemporaryDirectory(prefix="polymodal-speech-") as tmp, \
            progress_bar(len(jobs), "synthesising spoken digits (eSpeak NG)", enabled=progress, min_total=1) as advance:
        paths = [Path(tmp) / f"chunk{i}" for i in range(len(chunks))]
        for path, chunk in zip(paths, chunks):
            path.with_suffix(".json").write_text(json.dumps(chunk), encoding="utf-8")
        pending = list(zip(paths, chunks))
        running: list[tuple[subprocess.Popen, int]] = []
        while pending or running:
            while pending and len(running) < max(1, workers):
                path, chunk = pending.pop(0)
                running.append((subprocess.Popen([sys.executable, "-c", WORKER, str(path)], stderr=subprocess.PIPE),
                                len(chunk)))
            proc, size = running.pop(0)
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"speech synthesis worker failed: {err.decode(errors='replace')[-2000:]}")
            advance(size)
        for path, chunk in zip(paths, chunks):
            with np.load(path.with_suffix(".npz")) as data:
                rate = int(data["rate"])
                waves += [data[f"w{i}"] for i in range(len(chunk))]
    return rate, waves


def _work(target: Path) -> None:
    """A worker of :func:`synthesize`: the chunk ``target.json`` into ``target.npz``."""
    _synth_chunk([tuple(job) for job in json.loads(target.with_suffix(".json").read_text(encoding="utf-8"))],
                 target.with_suffix(".npz"))
