"""Text cleaning, word ids and padded id arrays shared by training-time preprocessing and the
torch-free deployment runtime (standard library and numpy), so both read a text alike: each builds
its cleaning from the modality's preprocess settings with :func:`cleaner`, its word ids with
:func:`word_ids` and its arrays with :func:`padded_ids`, so an option added there reaches both.

Punctuation and symbols are found by Unicode category (``P*``, ``S*``): the vowel signs and
viramas of Devanagari, Thai or Tamil are combining marks (``M*``) and stay inside their words,
where a ``[^\\w\\s]`` pattern would cut ``नमस्ते`` into fragments. The invisible characters that
emoji sequences leave behind go with them: format characters (``Cf``: the zero-width joiner
U+200D that glues a family emoji, the soft hyphen, tag characters), the variation selectors
(U+FE0F after a heart) and the keycap mark U+20E3. Those are deleted rather than spaced, as
BERT's basic tokenizer deletes them, so a word written with a zero-width (non-)joiner inside it
(Devanagari, Persian) stays one word. CJK ideographs are set apart as words of their own (as
BERT's basic tokenizer does), since those scripts write no spaces.

A ``.``, ``,``, ``:`` or ``/`` between two digits (Unicode ``Nd``) is kept when the settings say
``keep_number_punctuation``, so that ``3.5``, ``1,000``, ``12:30`` and ``120/80`` each stay one
word; every other punctuation mark, and these ones elsewhere (``end.``, ``.5``, ``5-10``), is
stripped as before.

With ``join_apostrophes``, an apostrophe inside a word (the ASCII ``'``, the typographic ``’``
U+2019 or the modifier letter ``ʼ`` U+02BC, between two letters, marks or digits) is deleted rather
than spaced, so that ``can't`` is ``cant`` (the form the English stop-word list keeps among its
negations) and ``patient's`` is ``patients``, not ``can t`` and ``patient s``; a quote before or
after a word (``'word'``) is punctuation as before. Without it (settings saved before it) the
apostrophe is spaced as every other mark.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

import numpy as np

# a decimal point, thousands separator, time or ratio mark between two digits (captured: re.split keeps it)
_NUMBER_MARK = re.compile(r"(?<=\d)([.,:/])(?=\d)")
# an apostrophe (ASCII, typographic U+2019, modifier letter U+02BC) with no space either side
_APOSTROPHE = re.compile(r"(?<=\S)['\u2019\u02bc](?=\S)")
_CJK = re.compile("([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U0002f800-\U0002fa1f])")


# variation selectors (Unicode category Mn, as marks are) and the combining enclosing keycap (Me) of emoji
_INVISIBLE = (*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), 0x20E3)


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str | None]:
    """Every punctuation or symbol code point of the basic and supplementary multilingual planes
    (emoji included) -> a space; format characters (``Cf``, tags in plane 14 included) and the
    invisible marks of emoji sequences -> nothing. Later planes hold ideographs, neither."""
    table: dict[int, str | None] = {}
    for cp in (*range(0x20000), *range(0xE0000, 0xE0080)):
        category = unicodedata.category(chr(cp))
        if category[0] in "PS":
            table[cp] = " "
        elif category == "Cf":
            table[cp] = None
    table.update(dict.fromkeys(_INVISIBLE))
    return table


def _in_word(match: re.Match[str]) -> str:
    """An apostrophe between two letters, marks or digits (``can't``) -> nothing; else as it was."""
    before, after = match.string[match.start() - 1], match.string[match.end()]
    if unicodedata.category(before)[0] in "LMN" and unicodedata.category(after)[0] in "LMN":
        return ""
    return match.group()


def clean(text: str, *, lowercase: bool, strip_punctuation: bool, keep_number_punctuation: bool = False,
          join_apostrophes: bool = False, stop_words: Collection[str] = (), stop_words_any_case: bool = True) -> str:
    """The text's NFC form (a decomposed accent would otherwise count as a mark of its own),
    lower-cased, without punctuation, symbols and the invisible characters of emoji sequences
    (but for a ``.,:/`` between two digits with ``keep_number_punctuation``; with
    ``join_apostrophes`` an apostrophe inside a word deleted, not spaced: ``can't`` is ``cant``,
    not ``can t``), without stop words
    (matched lower-cased with ``stop_words_any_case``, else as the word is), CJK ideographs
    spaced, and whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        if join_apostrophes:
            text = _APOSTROPHE.sub(_in_word, text)
        table = _punctuation_table()
        if keep_number_punctuation:  # [text, mark, text, mark, ..., text]: the marks between digits stay
            text = "".join(part if i % 2 else part.translate(table) for i, part in enumerate(_NUMBER_MARK.split(text)))
        else:
            text = text.translate(table)
    text = _CJK.sub(r" \1 ", text)
    if stop_words:
        if stop_words_any_case:
            return " ".join(w for w in text.split() if w.lower() not in stop_words)
        return " ".join(w for w in text.split() if w not in stop_words)
    return " ".join(text.split())


def cleaner(settings: Mapping[str, Any], stop_words: Collection[str]) -> Callable[[str], str]:
    """The cleaning a text modality's preprocess ``settings`` (its config as a mapping: a
    ``TextPreprocess`` dumped, or the runtime's JSON) ask for; ``stop_words``: the list removed when
    ``stopwords`` is set (training resolves the setting to its list, the runtime reads the copy
    exported with it). The English lists (``stopwords`` true, ``english``, ``english_all``) match
    a word in any case; the user's own list (``stopwords`` a list, whose entries ``stop_words``
    holds cleaned as the text is) matches the word as cleaned, so that with ``lowercase`` off
    ``US`` is not ``us``. An option added later is read with ``settings.get(key, <the behaviour
    before it>)``: an export made before it holds no such key."""
    chosen = settings["stopwords"]
    return partial(clean, lowercase=bool(settings["lowercase"]), strip_punctuation=bool(settings["strip_punctuation"]),
                   keep_number_punctuation=bool(settings.get("keep_number_punctuation", False)),
                   join_apostrophes=bool(settings.get("join_apostrophes", False)),
                   stop_words=frozenset(stop_words) if chosen else frozenset(),
                   stop_words_any_case=not isinstance(chosen, list))


def word_ids(vocab: Sequence[str]) -> Callable[[str], list[int]]:
    """A cleaned text's ids in a word vocabulary (split on whitespace; an unknown word is :data:`UNK_ID`)."""
    index = {w: i for i, w in enumerate(vocab)}
    return lambda text: [index.get(w, UNK_ID) for w in text.split()]


UNK_ID = 1  # [UNK]: the id of an unknown token in the word vocabulary and trained subword tokenizers ([PAD] is 0)


def padded_ids(samples: Sequence[Sequence[int]], max_tokens: int, pad_id: int) -> dict[str, np.ndarray]:
    """Token id lists (each at most ``max_tokens`` long) as one padded (N, max_tokens) int32
    array ``ids`` and their lengths (N,) ``length``."""
    ids = np.full((len(samples), max_tokens), pad_id, np.int32)
    lengths = np.zeros(len(samples), np.int32)
    for i, sample in enumerate(samples):
        ids[i, : len(sample)] = sample
        lengths[i] = len(sample)
    return {"ids": ids, "length": lengths}
