"""Text preprocessing: cleaning, vocabularies and tokenizers, truncation, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.config import load_config
from polymodal.config.preprocess import TextPreprocess
from polymodal.data.modalities.text import ENGLISH_NEGATIONS, PAD, UNK, TextPreprocessor, clean_text, english_stop_words
from polymodal.errors import ConfigError, NotFittedError

from ..helpers import as_tensors, encode_values

CORPUS = [
    "The quick brown fox jumps over the lazy dog!",
    "A quick brown dog; jumps over a lazy fox.",
    "Foxes and dogs: quick, brown, lazy...",
] * 3


def text(**options) -> TextPreprocessor:
    return TextPreprocessor("notes", TextPreprocess(**options))


@pytest.mark.parametrize(
    ("options", "raw", "cleaned"),
    [
        ({}, "  The CAT,  sat!  ", "the cat sat"),
        ({"lowercase": False}, "The CAT sat", "The CAT sat"),
        ({"strip_punctuation": False}, "Hi, you!", "hi, you!"),
        ({}, "snake_case and e-mail... ok?", "snake case and e mail ok"),
        ({"stopwords": True}, "The cat is on the mat", "cat mat"),
        ({"stopwords": True, "lowercase": False}, "The Cat is ON the mat", "Cat mat"),
        ({}, "नमस्ते, दुनिया!", "नमस्ते दुनिया"),  # vowel signs and viramas are marks, not punctuation
        ({}, "สวัสดีครับ", "สวัสดีครับ"),
        ({}, "தமிழ் மொழி", "தமிழ் மொழி"),
        ({}, "price: $5 → 10€ 🙂 ok", "price 5 10 ok"),  # symbols and emoji go, as punctuation does
        ({}, "我喜欢机器学习。你呢？", "我 喜 欢 机 器 学 习 你 呢"),  # ideographs are words of their own
        # emoji sequences leave nothing behind: a variation selector (U+FE0F), skin tone, zero-width
        # joiners (U+200D), a keycap (U+20E3), a flag's tag characters (plane 14)
        ({}, "I love \U0001f355 \u2764\ufe0f \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467",
         "i love"),
        ({}, "1\ufe0f\u20e3 go\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "1 go"),
        ({}, "co\u00adoperate \ufeffnow", "cooperate now"),  # a soft hyphen and a byte-order mark: deleted
        # a zero-width (non-)joiner inside a Devanagari or Persian word is deleted, not a word break
        ({}, "\u0915\u094d\u200d\u0937 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
         "\u0915\u094d\u0937 \u0645\u06cc\u062e\u0648\u0627\u0647\u0645"),
        ({"strip_punctuation": False}, "ok\u2764\ufe0f", "ok\u2764\ufe0f"),  # kept with the symbols they belong to
        # a number keeps its decimal point, thousands separator, time or ratio mark; other marks go
        ({}, "Take 3.5 mg, 1,000 IU at 12:30. BP 120/80!", "take 3.5 mg 1,000 iu at 12:30 bp 120/80"),
        ({}, "Dose: .5 to 5-10 mg/day (x.y)", "dose 5 to 5 10 mg day x y"),
        ({"keep_number_punctuation": False}, "3.5 mg, 1,000 IU at 12:30", "3 5 mg 1 000 iu at 12 30"),
        # an apostrophe inside a word is deleted (ASCII, typographic, modifier letter); quotes around one go
        ({}, "The patient can't breathe", "the patient cant breathe"),
        ({}, "couldn\u2019t, the patient's, can\u02bct", "couldnt the patients cant"),
        ({"keep_number_punctuation": False}, "couldn\u2019t 3.5", "couldnt 3 5"),
        ({}, "a 'quoted' and \u2018curly\u2019 word", "a quoted and curly word"),
        ({}, "rock 'n' roll, the '90s, x'", "rock n roll the 90s x"),
        ({"strip_punctuation": False}, "Can't 'stop'", "can't 'stop'"),  # kept as written with the rest
        # without join_apostrophes (runs saved before it) an apostrophe splits its word as any mark does
        ({"join_apostrophes": False}, "The patient can't breathe", "the patient can t breathe"),
        ({"join_apostrophes": False}, "couldn\u2019t, the patient's 'x'", "couldn t the patient s x"),
    ],
)
def test_cleaning(options, raw, cleaned):
    assert clean_text(raw, TextPreprocess(**options)) == cleaned


@pytest.mark.parametrize("stopwords", [True, "english"])
def test_the_english_stop_words_keep_negations(stopwords):
    cfg = TextPreprocess(stopwords=stopwords)
    assert cfg.stopwords == "english"  # true is english for a new config
    assert clean_text("No pneumonia", cfg) == "no pneumonia" != clean_text("Pneumonia", cfg)
    assert clean_text("The patient is not feverish, never was, and cannot walk without help", cfg) == (
        "patient not feverish never cannot walk without help")
    # the contracted negations the list keeps are the forms the cleaning gives: not 'patient t breathe'
    assert clean_text("The patient can't breathe", cfg) == "patient cant breathe"
    assert clean_text("She couldn\u2019t walk and hasn't eaten", cfg) == "couldnt walk hasnt eaten"


def test_english_all_drops_negations_as_the_whole_scikit_learn_list_does():
    cfg = TextPreprocess(stopwords="english_all")
    assert clean_text("No pneumonia", cfg) == clean_text("Pneumonia", cfg) == "pneumonia"
    assert clean_text("not feverish, never was, without help", cfg) == "feverish help"


def test_the_english_list_is_scikit_learns_without_exactly_its_negations():
    every = english_stop_words()
    assert ENGLISH_NEGATIONS < every  # each one is in scikit-learn's list (a typo would remove nothing)
    kept = " ".join(sorted(every))
    assert clean_text(kept, TextPreprocess(stopwords="english")).split() == sorted(ENGLISH_NEGATIONS)
    assert clean_text(kept, TextPreprocess(stopwords="english_all")) == ""


def test_a_stop_word_list_of_ones_own_is_cleaned_as_the_text_is():
    cfg = TextPreprocess(stopwords=["Patient", "PRESENTS", "mg."])  # lower-cased, and the full stop stripped
    assert clean_text("The patient presents with 3.5 mg of no pain", cfg) == "the with 3.5 of no pain"
    cased = TextPreprocess(stopwords=["US", "mg"], lowercase=False)  # matched as written: 'us' is not 'US'
    assert clean_text("Tell us the US dose in mg, not MG", cased) == "Tell us the dose in not MG"
    numbers = TextPreprocess(stopwords=["1,000"])
    assert clean_text("1,000 IU or 1 000 IU", numbers) == "iu or 1 000 iu"
    contracted = TextPreprocess(stopwords=["won't"])  # one word, as the text's "won\u2019t" is
    assert clean_text("It won\u2019t, it won't, it wont do", contracted) == "it it it do"
    with pytest.raises(ValueError, match="stopwords item 0 must clean to one word.*\"won't\" cleans to 2 words"):
        TextPreprocess(stopwords=["won't"], join_apostrophes=False)  # split, as the text's "won't" is


def test_join_apostrophes_keys_the_cache_only_where_it_changes_the_cleaning():
    """A run saved before the setting reads it false: its cached ids and fingerprint stay those
    it had (the setting is left out of both), as they do when ``strip_punctuation`` is off and
    the setting is idle. Joined, the ids differ, and so does the fingerprint."""
    joined, split = text(), text(join_apostrophes=False)
    assert joined.encoding_config()["join_apostrophes"] is True
    assert "join_apostrophes" not in split.encoding_config()
    assert "join_apostrophes" not in split.settings_digest_config()
    assert split.encoding_config() == {k: v for k, v in joined.encoding_config().items() if k != "join_apostrophes"}
    assert joined.fingerprint() != split.fingerprint()
    idle = text(strip_punctuation=False)
    assert "join_apostrophes" not in idle.encoding_config()
    assert idle.fingerprint() == text(strip_punctuation=False, join_apostrophes=False).fingerprint()


def test_a_word_tokenizer_with_stop_words_of_its_own_never_learns_them():
    prep = text(stopwords=["dog", "fox"])
    prep.fit(CORPUS)
    assert "dog" not in prep.vocab and "fox" not in prep.vocab and "foxes" in prep.vocab
    assert prep.tokenize("the dog and the lazy fox") == ["the", "and", "the", "lazy"]


@pytest.mark.parametrize(("stopwords", "problem"), [
    ([], "modalities.notes.preprocess.stopwords: must be false, true, 'english', 'english_all' or a list of words, "
         "not an empty list (to remove no word: false) (got [])"),
    (["no", 3], "modalities.notes.preprocess.stopwords: item 1 must be a word (a string), not int 3 (got ['no', 3])"),
    ("englsh", "modalities.notes.preprocess.stopwords: must be false, true, 'english', 'english_all' or a list of "
               "words (did you mean 'english'?) (got 'englsh')"),
    (None, "modalities.notes.preprocess.stopwords: must be false, true, 'english', 'english_all' or a list of words "
           "(got None)"),
    (["ok", "e-mail"], "modalities.notes.preprocess: stopwords item 1 must clean to one word, as the text is cleaned "
                       "(a stop word is matched against the cleaned text's words); 'e-mail' cleans to 2 words "
                       "('e mail')"),
    (["ok", " ?! "], "modalities.notes.preprocess: stopwords item 1 must clean to one word, as the text is cleaned "
                     "(a stop word is matched against the cleaned text's words); ' ?! ' cleans to nothing"),
])
def test_a_stop_word_setting_of_no_accepted_form_is_a_config_error_naming_the_key(stopwords, problem):
    with pytest.raises(ConfigError) as info:
        load_config({"target": "y", "modalities": {"notes": {"kind": "text", "column": "t",
                                                              "preprocess": {"stopwords": stopwords}}}})
    assert info.value.problems == [problem]


def test_the_schema_describes_every_stop_word_choice():
    from polymodal.config import json_schema

    text_schema = json_schema()["$defs"]["TextPreprocess"]
    forms = text_schema["properties"]["stopwords"]["anyOf"]
    assert {"type": "boolean"} in forms
    assert {"enum": ["english", "english_all"], "type": "string"} in forms
    assert {"items": {"type": "string"}, "minItems": 1, "type": "array"} in forms
    assert text_schema["properties"]["keep_number_punctuation"] == {
        "default": True, "title": "Keep Number Punctuation", "type": "boolean"}
    assert text_schema["properties"]["join_apostrophes"] == {
        "default": True, "title": "Join Apostrophes", "type": "boolean"}
    assert "english_all" in text_schema["description"] and "keep_number_punctuation" in text_schema["description"]
    assert "join_apostrophes" in text_schema["description"]


def test_word_vocabulary_is_ordered_by_frequency_with_pad_and_unknown_first():
    prep = text()
    prep.fit(["b a a", "c a b", "d"])
    assert prep.vocab == [PAD, UNK, "a", "b", "c", "d"]  # a x3, b x2, then ties alphabetically
    assert prep.pad_id == 0
    assert prep.decode("a b zebra d") == [2, 3, 1, 5]


def test_an_unseen_chinese_text_shares_the_words_it_has_with_training():
    prep = text()
    prep.fit(["我喜欢机器学习", "我喜欢猫"])
    assert prep.tokenize("我喜欢狗") == ["我", "喜", "欢", UNK]  # only 狗 is new


def test_word_vocabulary_min_freq_and_cap():
    prep = text(min_freq=2)
    prep.fit(["b a a", "c a b", "d"])
    assert prep.vocab == [PAD, UNK, "a", "b"]
    capped = text(vocab_size=8)
    capped.fit([" ".join(f"w{i}" for i in range(20))] + ["w7 w3"])
    assert len(capped.vocab) == 8
    assert capped.vocab[2:4] == ["w3", "w7"]  # the most frequent words are kept
    assert capped.decode("w19") == [1]


def test_attributions_label_an_unknown_word_with_the_word_itself():
    prep = text(max_tokens=4)
    prep.fit(CORPUS)
    assert prep.tokenize("The lucchetto dog") == ["the", UNK, "dog"]  # what the model reads
    assert prep.token_labels("The lucchetto dog") == ["the", "lucchetto (unknown)", "dog"]  # what a reader is shown
    assert prep.token_labels("!!!") == [UNK]  # no word behind it
    assert prep.token_labels("the dog the dog the dog") == ["the", "dog", "the", "dog"]  # cut as the ids are


def test_word_tokenizer_cleans_before_looking_up():
    prep = text()
    prep.fit(["Hello, World"])
    assert prep.decode("HELLO world!!") == prep.decode("hello world") == [2, 3]
    assert prep.tokenize("hello, there") == ["hello", UNK]


def test_unfitted_tokenizer_is_refused():
    with pytest.raises(NotFittedError, match="notes"):
        text().decode("anything")


def join_wordpieces(tokens: list[str]) -> str:
    words: list[str] = []
    for token in tokens:
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return " ".join(words)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_subword_tokenizers_round_trip_seen_words(kind):
    prep = text(tokenizer=kind, vocab_size=200)
    prep.fit(CORPUS)
    for raw in CORPUS[:3]:
        cleaned = clean_text(raw, prep.cfg)
        ids = prep.decode(raw)
        tokens = prep.tokenize(raw)
        assert len(tokens) == len(ids)
        assert tokens == cleaned.split()  # every training word became one token
    assert prep.tokenize("the") != [UNK]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_subword_tokenizers_cut_a_kept_number_at_its_mark_and_keep_the_mark(kind):
    """Their whitespace-and-punctuation pre-tokenizer splits '3.5' again, into '3', '.', '5': still
    not '3 5'. With keep_number_punctuation off, the cleaning already made it '3 5'."""
    texts = ["take 3.5 mg at 12:30", "take 1,000 units", "take 3 5 pills"] * 3
    kept = text(tokenizer=kind, vocab_size=200)
    kept.fit(texts)
    assert kept.tokenize("take 3.5 mg") == ["take", "3", ".", "5", "mg"]
    assert kept.tokenize("take 3 5 mg") == ["take", "3", "5", "mg"]
    split = text(tokenizer=kind, vocab_size=200, keep_number_punctuation=False)
    split.fit(texts)
    assert split.tokenize("take 3.5 mg") == split.tokenize("take 3 5 mg") == ["take", "3", "5", "mg"]


def test_wordpiece_splits_new_words_into_pieces_that_rejoin():
    prep = text(tokenizer="wordpiece", vocab_size=200)
    prep.fit(CORPUS)
    tokens = prep.tokenize("foxy dogs")
    assert any(t.startswith("##") for t in tokens) and UNK not in tokens
    assert join_wordpieces(tokens) == "foxy dogs"


def test_bpe_splits_new_words_into_pieces_that_rejoin():
    prep = text(tokenizer="bpe", vocab_size=200)
    prep.fit(CORPUS)
    tokens = prep.tokenize("quickest")
    assert len(tokens) > 1 and "".join(tokens) == "quickest"


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_subword_special_tokens_take_ids_zero_and_one(kind):
    prep = text(tokenizer=kind, vocab_size=100)
    prep.fit(CORPUS)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(prep.tokenizer_json)
    assert tokenizer.token_to_id(PAD) == 0 == prep.pad_id
    assert tokenizer.token_to_id(UNK) == 1
    assert prep.vocab_size == tokenizer.get_vocab_size()
    assert prep.encoder_context()["vocab_size"] == prep.vocab_size


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
def test_max_tokens_truncates(kind):
    prep = text(tokenizer=kind, max_tokens=4)
    prep.fit(CORPUS)
    full = text(tokenizer=kind, max_tokens=64)
    full.set_state(prep.get_state())
    long_text = CORPUS[0]
    assert len(full.decode(long_text)) == 9
    assert prep.decode(long_text) == full.decode(long_text)[:4]
    assert encode_values(prep, [long_text])["ids"].shape == (1, 4)


def test_to_batch_trims_to_the_longest_text_and_masks_padding():
    prep = text(max_tokens=10)
    prep.fit(CORPUS)
    arrays = encode_values(prep, ["quick fox", "the lazy brown dog", "dog"])
    assert arrays["ids"].shape == (3, 10) and arrays["length"].tolist() == [2, 4, 1]
    assert (arrays["ids"][0, 2:] == prep.pad_id).all()
    batch = prep.to_batch(as_tensors(arrays), train=False)
    assert batch["x"].shape == (3, 4) and batch["x"].dtype == torch.long
    assert batch["mask"].tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert batch["x"][1].tolist() == prep.decode("the lazy brown dog")


def test_training_batches_read_some_tokens_as_unknown_so_that_its_embedding_learns():
    """With every training word in the vocabulary the unknown token would never train; at
    ``unknown_rate`` a training batch reads tokens (never padding) as it, evaluation none."""
    prep = text(max_tokens=10, unknown_rate=0.3)
    prep.fit(CORPUS)
    arrays = as_tensors(encode_values(prep, ["the quick brown fox jumps over the lazy dog"] * 400 + ["dog"] * 100))
    torch.manual_seed(0)
    batch = prep.to_batch(arrays, train=True)
    clean = prep.to_batch(arrays, train=False)
    hidden = batch["x"] != clean["x"]
    assert (batch["x"][hidden] == prep.unk_id).all() and not (hidden & ~clean["mask"]).any()  # never the padding
    assert hidden[clean["mask"]].float().mean() == pytest.approx(0.3, abs=0.02)
    assert not (clean["x"][clean["mask"]] == prep.unk_id).any()  # evaluation reads every word as it is
    off = text(max_tokens=10, unknown_rate=0.0)
    off.fit(CORPUS)
    assert torch.equal(off.to_batch(arrays, train=True)["x"], clean["x"])
    assert off.fingerprint() == prep.fingerprint(), "a batch-time setting keeps the cached ids"


@pytest.mark.parametrize("kind", ["word", "wordpiece", "bpe"])
def test_a_text_that_cleans_to_nothing_is_one_unknown_token(kind):
    """Punctuation or stop words only: one [UNK] to attend to, not an all-padding row (whose
    attention would be NaN)."""
    prep = text(tokenizer=kind, stopwords=True, vocab_size=60, min_freq=1)
    prep.fit(CORPUS)
    unknown = 1
    assert prep.tokenize("?") == [UNK] and prep.decode("!!!") == [unknown] == prep.decode("the of and")
    batch = prep.to_batch(as_tensors(encode_values(prep, ["!!!", "...", ""])), train=False)
    assert batch["x"].tolist() == [[unknown]] * 3 and batch["mask"].all()


def test_a_float_column_of_codes_tokenizes_as_its_integers():
    prep = text()
    prep.fit([12.0, 7.0, 3.5])
    assert prep.vocab[2:] == ["12", "3.5", "7"]  # a decimal is one word (keep_number_punctuation)
    assert prep.decode(12.0) == prep.decode("12") == prep.decode(12) != [1]


def test_decomposed_accents_tokenize_as_composed_ones():
    prep = text()
    prep.fit(["café au lait", "un café"])
    assert prep.decode("cafe\u0301") == prep.decode("café") != [1]
    assert clean_text("Cafe\u0301!", TextPreprocess()) == "café"


def test_a_transformer_over_a_row_with_no_valid_token_stays_finite():
    from polymodal.models.encoders.sequence import TransformerCore

    core = TransformerCore(dim=8, layers=1, heads=2, ff=16, dropout=0.0, pooling="mean").eval()
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = core(torch.randn(2, 3, 8), mask)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


@pytest.fixture
def pretrained_folder(tmp_path):
    """A tiny local WordPiece tokenizer saved with transformers, with [PAD] at id 3."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "cat", "sat", "on", "mat", "##s"]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_another_tokenizer_saved_at_the_same_path_changes_the_fingerprint(pretrained_folder):
    """Cached token ids must not outlive the tokenizer that made them; weights in the folder do not count."""
    before = text(tokenizer="pretrained", tokenizer_path=pretrained_folder).fingerprint()
    (pretrained_folder / "model.safetensors").write_bytes(b"weights")
    assert text(tokenizer="pretrained", tokenizer_path=pretrained_folder).fingerprint() == before
    vocab = pretrained_folder / "tokenizer.json"
    vocab.write_text(vocab.read_text().replace('"cat"', '"dog"'))
    assert text(tokenizer="pretrained", tokenizer_path=pretrained_folder).fingerprint() != before


