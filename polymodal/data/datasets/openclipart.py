"""``openclipart``: public-domain drawings (SVG) with their titles, descriptions and keywords,
rendered to PNG: image-text pairs for cross-modal retrieval.

Source: the Debian package ``openclipart-svg`` (``apt-get install openclipart-svg``), whose
``/usr/share/openclipart/svg/<category>/.../*.svg`` files carry Dublin Core metadata. Rendering
needs ``cairosvg`` (``pip install cairosvg``).

Each distinct drawing (by file content; the package lists some under several categories) becomes
one row: ``image`` (a PNG, the drawing scaled to fit ``size`` x ``size`` on white), ``text``
(``title. description. keywords``, with the metadata's junk tokens such as ``HASH(0x..)``
dropped), ``category`` (the top-level folder) and ``source`` (the SVG). Drawings without any text
or that fail to render are left out. ``test`` holds ``test_size`` drawings, ``valid`` ``valid_size``,
``train`` the rest (seeded). Rendering is skipped for PNGs that already exist.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import register_dataset, require, write_splits
from polymodal.errors import DatasetOptionError, DatasetSourceError, MissingDependencyError

_JUNK = re.compile(r"^(hash\(0x[0-9a-f]+\)|untitled|none|unknown)$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# what cairosvg / Pillow raise on drawings they cannot handle (bad units, broken references, deep nesting...)
RENDER_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, ZeroDivisionError, OSError,
                 RecursionError, ET.ParseError)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _clean(value: str | None) -> str:
    text = _SPACE.sub(" ", value or "").strip()
    return "" if _JUNK.match(text) else text


def svg_text(path: Path) -> str:
    """``title. description. keywords`` from an SVG's Dublin Core metadata ('' when there is none)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return ""
    work = next((el for el in root.iter() if _local(el.tag) == "Work"), None)
    if work is None:
        return ""
    title = description = ""
    keywords: list[str] = []
    for child in work:
        name = _local(child.tag)
        if name == "title":
            title = _clean(child.text)
        elif name == "description":
            description = _clean(child.text)
        elif name == "subject":
            keywords += [k for k in (_clean(li.text) for li in child.iter() if _local(li.tag) == "li") if k]
    keywords = list(dict.fromkeys(k for k in keywords if k.lower() != title.lower()))
    parts = [p for p in (title, description if description.lower() != title.lower() else "") if p]
    if keywords:
        parts.append(", ".join(keywords))
    return ". ".join(parts)


def render(svg: Path, png: Path, size: int) -> bool:
    """Render ``svg`` scaled to fit ``size`` x ``size``, centred on white; False when it cannot be."""
    import cairosvg
    from PIL import Image

    if png.is_file():
        return True
    try:
        data = cairosvg.svg2png(url=str(svg), output_width=size)
        image = Image.open(io.BytesIO(data)).convert("RGBA")
    except RENDER_ERRORS:  # a malformed drawing is skipped; the caller counts them
        return False
    image.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2), image)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    canvas.save(tmp)
    tmp.replace(png)
    return True


def _render_job(job: tuple[str, str, int]) -> bool:
    return render(Path(job[0]), Path(job[1]), job[2])


def read_drawings(svg_root: Path) -> pd.DataFrame:
    """One row per distinct drawing: ``source``, ``category``, ``text``, ``key`` (content hash)."""
    rows, seen = [], set()
    for path in sorted(p for p in svg_root.rglob("*.svg") if p.is_file()):
        key = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
        if key in seen:
            continue
        seen.add(key)
        text = svg_text(path)
        if text:
            rows.append({"source": str(path), "category": path.relative_to(svg_root).parts[0], "text": text, "key": key})
    return pd.DataFrame(rows)


@register_dataset("openclipart", "Openclipart drawings (Debian openclipart-svg) rendered to PNG (needs "
                  "pip install 'polymodal[openclipart]': cairosvg) + title/description/keywords text",
                  source="svg/<category>/**/*.svg (e.g. /usr/share/openclipart)", folders=("images",))
def prepare_openclipart(out: Path, source: Path, seed: int = 0, size: int = 224, test_size: int = 1000,
                        valid_size: int = 500, workers: int | None = None, max_rows: int | None = None,
                        **_: Any) -> dict[str, Any]:
    """``max_rows``: render a seeded sample of at most this many drawings (a quick try: the whole
    package is about 7,500), test and validation then taking at most a fifth and a tenth of them."""
    for option, count in (("test_size", test_size), ("valid_size", valid_size)):
        if count < 1:
            raise DatasetOptionError(f"dataset 'openclipart': {option} must be at least 1 (an empty split is useless); "
                                     f"got {count}", dataset="openclipart", option=option)
    out, svg_root = Path(out), require(Path(source) / "svg", "the openclipart svg folder", "openclipart",
                                        Path(source))
    try:
        import cairosvg  # noqa: F401
    except ImportError:
        raise MissingDependencyError("cairosvg", "rendering the openclipart drawings") from None
    drawings = read_drawings(svg_root)
    if max_rows is not None and max_rows < len(drawings):
        kept = np.sort(np.random.default_rng(seed).permutation(len(drawings))[:max_rows])
        drawings = drawings.iloc[kept].reset_index(drop=True)
        test_size, valid_size = min(test_size, max_rows // 5), min(valid_size, max_rows // 10)
    if len(drawings) <= test_size + valid_size:
        raise DatasetSourceError(f"dataset 'openclipart': {len(drawings)} drawings with text in {svg_root}; need more "
                                 f"than test_size + valid_size = {test_size + valid_size}")
    drawings["image"] = [f"images/{k}.png" for k in drawings["key"]]
    jobs = [(s, str(out / i), size) for s, i in zip(drawings["source"], drawings["image"])]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        ok = np.fromiter(pool.map(_render_job, jobs, chunksize=32), bool, len(jobs))
    drawings = drawings[ok].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(drawings))
    parts = {"test": order[:test_size], "valid": order[test_size:test_size + valid_size],
             "train": order[test_size + valid_size:]}
    columns = ["image", "text", "category", "source"]
    frames = {name: drawings.iloc[np.sort(rows)][columns].reset_index(drop=True) for name, rows in parts.items()}
    return write_splits(out, frames, {"name": "openclipart", "seed": seed, "size": size, "target": None,
                                      "not_rendered": int((~ok).sum())})
