"""What a single value means, shared by training-time reading and the torch-free deploy runtime
(standard library only)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

# how a tabular modality keys its categories (``preprocess.normalize_categories``): as written,
# without surrounding whitespace, or that and lower-cased
CATEGORY_NORMALIZATIONS = ("none", "strip", "strip_lower")


def normalize_category(text: str, how: str) -> str:
    """A category's text as ``preprocess.normalize_categories`` ``how`` keys it: ``none`` as it
    is, ``strip`` without surrounding whitespace, ``strip_lower`` also lower-cased (``' Current'``
    -> ``'current'``)."""
    if how == "none":
        return text
    if how == "strip":
        return text.strip()
    if how == "strip_lower":
        return text.strip().lower()
    raise ValueError(f"normalize_categories must be one of {list(CATEGORY_NORMALIZATIONS)}; got {how!r}")


def spelling_variants(counts: Mapping[str, int]) -> list[list[tuple[str, int]]]:
    """The groups of categories (with their row counts, commonest first) that differ only in case
    and/or surrounding whitespace; the groups with most rows first."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for key, count in counts.items():
        groups.setdefault(key.strip().lower(), []).append((key, count))
    found = [sorted(group, key=lambda kv: (-kv[1], kv[0])) for group in groups.values() if len(group) > 1]
    return sorted(found, key=lambda group: (-sum(c for _, c in group), group[0][0]))


def shown_apart(texts: Iterable[str]) -> dict[str, str]:
    """How to show each of ``texts`` in a table so that none reads as another: a text with
    surrounding whitespace, and every text that differs from it only by that whitespace, quoted
    as ``repr`` writes it (a table trims a cell: ``'F '`` and ``'F'`` would both read ``F``);
    the others as they are."""
    texts = list(texts)
    padded = {text.strip() for text in texts if text != text.strip()}
    return {text: repr(text) if text.strip() in padded else text for text in texts}


def blank(value: object) -> bool:
    """True for the values that mean 'missing': None, NaN and blank strings (pandas' NA is one
    more, for manifests: :func:`polymodal.data.cells.is_empty`)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


# the text cells read as a missing number: pandas' default ``na_values``, matched exactly
NA_VALUES = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


# a number written with a decimal comma (12,50; -3,5; 1.234,5 with points between thousands)
DECIMAL_COMMA = re.compile(r"[+-]?(\d+|\d{1,3}(\.\d{3})+),\d+")
THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+")  # 1,234 or 1,234,567: thousands separated by commas


def decimal_comma(value: object) -> str | None:
    """Advice for a cell that is no number but text that reads as one written with a decimal comma,
    as spreadsheets of many locales write them: ``a decimal comma? write 12.50`` for ``'12,50'``
    (``1.234,5``: ``1234.5``; ``1,234``, which may be a thousands separator: both readings;
    ``1,234,567``: thousands separators alone); None for any other value."""
    text = value.strip() if isinstance(value, str) else ""
    if not DECIMAL_COMMA.fullmatch(text):
        return f"thousands separators? write {text.replace(',', '')}" if THOUSANDS.fullmatch(text) else None
    dotted = text.replace(".", "").replace(",", ".")
    if THOUSANDS.fullmatch(text):
        return f"a decimal comma or a thousands separator? write {dotted} or {text.replace(',', '')}"
    return f"a decimal comma? write {dotted}"


def number(value: object) -> float:
    """A tabular cell as a finite number, NaN for a missing one (:func:`blank`, or text pandas reads
    as missing: ``NA``, ``null``, ``n/a``...); booleans count 1 and 0.

    Raises:
        ValueError: what is wrong, worded to follow "column 'x' ": ``must be numeric; got 'abc'``,
            ``holds an infinite value`` or ``holds a number out of range``; a number written with a
            decimal comma is told so (``got '12,50' (a decimal comma? write 12.50)``).
    """
    if blank(value) or (isinstance(value, str) and value.strip() in NA_VALUES):
        return math.nan
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        hint = decimal_comma(value)  # a spreadsheet's locale: the likeliest cause, said
        raise ValueError(f"must be numeric; got {str(value)[:40]!r}" + (f" ({hint})" if hint else "")) from None
    except OverflowError:  # an integer too large for a float
        raise ValueError("holds a number out of range") from None
    if math.isinf(result):
        raise ValueError("holds an infinite value")
    return result
