"""The web page at ``/``, driven end to end in headless Chromium (Playwright + Debian's chromium)."""

from __future__ import annotations

import re
import shutil

import pytest

from .helpers import png_bytes, serving, tone, wav_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the 'dev' extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
TOKEN = "page-test-token"




def open_page(browser, url: str) -> tuple[object, list]:
    """A fresh page (its own context, so its own localStorage) at ``url`` once the network is idle
    (the favicon included), and the console messages it has logged so far (the list keeps growing)."""
    page = browser.new_page()
    messages: list = []
    page.on("console", lambda message: messages.append(message))
    page.goto(url, wait_until="networkidle")
    return page, messages


@pytest.fixture(scope="module")
def browser(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def loaded(browser, server):
    """The page on the served tiny model, and a copy of the console messages it logged while loading."""
    page, messages = open_page(browser, server)
    page.wait_for_selector("#file-image", state="attached")
    return page, list(messages)


@pytest.fixture(scope="module")
def page(loaded):
    return loaded[0]


def test_page_loads_without_console_errors_or_warnings(loaded):
    """No 404 for /favicon.ico, and no '[DOM] Password field is not contained in a form'."""
    _, messages = loaded
    assert [(m.type, m.text) for m in messages if m.type in {"error", "warning"} or "[DOM]" in m.text] == []


def test_page_predicts_and_shows_contributions(page, tmp_path):
    import numpy as np

    rng = np.random.default_rng(5)
    (tmp_path / "digit.png").write_bytes(png_bytes((rng.uniform(0, 60, (10, 12)) + 180).astype(np.uint8)))
    (tmp_path / "voice.wav").write_bytes(wav_bytes(tone(2, rng)))
    assert "classification over audio, image, labs, notes" in page.inner_text("#about")
    page.set_input_files("#file-image", str(tmp_path / "digit.png"))
    page.set_input_files("#file-audio", str(tmp_path / "voice.wav"))
    page.fill("#text-notes", "the blue large one")
    page.fill("#col-x1", "2.2")
    page.fill("#col-color", "red")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    predicted = page.inner_text("#prediction")
    assert predicted in {"a", "b", "c"}
    probabilities = page.query_selector_all("#probabilities .bar-row")
    assert [r.get_attribute("data-label") for r in probabilities][0] == predicted  # sorted, most likely first
    contributions = [r.get_attribute("data-label") for r in page.query_selector_all("#contributions .bar-row")]
    assert contributions == ["audio", "image", "labs", "notes"]
    assert page.locator("#contributions .bar").count() == 4  # every modality given: a bar each
    assert "not given" not in page.inner_text("#contributions")
    assert f"Shapley values on the probability of the predicted class '{predicted}'" in page.inner_text("#contrib-note")
    assert not page.is_visible("#error") and page.inner_text("#warnings") == ""


def test_page_offers_the_learned_categories_and_warns_about_another(page):
    options = page.eval_on_selector_all("#categories-color option", "nodes => nodes.map(n => n.value)")
    assert options == ["blue", "green", "red"] and page.get_attribute("#col-color", "list") == "categories-color"
    page.click("#clear")
    page.fill("#col-x1", "2.2")
    page.fill("#col-color", "mauve")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    assert "'mauve' is a category the model did not learn" in page.inner_text("#warnings")


def test_page_outlines_the_table_whose_value_is_refused(page):
    page.click("#clear")
    page.fill("#col-x1", "abc")  # not a number: the answer names the modality 'labs', not the column
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    assert page.eval_on_selector("#col-x1", "input => input.closest('.modality').classList.contains('bad')")
    assert page.locator(".modality.bad").count() == 1


def test_page_shows_a_modality_that_was_not_sent_as_not_given(page, tmp_path):
    """Audio only: the other rows read 'not given' with no bar, not a contribution of 0.000."""
    import numpy as np

    (tmp_path / "voice.wav").write_bytes(wav_bytes(tone(1, np.random.default_rng(3))))
    page.click("#clear")
    page.set_input_files("#file-audio", str(tmp_path / "voice.wav"))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    rows = {r.get_attribute("data-label"): r for r in page.query_selector_all("#contributions .bar-row")}
    assert list(rows) == ["audio", "image", "labs", "notes"]
    for name in ("image", "labs", "notes"):
        assert " ".join(rows[name].inner_text().split()) == f"{name} not given"
        assert rows[name].query_selector(".bar") is None
    audio = rows["audio"].inner_text()
    assert "not given" not in audio and rows["audio"].query_selector(".bar") is not None
    assert re.fullmatch(r"-?\d+\.\d{3}", audio.split()[-1])  # its contribution, a number


def test_page_shows_a_readable_error_for_a_wrong_file_type(page, tmp_path):
    (tmp_path / "notes.txt").write_text("this is not a picture")
    page.click("#clear")
    page.set_input_files("#file-image", str(tmp_path / "notes.txt"))
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    message = page.inner_text("#error")
    assert "unsupported file type for image modality 'image'" in message and "PNG" in message
    assert page.is_hidden("#result")
    assert page.eval_on_selector("#file-image", "input => input.closest('.modality').classList.contains('bad')")
    page.click("#clear")  # nothing chosen: said on the page, without a request
    page.click("#submit")
    assert page.inner_text("#error") == "choose a file, or type a text or a value, for at least one modality"


def test_token_field_is_hidden_when_the_server_needs_no_token(page):
    assert page.evaluate("fetch('metadata').then((r) => r.json()).then((m) => m.auth)") is False
    assert page.locator("#token").count() == 1 and page.is_hidden("#token")


def test_token_field_is_shown_and_used_when_the_server_needs_one(browser, exported):
    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    with serving(create_app(Runtime.load(exported[0]), ServeSettings(token=TOKEN))) as url:
        page, _ = open_page(browser, url)
        page.wait_for_selector("#error", state="visible")
        assert "bearer token" in page.inner_text("#error") and page.is_visible("#token")
        assert page.locator("#file-image").count() == 0  # no form without the model's description
        page.fill("#token", TOKEN)
        page.press("#token", "Enter")
        page.wait_for_selector("#file-image", state="attached")
        assert page.is_hidden("#error") and page.is_visible("#token")  # still asked for: the server needs it
        page.fill("#text-notes", "the green medium one")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])")
        assert page.inner_text("#prediction") in {"a", "b", "c"}
        page.close()


