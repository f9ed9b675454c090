"""A client that hangs up mid-upload or mid-download (issue 16, finding 9): an INFO event and 499 in
the access log, never an ERROR or a 500; nothing is sent to it, and nothing is left on disk."""

import uuid

import pytest

from tests import asgi
from tests.asgi import OneRequest, assert_logged_as_a_hang_up
from tests.sampleFileUpload.conftest import SAMPLE_FILES, files_url, sample_csv, stored_files, upload

request_log = asgi.request_log


def multipart_upload(content: bytes) -> tuple[bytes, str]:
    """A multipart body with one `file` part, and its content type."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def pieces_of(body: bytes, count: int, size: int = 16 * 1024) -> list[bytes]:
    return [body[start : start + size] for start in range(0, count * size, size)]


@pytest.mark.parametrize("pieces_sent", [0, 1, 7], ids=["before-the-body", "after-a-piece", "halfway"])
async def test_a_client_gone_mid_upload_is_logged_as_a_hang_up_and_leaves_nothing(
    app, alice_headers, study, request_log, pieces_sent
):
    body, content_type = multipart_upload(sample_csv(5_000))
    assert len(body) > 8 * 16 * 1024
    request = OneRequest(body_pieces=pieces_of(body, pieces_sent), hang_up_after_body=True)
    headers = {**alice_headers, "Content-Type": content_type, "X-Request-ID": "upload-left"}

    await request(app, "POST", files_url(study), headers=headers)

    assert request.sent == []  # the client is gone: nothing is sent
    assert assert_logged_as_a_hang_up(request_log, "upload-left")["response_status"] is None
    assert stored_files() == []


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_a_client_gone_mid_download_is_logged_as_a_hang_up(
    app, client, alice_headers, study, request_log, spec_version
):
    content = sample_csv(12_000)  # several chunks of the download
    file_id = (await upload(client, study, alice_headers, content)).json()["id"]
    request_log.clear()
    request = OneRequest(hang_up_after_chunks=1, spec_version=spec_version)
    headers = {**alice_headers, "X-Request-ID": "download-left"}

    await request(app, "GET", f"{SAMPLE_FILES}/{file_id}/content", headers=headers)

    assert request.status == 200
    assert 0 < len(request.body) < len(content)
    assert assert_logged_as_a_hang_up(request_log, "download-left")["response_status"] == 200
