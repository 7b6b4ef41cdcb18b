"""The HTTP service: routes, both body formats, limits as 4xx JSON, bearer token, micro-batching."""

from __future__ import annotations

import base64
import io
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from polymodal.deploy.errors import content_start
from polymodal.deploy.features.signatures import accepted_types
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings

from .helpers import LOCAL, png_bytes, tone, wav_bytes

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def runtime(exported) -> Runtime:
    return Runtime.load(exported[0])


@pytest.fixture(scope="module")
def client(runtime):
    settings = ServeSettings(max_request_bytes=200_000, max_image_pixels=64 * 64, max_audio_seconds=1.0,
                             max_text_chars=100, max_wait_ms=50, max_batch=8)
    with TestClient(create_app(runtime, settings), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(3)
    image = (rng.uniform(0, 60, (10, 12)) + 180).astype(np.uint8)
    return {"image": png_bytes(image), "audio": wav_bytes(tone(2, rng)), "notes": "a blue large thing",
            "labs": {"x1": 2.1, "color": "red"}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_health_metadata_and_docs(client):
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["classes"] == ["a", "b", "c"]
    assert meta["modalities"]["labs"] == {"kind": "tabular", "columns": ["x1"], "categorical": ["color"],
                                          "categories": {"color": ["blue", "green", "red"]}}
    assert meta["modalities"]["audio"]["sample_rate"] == 8000 and "PNG" in meta["modalities"]["image"]["accept"]
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert set(body["multipart/form-data"]["schema"]["properties"]) == {"image", "audio", "notes", "x1", "color"}
    page = client.get("/").text
    assert "<title>polymodal model</title>" in page
    links = re.findall(r"""(?:src|href)=["']?([^"'\s>]*)""", page)
    assert "://" not in page and all(link.startswith("data:") for link in links), links  # self-contained: offline
    for docs, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(docs).text  # Swagger UI and ReDoc: scripts from the installed package, no CDN
        assert "cdn.jsdelivr.net" not in html and f"/static-offline-docs/{script}" in html
        served = client.get(f"/static-offline-docs/{script}")
        assert served.status_code == 200 and len(served.content) > 100_000


def test_multipart_and_json_give_the_runtime_prediction(client, runtime, sample):
    files = {"image": ("x.png", sample["image"], "image/png"), "audio": ("x.wav", sample["audio"], "audio/wav")}
    form = {"notes": sample["notes"], "x1": "2.1", "color": "red"}
    multipart = client.post("/predict", files=files, data=form).json()
    as_json = client.post("/predict", json={"image": b64(sample["image"]), "audio": b64(sample["audio"]),
                                            "notes": sample["notes"], "labs": sample["labs"]}).json()
    want = runtime.predict_proba([sample])[0]
    for out in (multipart, as_json):
        assert out["modalities"] == ["audio", "image", "labs", "notes"]
        np.testing.assert_allclose([out["probabilities"][c] for c in "abc"], want, atol=1e-6)
        assert out["prediction"] == "abc"[int(want.argmax())]


def test_a_category_the_model_did_not_learn_is_predicted_with_a_warning(client, runtime, sample):
    known = client.post("/predict", json={"labs": sample["labs"]}).json()
    assert known["warnings"] == []
    for response in (client.post("/predict", json={"labs": {"x1": 2.1, "color": "Red"}}),
                     client.post("/explain", data={"x1": "2.1", "color": "Red"})):  # JSON and multipart
        out = response.json()
        assert response.status_code == 200 and out["warnings"] == [
            "modality 'labs', column 'color': 'Red' is a category the model did not learn (read as unknown; learned: "
            "'blue', 'green', 'red')"]
    want = runtime.predict_proba([{"labs": {"x1": 2.1, "color": "purple"}}])[0]  # any unknown value: one bucket
    np.testing.assert_allclose([out["probabilities"][c] for c in "abc"], want, atol=1e-6)


@pytest.mark.parametrize("subset", [["notes"], ["labs"], ["image", "notes"], ["audio"]])
def test_any_subset_of_modalities(client, runtime, sample, subset):
    body = {k: (b64(v) if isinstance(v, bytes) else v) for k, v in sample.items() if k in subset}
    out = client.post("/predict", json=body).json()
    assert out["modalities"] == sorted(subset)
    want = runtime.predict_proba([{k: sample[k] for k in subset}])[0]
    np.testing.assert_allclose([out["probabilities"][c] for c in "abc"], want, atol=1e-6)


def test_blank_text_and_an_empty_table_are_missing_modalities_as_in_training(client, runtime, sample):
    body = {"image": b64(sample["image"]), "notes": "  ", "labs": {"x1": None, "color": ""}}
    out = client.post("/predict", json=body).json()
    assert out["modalities"] == ["image"]
    want = runtime.predict_proba([{"image": sample["image"]}])[0]
    np.testing.assert_allclose([out["probabilities"][c] for c in "abc"], want, atol=1e-6)
    np.testing.assert_allclose(runtime.predict_proba([{"image": sample["image"], "notes": "", "labs": {"x1": None}}])[0],
                               want, atol=1e-6)  # the Python runtime reads them alike
    explained = client.post("/explain", json=body).json()
    assert explained["contributions"]["notes"] == 0.0 and explained["contributions"]["labs"] == 0.0


def test_an_empty_file_is_a_missing_modality(client, runtime, sample):
    """A zero-byte part (what an HTML file input with no file chosen sends: filename="") or an empty
    base64 string is a missing modality, as a blank text is; it used to be refused with 415."""
    want = runtime.predict_proba([{"notes": sample["notes"]}])[0]
    no_file_chosen = (b'--XYZ\r\nContent-Disposition: form-data; name="image"; filename=""\r\n'
                      b"Content-Type: application/octet-stream\r\n\r\n\r\n"
                      b'--XYZ\r\nContent-Disposition: form-data; name="notes"\r\n\r\n' + sample["notes"].encode()
                      + b"\r\n--XYZ--\r\n")
    for kwargs, sent_empty in (
            ({"content": no_file_chosen, "headers": {"content-type": "multipart/form-data; boundary=XYZ"}}, []),
            ({"files": {"audio": ("a.wav", b"", "audio/wav"), "image": ("i.png", b"", "image/png")},
              "data": {"notes": sample["notes"]}}, ["audio", "image"]),
            ({"data": {"image": "", "notes": sample["notes"]}}, []),  # an empty field where a file goes
            ({"json": {"image": "", "audio": " \n", "notes": sample["notes"]}}, ["audio", "image"]),
            ({"json": {"image": "data:image/png;base64,", "notes": sample["notes"]}}, ["image"])):
        for route in ("/predict", "/explain"):
            response = client.post(route, **kwargs)
            assert response.status_code == 200, (kwargs, response.text)
            assert response.json()["modalities"] == ["notes"]
            np.testing.assert_allclose([response.json()["probabilities"][c] for c in "abc"], want, atol=1e-6)
            # a file sent empty is named (an HTML file input left unchosen, with no file name, is not)
            assert sorted(w for w in response.json()["warnings"] if "upload" in w) == [
                f"the upload for '{name}' is empty (0 bytes): read as absent" for name in sent_empty], kwargs
    for kwargs in ({"json": {"image": ""}}, {"files": {"image": ("", b"", "application/octet-stream")}}):
        error = client.post("/predict", **kwargs).json()["error"]  # nothing else given: no input at all
        assert error["code"] == "missing_input"
    error = client.post("/predict", files={"image": ("i.png", b"", "image/png")}).json()["error"]
    assert error["code"] == "missing_input" and error["message"].startswith(
        "no input given (the upload for 'image' is empty (0 bytes): read as absent); send at least one")


def test_audio_past_the_service_limit_names_the_option_and_what_the_model_reads(client):
    for audio in (wav_bytes(np.zeros(8000 * 2, np.float32)), flac_bytes(100.0)):
        response = client.post("/predict", json={"audio": b64(audio)})
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_long"
        assert re.fullmatch(r"modality 'audio' \(audio\): the audio (lasts [\d.]+ s, more than|is longer than) the "
                            r"service's --max-audio-seconds \(1 s\) \(the model reads 0\.25 s of it\)",
                            response.json()["error"]["message"]), response.json()["error"]["message"]


def test_base64_may_be_line_wrapped_or_a_data_url(client, runtime, sample):
    want = runtime.predict_proba([{"image": sample["image"], "audio": sample["audio"]}])[0]
    mime = base64.encodebytes(sample["audio"]).decode().replace("\n", "\r\n")  # 76-character lines, CRLF
    for image, audio in ((base64.encodebytes(sample["image"]).decode(), mime),
                         ("data:image/png;base64," + b64(sample["image"]), "data:audio/wav;base64,\n" + mime),
                         (" " + b64(sample["image"]) + "\n", "DATA:audio/x-wav;base64," + b64(sample["audio"]))):
        response = client.post("/predict", json={"image": image, "audio": audio})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose([response.json()["probabilities"][c] for c in "abc"], want, atol=1e-6)
    for value, says in (("not base64!", "spaces and line breaks are ignored"), (b64(sample["image"])[:-1], "data:"),
                        ("data:image/png," + b64(sample["image"]), "must be base64-encoded"),
                        ("data:image/png;base64" + b64(sample["image"]), "must be base64-encoded")):
        error = client.post("/predict", json={"image": value}).json()["error"]
        assert (error["code"], error["field"]) == ("bad_base64", "image") and says in error["message"], error


def test_a_flac_over_the_limit_is_refused_with_its_length_and_never_decoded_whole(client):
    from polymodal.deploy.features import read_wav

    samples, rate = read_wav(flac_bytes(100.0), max_seconds=1.0)
    assert rate == 8000 and samples.size == 8001  # one frame past the limit, not 800,000
    error = client.post("/predict", json={"audio": b64(flac_bytes(100.0))}).json()["error"]
    assert "lasts 100.0 s" in error["message"]


def test_explain_contributions_add_up(client, sample):
    out = client.post("/explain", json={"notes": sample["notes"], "labs": sample["labs"]}).json()
    contributions = out["contributions"]
    assert set(contributions) == {"audio", "image", "labs", "notes"}
    assert contributions["audio"] == 0.0 and contributions["image"] == 0.0  # not sent: no contribution
    assert out["score"] == pytest.approx(out["probabilities"][out["explained"]])
    assert out["base"] + sum(contributions.values()) == pytest.approx(out["score"], abs=1e-6)
    assert out["explained"] == out["prediction"]  # classification: the predicted class, named in words too
    assert out["explained_quantity"] == f"probability of the predicted class '{out['prediction']}'"


def test_explain_attributes_the_class_the_query_names(client, runtime, sample):
    """``?output=`` names a class that need not be the predicted one: its probability is explained."""
    body = {"notes": sample["notes"], "labs": sample["labs"]}
    predicted = client.post("/explain", json=body).json()["prediction"]
    other = next(c for c in ("a", "b", "c") if c != predicted)
    out = client.post("/explain", params={"output": other}, json=body).json()
    assert out["prediction"] == predicted and out["explained"] == other
    assert out["explained_quantity"] == f"probability of class '{other}'" == runtime.explained_quantity(other)
    assert out["score"] == pytest.approx(out["probabilities"][other])
    assert out["base"] + sum(out["contributions"].values()) == pytest.approx(out["score"], abs=1e-6)
    expected = runtime.explain([{"notes": sample["notes"], "labs": sample["labs"]}], output=other)[0]
    assert out["contributions"] == pytest.approx(dict(zip(runtime.names, expected.tolist())), abs=1e-6)
    error = client.post("/explain", params={"output": "d"}, json=body).json()["error"]
    assert error["code"] == "unknown_output" and "(classes) ['a', 'b', 'c']" in error["message"]


def big_png(side: int) -> bytes:
    return png_bytes(np.zeros((side, side), np.uint8))


def flac_bytes(seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """Silence as FLAC: a few kilobytes that decode into far more samples than a WAV of the same size."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((int(seconds * rate), channels), np.float32), rate, format="FLAC")
    return buffer.getvalue()


def lab_tiff() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("LAB", (4, 4)).save(buffer, format="TIFF")  # the served model reads gray: LAB -> L is refused
    return buffer.getvalue()


@pytest.mark.parametrize(("kwargs", "status", "code", "field"), [
    ({"json": {"image": b64(b"GIF89a" + b"\0" * 100)}}, 422, "corrupt_file", "image"),
    ({"files": {"image": ("notes.txt", b"hello there", "text/plain")}}, 415, "unsupported_type", "image"),
    ({"files": {"audio": ("x.mp3", b"ID3\x04\0\0\0\0", "audio/mpeg")}}, 415, "unsupported_type", "audio"),
    ({"json": {"image": b64(big_png(65))}}, 413, "too_many_pixels", "image"),
    ({"json": {"audio": b64(wav_bytes(np.zeros(8000 * 2, np.float32)))}}, 413, "too_long", "audio"),
    ({"json": {"notes": "word " * 30}}, 413, "too_long", "notes"),
    ({"json": {"labs": {"color": "r" * 101}}}, 413, "too_long", "color"),
    ({"json": {"image": "not base64!"}}, 422, "bad_base64", "image"),
    ({"json": {}}, 422, "missing_input", None),
    ({"data": {"unknown": "1"}}, 422, "unknown_field", "unknown"),
    ({"json": {"labs": {"x1": "twelve"}}}, 422, "bad_input", "labs"),
    ({"json": {"labs": {"height": 3}}}, 422, "unknown_field", "labs"),
    ({"json": [1, 2]}, 422, "malformed_body", None),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed_body", None),
    ({"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400, "malformed_body", None),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type", None),
    ({"content": b"x" * 200_001, "headers": {"content-type": "application/json"}}, 413, "too_large", None),
    ({"files": {"notes": ("a.txt", b"text as a file", "text/plain")}}, 422, "bad_input", "notes"),
    ({"json": {"audio": b64(flac_bytes(100.0))}}, 413, "too_long", "audio"),
    # within --max-audio-seconds, but 8 channels at 96 kHz: more samples than 192 kHz stereo would decode to
    ({"json": {"audio": b64(flac_bytes(0.9, 96_000, 8))}}, 413, "too_large", "audio"),
    ({"content": '{"n\u00f6tes\\ud800": "x"}'.encode(), "headers": {"content-type": "application/json"}}, 422,
     "unknown_field", "n\u00f6tes\ud800"),  # a lone surrogate in a key, quoted in the message: escaped, not a 500
    ({"content": b'{"notes": "red", "notes": ""}', "headers": {"content-type": "application/json"}}, 422,
     "duplicate_field", "notes"),
    ({"json": {"labs": {"x1": 10 ** 400}}}, 422, "bad_input", "labs"),
    ({"content": b'{"notes": ' + b"9" * 5000 + b"}", "headers": {"content-type": "application/json"}}, 400,
     "malformed_body", None),
    ({"json": {"x1": 1.0}}, 422, "unknown_field", "x1"),
    ({"json": {"image": b64(lab_tiff())}}, 415, "unsupported_type", "image"),
    ({"json": {"notes": "   ", "labs": {"x1": None, "color": ""}}}, 422, "missing_input", None),
])
def test_bad_requests_get_clear_4xx_json(client, kwargs, status, code, field):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["field"] == field
    assert len(error["message"]) > 20


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(client):
    def chunks():  # no Content-Length: the size is only known while reading
        for _ in range(3):
            yield b"x" * 100_000

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.request.headers.get("content-length") is None
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_large" and "200,000 bytes" in error["message"]


def test_an_unknown_field_is_answered_with_the_one_likely_meant(client):
    error = client.post("/predict", data={"nots": "red"}).json()["error"]
    assert error["message"].startswith("unknown field 'nots' (did you mean 'notes'?); this model accepts the "
                                       "modalities ['audio', 'image', 'labs', 'notes'] and its tables' columns ['color', 'x1']")
    error = client.post("/predict", data={"colour": "red"}).json()["error"]
    assert "unknown field 'colour' (did you mean 'color'?)" in error["message"]


def test_limit_messages_name_the_limit_and_the_value(client):
    error = client.post("/predict", json={"image": b64(big_png(65))}).json()["error"]["message"]
    assert "65x65 = 4,225 pixels" in error and "4,096" in error
    error = client.post("/predict", json={"labs": {"x1": "twelve"}}).json()["error"]["message"]
    assert "'x1'" in error and "twelve" in error
    error = client.post("/predict", content=b"x" * 200_001, headers={"content-type": "application/json"}).json()
    assert error["error"]["message"] == ("the request body has 200,001 bytes; at most 200,000 (0.190735 MiB) are "
                                         "allowed")  # the limit in the unit --max-request-mb takes


def test_outputs_that_are_not_numbers_predict_nothing(runtime, monkeypatch):
    """An input that overflows once scaled (a signal sample of 3e38) gives NaN outputs, whose argmax
    called the first class with null probabilities: the service answers 422, the runtime None."""
    width = max(task["outputs"][1] for task in runtime.tasks.values())
    monkeypatch.setattr(runtime, "run", lambda feeds: np.full((len(next(iter(feeds.values()))), width), np.nan,
                                                              np.float32))
    assert runtime.predict([{"notes": "red"}]) == [None]
    assert runtime.predict_records([{"notes": "red"}])[0]["prediction"] is None
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as c:
        response = c.post("/predict", json={"notes": "red"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_input"
    assert "not finite numbers" in response.json()["error"]["message"]


def test_no_rows_give_no_answers_without_running_the_graph(runtime):
    assert runtime.predict([]) == [] and runtime.predict_records([]) == []
    assert runtime.predict_proba([]).shape == (0, len(runtime.meta["classes"]))


@pytest.mark.parametrize("token", ["p\u00e4sswort", "two words", "tab\there"])
def test_a_token_no_header_could_carry_as_given_is_refused(token):
    """HTTP headers carry Latin-1: clients and the server spell a non-ASCII token differently, so it
    never matched and every request was refused."""
    with pytest.raises(ValueError, match="the bearer token must be printable ASCII without spaces"):
        ServeSettings(token=token)


def test_bearer_token(runtime, sample):
    with TestClient(create_app(runtime, ServeSettings(token=TOKEN)), base_url=LOCAL) as c:
        assert c.get("/health").status_code == 200  # open, for load balancers
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = c.post("/predict", json={"notes": "red"}, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/metadata").status_code == 401
        assert c.post("/predict", json={"notes": "red"}, headers=AUTH).status_code == 200
        assert c.get("/metadata", headers=AUTH).json()["auth"] is True


def test_with_a_token_the_schema_and_docs_pages_need_it_too(runtime):
    """The OpenAPI schema names the classes, modalities and columns /metadata keeps to token
    holders: it stayed open, and /docs and /redoc showed it."""
    with TestClient(create_app(runtime, ServeSettings(token=TOKEN)), base_url=LOCAL) as c:
        for path in ("/openapi.json", "/docs", "/redoc"):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = c.get(path, headers=headers)
                assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", path
                assert refused.headers["www-authenticate"] == "Bearer"
                assert "x1" not in refused.text and "labs" not in refused.text
            assert c.get(path, headers=AUTH).status_code == 200, path
        spec = c.get("/openapi.json", headers=AUTH).json()
        assert "x1" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"]["labs"]["properties"]
        assert "/openapi.json" not in spec["paths"] and "/docs" not in spec["paths"]  # still out of the schema
        assert c.get("/").status_code == 200 and c.get("/health").status_code == 200  # the page asks for the token
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as c:  # no token: all open, as before
        assert all(c.get(path).status_code == 200 for path in ("/openapi.json", "/docs", "/redoc"))


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "testserver",
                                  "192.168.1.5:8000", ""])
def test_a_loopback_service_refuses_requests_addressed_to_another_host(client, host):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 reads the loopback
    service as its own site, but its requests name evil.example as Host."""
    for method, path in (("GET", "/health"), ("GET", "/metadata"), ("GET", "/openapi.json"), ("GET", "/"),
                         ("GET", "/static-offline-docs/swagger-ui.css"), ("POST", "/predict")):
        refused = client.request(method, path, headers={"host": host}, json={"notes": "red"})
        assert refused.status_code == 400, (method, path, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "bad_host" and error["field"] == "Host"
        assert f"addressed to Host '{host}'" in error["message"] and "DNS rebinding" in error["message"]


def test_a_refused_host_is_told_the_loopback_address_with_the_port_the_service_listens_on():
    from polymodal.deploy.origins import refusal

    for host in ("evil.example", "evil.example:9000"):
        error = refusal("GET", {"host": host}, loopback=True, listening=8765)
        assert "Call it at http://127.0.0.1:8765/," in str(error), str(error)
    assert "Call it at http://127.0.0.1:9000/," in str(refusal("GET", {"host": "evil.example:9000"}, loopback=True))
    assert "Call it at http://127.0.0.1/," in str(refusal("GET", {"host": "evil.example"}, loopback=True, listening=80))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000",
                                  "127.0.0.2:80"])
def test_a_loopback_service_answers_requests_addressed_to_loopback(client, host):
    assert client.get("/health", headers={"host": host}).status_code == 200
    assert client.post("/predict", json={"notes": "red"}, headers={"host": host}).status_code == 200


def test_a_service_bound_elsewhere_answers_any_host(runtime):
    """Reached through its interface's address or a name, as a reverse proxy or a LAN client reaches it."""
    with TestClient(create_app(runtime, ServeSettings(host="0.0.0.0"))) as c:  # Host: testserver
        assert c.get("/health").status_code == 200 and c.get("/health", headers={"host": "models.lan"}).status_code == 200


def test_a_service_on_every_interface_guards_the_requests_that_arrive_on_loopback(runtime):
    """Bound to 0.0.0.0, it is reached on 127.0.0.1 too, where a page rebinding its name to
    127.0.0.1 arrives: what is checked is the address a request came in on, not the one bound. And
    ``create_app`` with its default settings, run by uvicorn on every interface, answers LAN clients."""
    for settings in (ServeSettings(host="0.0.0.0"), ServeSettings()):
        with TestClient(create_app(runtime, settings), base_url=LOCAL) as c:  # arrives on 127.0.0.1
            assert c.get("/health", headers={"host": "evil.example:8000"}).status_code == 400
        with TestClient(create_app(runtime, settings), base_url="http://192.168.1.20") as c:  # on the LAN address
            assert c.get("/health", headers={"host": "models.lan:8000"}).status_code == 200


@pytest.mark.parametrize(("origin", "forwarded", "status"), [
    (None, None, 200),  # curl, a script
    ("http://127.0.0.1:8000", None, 200),  # the service's own page at /
    ("https://evil.example", None, 403),
    ("http://127.0.0.1:9999", None, 403),  # another service on this machine is another site
    ("null", None, 403),  # a sandboxed frame or a file:// page
    ("https://models.example.com", "models.example.com", 200),  # behind a proxy that rewrites Host
    ("https://evil.example", "models.example.com", 403),
    ("https://models.example.com", "models.example.com:443", 200),  # a proxy that spells out the default port
])
def test_a_post_from_another_sites_page_is_refused(client, origin, forwarded, status):
    """A form on any site can post to the service (it cannot read the answer, but the model runs for it)."""
    headers = {"host": "127.0.0.1:8000"}
    headers.update({"origin": origin} if origin is not None else {})
    headers.update({"x-forwarded-host": forwarded} if forwarded is not None else {})
    response = client.post("/predict", data={"notes": "red"}, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        error = response.json()["error"]
        assert error["code"] == "cross_origin" and error["field"] == "Origin"
        assert f"from a page at Origin '{origin}' is refused" in error["message"]
    assert client.get("/metadata", headers=headers).status_code == 200  # reading: the browser keeps the answer from it


def test_concurrent_requests_are_micro_batched(client, runtime):
    texts = [f"{w} thing {i}" for i, w in enumerate(["red small", "green medium", "blue large"] * 8)]
    before = client.get("/health").json()
    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda t: client.post("/predict", json={"notes": t}).json(), texts))
    after = client.get("/health").json()
    assert after["requests"] - before["requests"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts)  # several requests shared a run
    assert after["largest_batch"] > 1
    want = runtime.predict_proba([{"notes": t} for t in texts])
    got = np.asarray([[o["probabilities"][c] for c in "abc"] for o in outs])
    np.testing.assert_allclose(got, want, atol=1e-6)  # each request got its own row back


def test_audio_at_another_rate_is_resampled(client, runtime):
    t = np.arange(16000 // 5) / 16000  # 0.2 s at 16 kHz; the model runs at 8 kHz
    wav16k = wav_bytes((0.4 * np.sin(2 * np.pi * 1300 * t)).astype(np.float32), rate=16000)
    samples, valid = runtime.features["audio"].decode(wav16k)
    assert valid == 1600 and samples.shape == (2000,)  # 0.2 s at 8 kHz, padded to max_seconds 0.25
    out = client.post("/predict", files={"audio": ("a.wav", io.BytesIO(wav16k), "audio/wav")})
    assert out.status_code == 200 and sum(out.json()["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_audio_as_a_npy_array_is_read_at_the_models_rate_and_limited(client, runtime):
    """Training and the runtime read a .npy of samples at the model's rate; the service refused it
    as an unsupported type."""
    samples = (0.4 * np.sin(2 * np.pi * 900 * np.arange(1600) / 8000)).astype(np.float32)  # 0.2 s at 8 kHz
    buffer = io.BytesIO()
    np.save(buffer, samples)
    out = client.post("/predict", files={"audio": ("a.npy", buffer.getvalue(), "application/octet-stream")})
    assert out.status_code == 200, out.text
    want = runtime.predict_proba([{"audio": (samples, 8000)}])[0]
    np.testing.assert_allclose([out.json()["probabilities"][c] for c in "abc"], want, atol=1e-6)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(8000 * 2, np.float32))  # 2 s at the model's rate: past --max-audio-seconds 1
    too_long = client.post("/predict", files={"audio": ("long.npy", buffer.getvalue(), "application/octet-stream")})
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "too_long"


def test_numbers_that_overflow_float32_are_refused(client):
    response = client.post("/predict", json={"labs": {"x1": 1e300}})
    assert response.status_code == 422 and "['x1'] are out of range" in response.json()["error"]["message"]


def multipart_body(*parts: tuple[str, bytes], closed: bool = True) -> dict:
    """``client.post`` arguments of a hand-made multipart body (boundary XYZ) of form fields."""
    body = b"".join(b'--XYZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
                    for name, value in parts)
    return {"content": body + (b"--XYZ--\r\n" if closed else b""),
            "headers": {"content-type": "multipart/form-data; boundary=XYZ"}}


def test_a_multipart_body_without_its_closing_boundary_is_malformed(client):
    """starlette drops a part the body never closes: it used to read as 'no input given' (422),
    or as a request without that field when an earlier part was complete."""
    assert client.post("/predict", **multipart_body(("notes", b"a blue large thing"))).status_code == 200
    for parts in ([("notes", b"a blue large thing")], [("notes", b"a blue large thing"), ("x1", b"2.1")]):
        response = client.post("/predict", **multipart_body(*parts, closed=False))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "malformed_body" and "closing boundary" in error["message"]


def test_a_multipart_charset_that_names_no_codec_is_refused(client):
    """starlette would read the body as Latin-1 instead."""
    body = multipart_body(("x1", b"2.1"), ("notes", b"caf\xc3\xa9 blue"))
    for charset, status in (("bogus", 415), ("utf-8", 200), ("UTF8", 200)):
        response = client.post("/predict", content=body["content"], headers={
            "content-type": f"multipart/form-data; boundary=XYZ; charset={charset}"})
        assert response.status_code == status, response.text
    error = client.post("/predict", content=body["content"], headers={
        "content-type": "multipart/form-data; boundary=XYZ; charset=bogus"}).json()["error"]
    assert error["code"] == "unsupported_charset" and "'bogus'" in error["message"]


@pytest.mark.parametrize("kwargs", [
    multipart_body(("x1", b"2.1"), ("notes", b"caf\xe9 blue")),  # Latin-1, not UTF-8
    {"content": b"x1=2.1&notes=caf%E9+blue", "headers": {"content-type": "application/x-www-form-urlencoded"}},
])
def test_a_form_field_that_is_not_utf8_is_refused_by_name(client, kwargs):
    response = client.post("/predict", **kwargs)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_encoding" and error["field"] == "notes" and "utf-8" in error["message"]
    assert client.post("/predict", **{**kwargs, "content": kwargs["content"].replace(b"\xe9", b"e").replace(
        b"%E9", b"e")}).status_code == 200  # the same body in UTF-8 is served


def test_an_image_pillow_refuses_as_a_bomb_is_too_many_pixels(client, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses past twice this: 20 x 20 = 400
    error = client.post("/predict", json={"image": b64(png_bytes(np.zeros((20, 20), np.uint8)))}).json()["error"]
    assert error["code"] == "too_many_pixels" and "decompression bomb" in error["message"]


def test_a_missing_serve_package_is_named(runtime, monkeypatch):
    import sys

    from polymodal.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "fastapi_offline", None)
    with pytest.raises(MissingDependencyError, match=r"'fastapi-offline'.*polymodal\[serve\]"):
        create_app(runtime)


def test_a_file_of_the_wrong_type_is_described_by_how_it_begins(client):
    """Text shows as text, binary as hex bytes: never a Python bytes literal."""
    text = client.post("/predict", files={"image": ("notes.txt", b"hello there", "text/plain")}).json()["error"]
    assert text["message"].endswith("got 11 bytes starting with text 'hello there'")
    mp3 = client.post("/predict", files={"audio": ("x.mp3", b"ID3\x04\0\0\0\0" + b"\x01" * 20, "audio/mpeg")})
    assert mp3.json()["error"]["message"].endswith("got 28 bytes starting with bytes 49 44 33 04 00 00 00 00 01 01 01 "
                                                   "01...")
    assert "b'" not in text["message"] and "b'" not in mp3.json()["error"]["message"]


@pytest.mark.parametrize(("field", "content", "seen"), [
    ("image", None, "a WAV audio file"),  # None: a real WAV
    ("image", b"fLaC\0\0\0\x22" + b"\0" * 30, "a FLAC audio file"),
    ("image", b"OggS\0\x02" + b"\0" * 30, "an OGG audio file"),
    ("audio", png_bytes(np.zeros((4, 4), np.uint8)), "a PNG image"),
    ("audio", b"\xff\xd8\xff\xe0\0\x10JFIF", "a JPEG image"),
    ("audio", b"GIF89a\x01\0\x01\0", "a GIF image"),
    ("audio", b"BM" + b"\0" * 20, "a BMP image"),
    ("audio", b"II*\0\x08\0\0\0", "a TIFF image"),
    ("image", b"\x93NUMPY\x01\0v\0{'descr': '<f4'}", "a NumPy array (.npy)"),
    ("image", b"%PDF-1.7\n%\xe2\xe3", "a PDF document"),
    ("image", b"PK\x03\x04\x14\0\0\0\x08\0", "a ZIP archive"),
    ("image", b"\0\0\0\x18ftypmp42\0\0\0\0", "an MP4/MOV video"),
    ("image", b"\x1aE\xdf\xa3\x9fB\x86\x81\x01", "a WebM/MKV video"),
])
def test_a_file_of_a_known_type_sent_to_the_wrong_field_is_named(client, sample, field, content, seen):
    """A WAV uploaded to the image field is said to look like a WAV audio file, beside what the field takes."""
    content = sample["audio"] if content is None else content
    response = client.post("/predict", files={field: ("upload", content, "application/octet-stream")})
    assert response.status_code == 415
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unsupported_type", field)
    assert f"unsupported file type for {field} modality '{field}': it looks like {seen}" in error["message"]
    assert f"and field '{field}' takes {field} files; accepted: {', '.join(accepted_types(field))}; got " in error["message"]
    assert error["message"].endswith(content_start(content))  # the bytes are still shown


def test_a_file_of_no_known_type_is_described_by_its_bytes_only(client):
    error = client.post("/predict", files={"image": ("notes.txt", b"hello there", "text/plain")}).json()["error"]
    assert "looks like" not in error["message"] and "; accepted: BMP, GIF" in error["message"]


def test_an_unreadable_number_is_served_as_missing_with_a_warning_under_on_error_missing(exported, tmp_path, sample):
    """A run trained with data.on_error: missing reads a table's '>200' as missing in Python; its
    service does the same, saying so in the answer's warnings (a form field, as curl -F sends it)."""
    import json
    import shutil

    folder = shutil.copytree(exported[0], tmp_path / "export")
    meta = json.loads((folder / "deploy.json").read_text())
    meta["on_error"] = "missing"
    (folder / "deploy.json").write_text(json.dumps(meta))
    with TestClient(create_app(Runtime.load(folder), ServeSettings()), base_url=LOCAL) as c:
        response = c.post("/predict", data={"notes": sample["notes"], "x1": ">200", "color": "red"})
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["warnings"] == ["modality 'labs', column 'x1' must be numeric; got '>200': read as missing "
                                   "(data.on_error: missing)"]
        assert out["modalities"] == ["labs", "notes"]
        blank = c.post("/predict", data={"notes": sample["notes"], "color": "red"}).json()
        assert blank["probabilities"] == pytest.approx(out["probabilities"], abs=1e-6)
        alone = c.post("/predict", data={"notes": sample["notes"], "x1": ">200"}).json()  # the table: nothing read
        assert alone["modalities"] == ["notes"] and "labs" in alone["absent"]
