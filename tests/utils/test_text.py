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


@pytest.mark.parametrize(("raw", "kept", "split"), [
    ("3.5 mg", "3.5 mg", "3 5 mg"),
    ("1,000 units at 12:30", "1,000 units at 12:30", "1 000 units at 12 30"),
    ("bp 120/80, v1.2.3", "bp 120/80 v1.2.3", "bp 120 80 v1 2 3"),
    ("\u0663.\u0665 \uff13.\uff15", "\u0663.\u0665 \uff13.\uff15", "\u0663 \u0665 \uff13 \uff15"),  # digits of any script
    # a mark not between two digits goes, as does every other mark between digits
    ("end. .5 5. 5-10 a.b 3..5 3;5 x:1", "end 5 5 5 10 a b 3 5 3 5 x 1", "end 5 5 5 10 a b 3 5 3 5 x 1"),
])
def test_punctuation_between_two_digits_stays_only_when_the_settings_keep_it(raw, kept, split):
    strip = {**SETTINGS, "strip_punctuation": True}
    assert cleaner({**strip, "keep_number_punctuation": True}, ())(raw) == kept
    assert cleaner({**strip, "keep_number_punctuation": False}, ())(raw) == split
    assert cleaner(strip, ())(raw) == split  # an export made before the setting: numbers split, as then
    assert cleaner({**SETTINGS, "keep_number_punctuation": True}, ())(raw) == " ".join(raw.split())  # nothing stripped


def test_the_english_lists_match_any_case_and_the_users_own_list_the_case_written():
    text = "The US and us"
    assert cleaner({**SETTINGS, "stopwords": "english"}, stop_words={"the", "us"})(text) == "and"
    assert cleaner({**SETTINGS, "stopwords": True}, stop_words={"the", "us"})(text) == "and"  # an older export
    assert cleaner({**SETTINGS, "stopwords": ["the", "us"]}, stop_words={"the", "us"})(text) == "The US and"
    lower = {**SETTINGS, "lowercase": True, "stopwords": ["the", "us"]}
    assert cleaner(lower, stop_words={"the", "us"})(text) == "and"


def test_word_ids_follow_the_vocabulary_and_unknown_words_are_unk():
    ids = word_ids(["[PAD]", "[UNK]", "pump", "rattles"])
    assert ids("pump rattles loudly pump") == [2, 3, UNK_ID, 2]
    assert ids("") == []


@pytest.mark.parametrize("keep_numbers", [False, True])
def test_an_apostrophe_inside_a_word_is_deleted_when_the_settings_join_apostrophes(keep_numbers):
    strip = {**SETTINGS, "lowercase": True, "strip_punctuation": True, "keep_number_punctuation": keep_numbers}
    clean = cleaner({**strip, "join_apostrophes": True}, ())
    assert clean("Can't, couldn\u2019t, can\u02bct") == "cant couldnt cant"
    assert clean("'one' \u2018two\u2019 three'") == "one two three"  # quotes around words are punctuation
    assert cleaner({**strip, "join_apostrophes": True, "strip_punctuation": False}, ())("can't 'x'") == "can't 'x'"


@pytest.mark.parametrize("settings", [{"join_apostrophes": False}, {}])  # {}: an export made before the setting
def test_an_apostrophe_splits_its_word_without_join_apostrophes(settings):
    clean = cleaner({**SETTINGS, "lowercase": True, "strip_punctuation": True, **settings}, ())
    assert clean("Can't, couldn\u2019t") == "can t couldn t"
    assert clean("'one' \u2018two\u2019") == "one two"
