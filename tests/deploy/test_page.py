"""The web page at ``/``, driven end to end in headless Chromium (Playwright + Debian's chromium)."""

from __future__ import annotations

import shutil

import pytest

from .helpers import png_bytes, tone, wav_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the 'dev' extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server)
        page.wait_for_selector("#file-image", state="attached")
        yield page
        browser.close()


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
    assert f"Shapley values on the probability of the predicted class '{predicted}'" in page.inner_text("#contrib-note")
    assert not page.is_visible("#error")


def test_page_shows_a_readable_error_for_a_wrong_file_type(page, tmp_path):
    (tmp_path / "notes.txt").write_text("this is not a picture")
    page.click("#clear")
    page.set_input_files("#file-image", str(tmp_path / "notes.txt"))
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    message = page.inner_text("#error")
    assert "unsupported file type for image modality 'image'" in message and "PNG" in message
    assert page.is_hidden("#result")


def test_docs_pages_render_with_every_request_outside_the_server_refused(page, server):
    """Swagger UI and ReDoc draw the API from the installed package's scripts: offline sites get them."""
    docs = page.context.browser.new_page()
    outside = []

    def only_the_server(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    docs.route("**/*", only_the_server)
    docs.goto(f"{server.rstrip('/')}/docs")
    docs.wait_for_selector(".swagger-ui .info .title")
    assert "polymodal model" in docs.inner_text(".swagger-ui .info .title")
    docs.wait_for_selector("text=/predict")
    docs.goto(f"{server.rstrip('/')}/redoc")
    docs.wait_for_selector("text=/explain")
    docs.close()
    assert not [u for u in outside if "static-offline-docs" in u or "jsdelivr" in u]
