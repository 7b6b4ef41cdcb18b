"""Property-based tests of the HTTP API: whatever a client sends, the answer is never a 5xx, and
every error is the documented JSON shape with a 4xx status."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings
from polymodal.utils.suggest import did_you_mean

from .helpers import LOCAL, png_bytes, wav_bytes

FIELDS = ["image", "audio", "notes", "labs", "x1", "color", "other"]
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x24\0\0\0WAVE", b"fLaC", b"OggS",
         b"\x93NUMPY", b"II*\x00"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(exported):
    app = create_app(Runtime.load(exported[0]), ServeSettings(max_request_bytes=100_000, max_image_pixels=128 * 128,
                                                              max_audio_seconds=2.0, max_wait_ms=1))
    with TestClient(app, base_url=LOCAL) as c:
        yield c


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)
# file-like payloads: a known file signature followed by random bytes, valid small files, or noise
payloads = st.one_of(
    st.builds(lambda m, rest: m + rest, st.sampled_from(MAGIC), st.binary(max_size=300)),
    st.just(png_bytes(__import__("numpy").zeros((4, 4), "uint8"))),
    st.just(wav_bytes(__import__("numpy").zeros(800, "float32"))),
)
json_bodies = st.dictionaries(
    st.sampled_from(FIELDS),
    json_values | payloads.map(lambda b: base64.b64encode(b).decode()),
    max_size=5,
) | json_values


def check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "field"} and error["message"]


@SETTINGS
@given(body=json_bodies)
def test_json_bodies_never_500(client, body):
    check(client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"}))


@SETTINGS
@given(files=st.dictionaries(st.sampled_from(FIELDS), payloads, max_size=3),
       fields=st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=40), max_size=3))
def test_multipart_bodies_never_500(client, files, fields):
    check(client.post("/predict", files={k: ("f", v, "application/octet-stream") for k, v in files.items()},
                      data=fields))


@SETTINGS
@given(body=st.binary(max_size=400), content_type=st.sampled_from(
    ["application/json", "multipart/form-data; boundary=xyz", "multipart/form-data", "text/plain",
     "application/x-www-form-urlencoded", ""]), route=st.sampled_from(["/predict", "/explain"]))
def test_raw_bytes_never_500(client, body, content_type, route):
    check(client.post(route, content=body, headers={"content-type": content_type} if content_type else {}))


@SETTINGS
@given(body=json_bodies)
def test_explain_never_500(client, body):
    check(client.post("/explain", content=json.dumps(body), headers={"content-type": "application/json"}))


@SETTINGS
@given(params=st.lists(st.tuples(st.sampled_from(["output", "Output", "x"]) | st.text(max_size=8),
                                 st.sampled_from(["a", "b", "c", ""]) | st.text(max_size=12)), max_size=3),
       route=st.sampled_from(["/predict", "/explain"]))
def test_query_parameters_are_honoured_refused_or_ignored_by_the_rule(client, params, route):
    """``/explain`` takes one ``output`` naming a class; ``output`` elsewhere, or a near miss of it
    (``Output``), is a 422, not ignored; any other name (a cache-buster) is ignored."""
    response = client.post(route, params=params, json={"notes": "a blue large thing"})
    check(response)
    allowed = ["output"] if route == "/explain" else []
    misplaced = [k for k, _ in params if k not in allowed and (k == "output" or did_you_mean(k, ["output"]))]
    outputs = [v for k, v in params if k in allowed]
    if misplaced or len(outputs) > 1 or (outputs and outputs[0] not in ("a", "b", "c")):
        assert response.status_code == 422, response.text
    else:
        assert response.status_code == 200, response.text
        if outputs:
            assert response.json()["explained"] == outputs[0]