def test_the_same_tokenizer_elsewhere_or_copied_by_a_run_keeps_the_fingerprint(pretrained_folder, tmp_path):
    """A run moved to another machine, or loaded from its own copy of the folder (which leaves out
    weights and hidden files such as .gitattributes), keys its caches and names its model as before."""
    import shutil

    (pretrained_folder / ".gitattributes").write_text("*.bin filter=lfs")
    (pretrained_folder / "rust_model.ot").write_bytes(b"weights")
    before = text(tokenizer="pretrained", tokenizer_path=pretrained_folder).fingerprint()
    copy = tmp_path / "elsewhere" / "tok"
    shutil.copytree(pretrained_folder, copy, ignore=shutil.ignore_patterns(".*", "*.ot"))
    assert text(tokenizer="pretrained", tokenizer_path=copy).fingerprint() == before


def test_pretrained_tokenizer_from_a_local_folder(pretrained_folder):
    prep = text(tokenizer="pretrained", tokenizer_path=pretrained_folder, max_tokens=5)
    assert prep.tokenize("The cats sat") == ["[CLS]", "the", "cat", "##s", "[SEP]"]
    assert prep.pad_id == 3
    arrays = encode_values(prep, ["the cats sat on the mat", "cat"])
    assert arrays["ids"][0].tolist() == [1, 4, 5, 9, 2]  # truncated to max_tokens, [SEP] kept
    assert arrays["ids"][1].tolist() == [1, 5, 2, 3, 3]  # padded with the tokenizer's own pad id
    assert prep.vocab_size == 10
    np.testing.assert_array_equal(arrays["length"], [5, 3])
    many = as_tensors(encode_values(prep, ["the cats sat on the mat"] * 200))  # a pretrained vocabulary's [UNK]
    assert torch.equal(prep.to_batch(many, train=True)["x"], prep.to_batch(many, train=False)["x"])  # is trained


def test_a_pretrained_tokenizer_folder_s_own_code_is_never_run(tmp_path, monkeypatch):
    """transformers asks at a terminal whether to run a folder's own code (``auto_map``) when
    ``trust_remote_code`` is left unset: one "y" ran it."""
    from helpers_models import save_custom_code_model

    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "y")
    folder = save_custom_code_model(tmp_path / "custom", marker := tmp_path / "ran")
    with pytest.raises(ValueError, match="custom code"):
        text(tokenizer="pretrained", tokenizer_path=folder)._pretrained  # noqa: B018 - loads the tokenizer
    assert asked == [] and not marker.exists()