def test_page_renders_names_with_markup_literally(browser, server):
    """Class and modality names are text, never markup: the server's answers are rewritten in the browser
    to carry '<b>', '<i>' and '&' (the tiny model's names are plain letters)."""
    classes = ["<b>bold</b>", "fish & chips", "c&lt;"]
    explained = {"task": "classification", "modalities": ["<i>memo</i>"], "prediction": classes[0],
                 "probabilities": dict(zip(classes, [0.6, 0.3, 0.1])), "explained": classes[0],
                 "explained_quantity": f"probability of the predicted class '{classes[0]}'", "score": 0.6,
                 "base": 0.4, "contributions": {"<i>memo</i>": 0.2, "audio": 0.0}}

    def metadata(route):
        response = route.fetch()
        meta = response.json()
        meta["classes"] = classes
        meta["modalities"]["<i>memo</i>"] = {"kind": "text"}
        meta["modalities"]["labs"]["columns"] = ["x<1 & 'y'"]
        route.fulfill(response=response, json=meta)

    page = browser.new_page()
    page.route("**/metadata", metadata)
    page.route("**/explain", lambda route: route.fulfill(json=explained))
    page.goto(server)
    page.wait_for_selector("#file-image", state="attached")
    headings = page.locator("#inputs h3").all_inner_texts()
    assert "<i>memo</i> (text)" in headings
    assert "x<1 & 'y'" in page.inner_text("#inputs") and page.locator("#inputs input[name=\"x<1 & 'y'\"]").count() == 1
    page.fill("#text-notes", "blue")  # something to send (the answer is the one above)
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    names = page.locator("#probabilities .bar-row > span:first-child").all_inner_texts()
    assert names == classes and page.inner_text("#prediction") == classes[0]
    assert page.locator("#contributions .bar-row > span:first-child").all_inner_texts() == ["<i>memo</i>", "audio"]
    assert "audio not given" in " ".join(page.inner_text("#contributions").split())
    assert page.locator("main b, main i").count() == 0  # nothing was parsed as markup
    page.close()


def test_page_says_when_the_contributions_are_sampled(browser, server):
    """Beyond 6 modalities ``/explain`` answers ``"shapley": "sampled"`` (the served tiny model has 4,
    so its real answer is rewritten), and the note above the bars says the values are estimates."""
    def sampled(route):
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "shapley": "sampled"})

    page = browser.new_page()
    page.route("**/explain", sampled)
    page.goto(server)
    page.wait_for_selector("#file-image", state="attached")
    page.fill("#text-notes", "the blue large one")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#contrib-note").startswith(
        "Shapley values (estimated from sampled modality orders) on the probability of the predicted class")
    page.close()


def test_page_offers_the_label_to_explain_for_a_multilabel_model(browser, server):
    """A model with several labels (or targets): the page asks which one the contributions attribute
    and sends it as ``?output=``; a classifier (the tiny model) is offered no choice."""
    from urllib.parse import parse_qs, urlparse

    labels = ["kw_leak", "kw & noise"]
    sent: list[str] = []

    def metadata(route):
        response = route.fetch()
        meta = response.json()
        assert meta["task"] == "classification" and meta["outputs"] == ["a", "b", "c"]
        route.fulfill(response=response, json={**meta, "task": "multilabel", "classes": labels, "outputs": labels})

    def explain(route):
        sent.append(route.request.url)
        chosen = parse_qs(urlparse(route.request.url).query)["output"][0]
        route.fulfill(json={"task": "multilabel", "modalities": ["notes"], "absent": [], "warnings": [],
                            "prediction": [chosen], "probabilities": {labels[0]: 0.2, labels[1]: 0.9},
                            "explained": chosen, "explained_quantity": f"probability of label '{chosen}'",
                            "score": 0.9, "base": 0.5, "reference": "none", "contributions": {"notes": 0.4}})

    plain, _ = open_page(browser, server)
    plain.wait_for_selector("#file-image", state="attached")
    assert plain.is_hidden("#output-choice")
    plain.close()
    page = browser.new_page()
    page.route("**/metadata", metadata)
    page.route(re.compile(r".*/explain(\?.*)?$"), explain)
    page.goto(server)
    page.wait_for_selector("#file-image", state="attached")
    assert page.is_visible("#output-choice")
    assert page.eval_on_selector_all("#output option", "nodes => nodes.map(n => n.value)") == labels
    page.fill("#text-notes", "blue")
    page.select_option("#output", labels[1])
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")
    assert parse_qs(urlparse(sent[-1]).query) == {"output": [labels[1]]}
    assert f"Shapley values on the probability of label '{labels[1]}'" in page.inner_text("#contrib-note")
    page.select_option("#output", labels[0])
    assert page.is_hidden("#result"), "another label: the shown contributions are outdated"
    page.close()
