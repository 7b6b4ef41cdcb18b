"""``utils.text``: the cleaning and word ids that training and the deployment runtime share."""

from __future__ import annotations

import pytest

from polymodal.utils.text import UNK_ID, cleaner, word_ids

SETTINGS = {"lowercase": False, "strip_punctuation": False, "stopwords": False}


@pytest.mark.parametrize(("changes", "cleaned"), [
    ({}, "The pump, it RATTLES!"),
    ({"lowercase": True}, "the pump, it rattles!"),
    ({"strip_punctuation": True}, "The pump it RATTLES"),
    ({"stopwords": True}, "pump, RATTLES!"),  # a stop word is matched lower-cased: 'The' goes too
    ({"lowercase": True, "strip_punctuation": True, "stopwords": True}, "pump rattles"),
])
def test_the_cleaner_does_what_the_settings_ask_and_nothing_else(changes, cleaned):
    clean = cleaner({**SETTINGS, **changes}, stop_words={"the", "it"})
    assert clean("The  pump, it RATTLES!") == cleaned


def test_stop_words_are_removed_only_when_the_settings_say_so():
    assert cleaner(SETTINGS, stop_words={"pump"})("a pump") == "a pump"
    assert cleaner({**SETTINGS, "stopwords": True}, stop_words={"pump"})("a pump") == "a"


def test_word_ids_follow_the_vocabulary_and_unknown_words_are_unk():
    ids = word_ids(["[PAD]", "[UNK]", "pump", "rattles"])
    assert ids("pump rattles loudly pump") == [2, 3, UNK_ID, 2]
    assert ids("") == []
