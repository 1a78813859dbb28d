"""Hostile input, generated: every option and header the API parses, with values chosen by
Hypothesis, against the real app in this process (``local_api``: the real service, stages
and store). Whatever a client sends, the answer is never a 5xx: a bad input gets a typed
4xx whose body ``errors.from_dict`` reads back as the type of its status, and a good one
is accepted.

The cases first found by hand (``start_s=1e308``, ``end_s=inf``, a 5,000-character
multipart boundary) are pinned as explicit examples, so they run on every run.
"""

from __future__ import annotations

import string
from urllib.parse import quote
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pose_pipeline.errors import ERRORS_BY_CODE, from_dict

TOKEN = "hostile-token"
#: Codes the web framework answers with, in the same JSON shape (docs/api.md, Errors).
FRAMEWORK_CODES = {"not_found": 404, "method_not_allowed": 405}
# Examples per property: the whole module takes some 20 s on two cores.
FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

OPTION_NAMES = ["engine", "fps", "max_side", "start_s", "end_s", "formats", "filename", "upload"]


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def app(local_api, tmp_module):
    # A queue deep enough that no example is refused for load (503 is a 5xx: it must come
    # only from load, which this test does not make).
    return local_api({"store": {"root": str(tmp_module / "store")}, "auth": {"tokens": [TOKEN]},
                      "limits": {"max_body_bytes": 200_000, "max_upload_bytes": 400_000, "max_part_bytes": 50_000},
                      "jobs": {"max_running": 2, "max_queued": 100_000, "ttl_s": 60},
                      "decode": {"max_side": None}},
                     headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def clip(media, tmp_module) -> bytes:
    """A tiny real video (2 s at 4 fps): a job of it takes milliseconds."""
    return media.write_video(tmp_module / "tiny.mp4", size=(32, 32), fps=4, frames=8).read_bytes()


def assert_typed(response: httpx.Response, *accepted: int) -> dict[str, Any] | None:
    """No 5xx; a 4xx is the error of a known type, with that type's status."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code in accepted:
        return response.json()
    assert response.status_code >= 400, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if error["code"] in FRAMEWORK_CODES:
        assert FRAMEWORK_CODES[error["code"]] == response.status_code
    else:
        assert error["code"] in ERRORS_BY_CODE, error
        assert from_dict(error).status == response.status_code, error
    return None


# --- values a client may type --------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-10**40, max_value=10**40).map(str),
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e308", "1e309", "-0", "0x10", "1_000",
                     " 5 ", "", "5.", ".5", "1e-320", "９"]),
)
texts = st.text(max_size=300)
option_values = st.one_of(numbers, texts, st.sampled_from(["json", "npz", "json,npz", "json,json", ",", "",
                                                           "motion", "phalp", "../../etc/passwd"]))
options = st.dictionaries(st.one_of(st.sampled_from(OPTION_NAMES), st.text(min_size=1, max_size=20)),
                          option_values, max_size=5)


def _header_bytes(max_size: int = 300) -> st.SearchStrategy[bytes]:
    """Any bytes a header value can carry (no CR, LF or NUL: the client refuses those)."""
    return st.binary(max_size=max_size).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))


# --- properties -----------------------------------------------------------------------------


@FAST
@given(query=options)
@example(query={"start_s": "1e308"})
@example(query={"end_s": "inf"})
@example(query={"fps": "nan"})
@example(query={"formats": ""})
@example(query={"formats": "json,json"})
@example(query={"start_s": "30"})  # past the end of the 2 s clip
@pytest.mark.slow
def test_any_query_options_get_a_typed_answer(app, clip, query):
    response = app.post("/v1/jobs", params=query, content=clip, headers={"Content-Type": "video/mp4"})
    assert_typed(response, 202)


@FAST
@given(query=options)
@example(query={"start_s": "1e308"})
def test_any_options_of_the_sync_endpoint_get_a_typed_answer(app, clip, query):
    response = app.post("/v1/track", params={**query, "formats": "json"}, content=clip,
                        headers={"Content-Type": "video/mp4"})
    assert_typed(response, 200)


boundaries = st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "'()+_,-./:=? ", min_size=1,
                                max_size=5000), st.just("b" * 5000))


@FAST
@given(boundary=boundaries, fields=options, filename=st.text(max_size=200),
       quoted=st.booleans(), extra=_header_bytes(100))
@example(boundary="x" * 5000, fields={}, filename="a.mp4", quoted=False, extra=b"")
@pytest.mark.slow
def test_any_multipart_body_gets_a_typed_answer(app, clip, boundary, fields, filename, quoted, extra):
    crlf = b"\r\n"
    marker = b"--" + boundary.encode()
    body = b""
    for name, value in fields.items():
        body += (marker + crlf + b'Content-Disposition: form-data; name="' + name.encode() + b'"' + crlf + crlf
                 + value.encode() + crlf)
    body += (marker + crlf + b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"'
             + extra + crlf + b"Content-Type: video/mp4" + crlf + crlf + clip + crlf + marker + b"--" + crlf)
    value = f'"{boundary}"' if quoted else boundary
    response = app.post("/v1/jobs", content=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={value}".encode()})
    assert_typed(response, 202)


@FAST
@given(content_type=_header_bytes(), content_length=st.one_of(st.none(), _header_bytes(30),
                                                              st.integers(-10**20, 10**20).map(str)))
@example(content_type=b"multipart/form-data; boundary=" + b"q" * 5000, content_length=None)
@example(content_type=b"video/mp4", content_length="abc")
@example(content_type=b"video/mp4", content_length="-1")
def test_any_content_type_and_length_get_a_typed_answer(app, clip, content_type, content_length):
    headers: dict[str, Any] = {"Content-Type": content_type}
    if content_length is not None:
        headers["Content-Length"] = content_length
    try:
        response = app.post("/v1/jobs", content=clip, headers=headers)
    except httpx.LocalProtocolError:  # the client itself refused to send such a header
        return
    assert_typed(response, 202)


@FAST
@given(size=st.one_of(st.none(), numbers), offsets=st.lists(st.one_of(numbers, st.integers(-5, 500_000)),
                                                              max_size=4),
       lengths=st.lists(st.one_of(st.none(), _header_bytes(25)), max_size=4), part=st.integers(0, 60_000))
@pytest.mark.slow
def test_any_upload_in_parts_gets_typed_answers(app, clip, size, offsets, lengths, part):
    created = app.post("/v1/uploads", params={} if size is None else {"size": size, "filename": "x.mp4"})
    upload = assert_typed(created, 201)
    if upload is None:
        return
    url = f"/v1/uploads/{upload['id']}"
    data = (clip * (part // len(clip) + 1))[:part]
    for offset, length in zip(offsets, lengths + [None] * len(offsets)):
        headers = {} if length is None else {"Content-Length": length}
        try:
            response = app.put(url, params={"offset": offset}, content=data, headers=headers)
        except httpx.LocalProtocolError:
            continue
        assert_typed(response, 200)
    assert_typed(app.get(url), 200)
    assert_typed(app.post("/v1/jobs", params={"upload": upload["id"]}), 202)
    assert_typed(app.delete(url), 200)


@FAST
@given(authorization=_header_bytes())
@example(authorization="Bearer hostile-tökén".encode("latin-1"))
@example(authorization=b"Bearer \xff\xfe")
def test_any_authorization_header_gets_a_typed_answer(app, clip, authorization):
    response = app.get("/v1/jobs/" + "0" * 32, headers={"Authorization": authorization})
    assert_typed(response)
    assert response.status_code == 401 or authorization == f"Bearer {TOKEN}".encode()


@FAST
@given(filename=st.text(max_size=400), multipart=st.booleans())
@example(filename="a\x00b.mp4", multipart=False)
@example(filename="../" * 100 + "x" * 1000, multipart=True)
@pytest.mark.slow
def test_any_file_name_is_kept_as_a_printable_base_name(app, clip, filename, multipart):
    if multipart:
        response = app.post("/v1/jobs", files={"file": (filename or "f", clip, "video/mp4")})
    else:
        response = app.post("/v1/jobs", params={"filename": filename}, content=clip,
                            headers={"Content-Type": "video/mp4"})
    job = assert_typed(response, 202)
    if job is not None:
        kept = job["filename"]
        assert kept and kept.isprintable() and "/" not in kept and len(kept) <= 255, kept


@FAST
@given(job_id=st.text(alphabet=string.printable, max_size=80), fmt=option_values)
@pytest.mark.slow
def test_any_job_id_and_result_format_get_a_typed_answer(app, job_id, fmt):
    job_id = quote(job_id, safe="")  # any character, as a client would escape it
    for response in (app.get(f"/v1/jobs/{job_id}"), app.get(f"/v1/jobs/{job_id}/result", params={"format": fmt}),
                     app.delete(f"/v1/jobs/{job_id}"), app.get(f"/v1/uploads/{job_id}")):
        assert_typed(response, 200)


# --- the findings, answer by answer ----------------------------------------------------------


def _jobs_on_disk(tmp_module: Path) -> int:
    return len(list((tmp_module / "store" / "jobs").iterdir()))


@pytest.mark.parametrize(("query", "status", "code", "says"), [
    ({"start_s": "1e308"}, 422, "invalid_option", "start_s (1e+308 s) is not before the end of the video"),
    ({"end_s": "inf"}, 422, "invalid_option", "end_s: must be a finite number"),
    ({"fps": "nan"}, 422, "invalid_option", "fps: is not a number"),
    ({"fps": "-nan"}, 422, "invalid_option", "fps: is not a number"),
    ({"fps": "1e309"}, 422, "invalid_option", "fps: must be a finite number"),
    ({"formats": ""}, 422, "invalid_option", "formats: must name at least one format"),
    ({"formats": ","}, 422, "invalid_option", "formats: must name at least one format"),
    ({"formats": "json,json"}, 422, "invalid_option", "formats: names json more than once"),
    ({"formats": "npz, json,npz"}, 422, "invalid_option", "formats: names npz more than once"),
    ({"start_s": "30"}, 422, "invalid_option", "start_s (30.0 s) is not before the end of the video (2.000 s)"),
    ({"start_s": "2"}, 422, "invalid_option", "is not before the end of the video"),
])
def test_bad_options_are_refused_at_submission_with_what_is_wrong(app, clip, tmp_module, query, status, code, says):
    before = _jobs_on_disk(tmp_module)
    response = app.post("/v1/jobs", params=query, content=clip, headers={"Content-Type": "video/mp4"})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert says in response.json()["error"]["message"], response.text
    assert _jobs_on_disk(tmp_module) == before  # refused before the job existed


def test_a_multipart_boundary_longer_than_the_parser_takes_is_a_400(app, clip):
    boundary = "x" * 5000
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\n".encode() + clip
    response = app.post("/v1/jobs", content=body + f"\r\n--{boundary}--\r\n".encode(),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request"), response.text
    assert "boundary" in response.json()["error"]["message"].lower()


@pytest.mark.parametrize(("query", "form", "kept"), [
    ({"filename": "query.mp4"}, {"filename": "form.mp4"}, "query.mp4"),
    ({}, {"filename": "form.mp4"}, "form.mp4"),
    ({}, {}, "part.mp4"),
])
def test_the_name_of_a_multipart_upload_query_over_form_field_over_the_files_own(app, clip, query, form, kept):
    # docs/api.md, Submitting a video: the same precedence as every option.
    response = app.post("/v1/jobs", params=query, data=form, files={"file": ("part.mp4", clip, "video/mp4")})
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == kept
