"""The ``report`` section: what the automatic diagnostics of every run's ``report.html`` compute."""

from __future__ import annotations

from pydantic import NonNegativeInt

from polymodal.config.base import StrictModel


class ReportConfig(StrictModel):
    """Diagnostics computed after ``fit`` on the test manifest (else the validation rows) and
    shown in ``report.html``: accuracy per modality subset, modality importance (Shapley values),
    robustness curves (one noise corruption per modality), calibration and complexity. The full
    sweeps are ``polymodal evaluate RUN --data X --missing --robustness`` and ``polymodal explain``.

    Attributes:
        rows: rows used (a seeded random sample when there are more); 0 switches the
            diagnostics off. Their cost grows with it: about one extra evaluation of these
            rows per subset (fusion only), plus five re-encodings per modality for robustness (a
            cached frozen encoder, ``encoder.cache``, runs only on those of its own modality and
            for the latency figure; every other analysis reads its stored outputs).
        robustness: include the robustness curves.
        seed: seeds the row sample and the corruptions.
    """

    rows: NonNegativeInt = 512
    robustness: bool = True
    seed: NonNegativeInt = 0
