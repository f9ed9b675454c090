"""The storage contract, for the local directory and for an S3-compatible store (a real S3 HTTP
API on loopback: moto's server mode): server-made keys, complete files or none, no temporary file
left behind, files streamed out, and the listing `prune` sweeps."""

import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from scripts.local_stack import free_port
from src.config import Settings
from src.exceptions import StorageUnavailable
from src.sampleFileUpload.storage import LocalStorage, S3Storage, Storage, storage_for
from src.sampleFileUpload.utils import clean_filename, content_disposition
from src.third_party.object_store import MULTIPART_BYTES, S3Location, S3ObjectStore
from tests.s3_server import S3_CREDENTIALS

HOUR = timedelta(hours=1)


def s3_storage(tmp_path, endpoint_url: str, bucket: str, prefix: str = "studybase/files/") -> S3Storage:
    store = S3ObjectStore(
        S3Location(bucket=bucket, prefix=prefix),
        endpoint_url=endpoint_url,
        credentials=S3_CREDENTIALS,
        max_attempts=1,
    )
    return S3Storage(store, temp_dir=tmp_path / "tmp")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path)
    s3_server = request.getfixturevalue("s3_server")
    return s3_storage(tmp_path, s3_server.endpoint_url, s3_server.new_bucket())


def stored_keys(storage: Storage) -> list[str]:
    return sorted(storage.keys_older_than(datetime.now(UTC) + HOUR))


def temp_files(storage: Storage) -> list[str]:
    return sorted(path.name for path in storage.temp_dir.glob("*")) if storage.temp_dir.exists() else []


def saved(storage: Storage, content: bytes) -> str:
    with storage.temp_file() as temp:
        temp.write_bytes(content)
        return storage.save(temp)


def test_save_stores_the_temporary_file_under_a_new_key(storage):
    with storage.temp_file() as temp:
        temp.write_bytes(b"a,b\n")
        key = storage.save(temp)

    assert stored_keys(storage) == [key]
    assert len(key) == 32
    assert int(key, 16) >= 0
    assert temp_files(storage) == []
    with storage.open(key) as stored:
        assert stored.read() == b"a,b\n"


def test_the_local_store_keeps_files_under_two_hex_digits_of_their_key(tmp_path):
    storage = LocalStorage(tmp_path)

    key = saved(storage, b"a,b\n")

    assert files_under(tmp_path) == [f"files/{key[:2]}/{key}"]


def test_a_temporary_file_not_saved_is_removed_even_on_failure(storage):
    def failing_import() -> None:
        with storage.temp_file() as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("the import failed")

    with pytest.raises(RuntimeError):
        failing_import()

    assert temp_files(storage) == []
    assert stored_keys(storage) == []


def test_a_failed_rename_leaves_only_the_temporary_file_which_is_then_removed(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)

    def failing_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        saved(storage, b"x")

    assert files_under(tmp_path) == []


def test_delete_removes_and_tolerates_a_missing_file(storage):
    key = saved(storage, b"")

    storage.delete(key)
    storage.delete(key)

    assert stored_keys(storage) == []
    with pytest.raises(FileNotFoundError):
        storage.open(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "a" * 31, "A" * 32, "/abs", "", "0" * 31 + "/"])
def test_anything_but_a_key_it_made_is_refused(storage, key):
    with pytest.raises(ValueError, match="not a storage key"):
        storage.open(key)
    with pytest.raises(ValueError, match="not a storage key"):
        storage.delete(key)


def test_a_stored_file_is_streamed_in_pieces_and_lines(storage):
    lines = [f"line {number} {'x' * (number % 700)}\n".encode() for number in range(3_000)]
    key = saved(storage, b"".join(lines))

    with storage.open(key) as stored:
        first = stored.read(100)
        rest = stored.read(64 * 1024)
    with storage.open(key) as stored:
        read_lines = list(stored)

    assert first + rest == b"".join(lines)[: 100 + 64 * 1024]
    assert read_lines == lines


def test_the_listing_has_only_files_older_than_the_cutoff(storage):
    key = saved(storage, b"x")

    assert list(storage.keys_older_than(datetime.now(UTC) - HOUR)) == []
    assert list(storage.keys_older_than(datetime.now(UTC) + HOUR)) == [key]


def test_old_temporary_files_are_removed_up_to_the_limit(storage):
    storage.temp_dir.mkdir(parents=True)
    for number in range(3):
        (storage.temp_dir / f"{number}.part").write_bytes(b"half an upload")

    assert storage.remove_temp_files_older_than(datetime.now(UTC) - HOUR, limit=10) == 0
    assert storage.remove_temp_files_older_than(datetime.now(UTC) + HOUR, limit=2) == 2
    assert len(temp_files(storage)) == 1


# The S3 store's own: multipart uploads, names in the bucket, a store that is away.


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(tmp_path, s3_server):
    bucket = s3_server.new_bucket()
    storage = s3_storage(tmp_path, s3_server.endpoint_url, bucket)
    block = os.urandom(1024 * 1024)
    size = 2 * MULTIPART_BYTES + 3 * len(block)

    with storage.temp_file() as temp:
        with temp.open("wb") as sink:
            for _ in range(size // len(block)):
                sink.write(block)
        key = storage.save(temp)

    head = s3_server.client.head_object(Bucket=bucket, Key=f"studybase/files/{key}")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    digest = hashlib.sha256()
    with storage.open(key) as stored:
        while chunk := stored.read(256 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()


def test_objects_are_named_by_prefix_and_key_and_others_in_the_bucket_are_not_listed(tmp_path, s3_server):
    bucket = s3_server.new_bucket()
    storage = s3_storage(tmp_path, s3_server.endpoint_url, bucket)
    s3_server.client.put_object(Bucket=bucket, Key="studybase/files/notes.txt", Body=b"not ours")
    s3_server.client.put_object(Bucket=bucket, Key=f"elsewhere/{'0' * 32}", Body=b"not ours")
    s3_server.client.put_object(Bucket=bucket, Key=f"studybase/files/sub/{'1' * 32}", Body=b"not ours")

    key = saved(storage, b"ours")

    assert f"studybase/files/{key}" in s3_server.object_names(bucket)
    assert stored_keys(storage) == [key]


def test_a_store_that_is_away_is_unavailable_and_leaves_no_temporary_file(tmp_path):
    storage = s3_storage(tmp_path, f"http://127.0.0.1:{free_port()}", "studybase")

    with pytest.raises(StorageUnavailable):
        saved(storage, b"a,b\n")
    with pytest.raises(StorageUnavailable):
        storage.open("0" * 32)
    with pytest.raises(StorageUnavailable):
        storage.delete("0" * 32)
    with pytest.raises(StorageUnavailable):
        stored_keys(storage)

    assert temp_files(storage) == []


def test_a_bucket_that_does_not_exist_is_unavailable(tmp_path, s3_server):
    storage = s3_storage(tmp_path, s3_server.endpoint_url, "no-such-bucket-here")

    with pytest.raises(StorageUnavailable):
        saved(storage, b"a,b\n")
    with pytest.raises(StorageUnavailable):
        stored_keys(storage)


# STORAGE_URL


def test_storage_url_picks_the_store(tmp_path):
    default = storage_for(None, upload_dir=tmp_path / "uploads")
    local = storage_for(f"file://{tmp_path.as_posix()}/elsewhere", upload_dir=tmp_path / "uploads")
    s3 = storage_for(
        "s3://bucket/some/prefix/", upload_dir=tmp_path / "uploads", endpoint_url="http://s3.test"
    )

    assert isinstance(default, LocalStorage)
    assert default.root == tmp_path / "uploads"
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "elsewhere"
    assert isinstance(s3, S3Storage)
    assert s3.store.location == S3Location(bucket="bucket", prefix="some/prefix/")
    assert s3.temp_dir == tmp_path / "uploads" / "tmp"  # this host's disk


@pytest.mark.parametrize(
    "url", ["s3://", "file://", "file://host/path", "ftp://bucket/x", "/plain/path", "s3:/bucket"]
)
def test_a_storage_url_that_names_no_store_is_refused(url):
    with pytest.raises(ValidationError, match="STORAGE_URL"):
        Settings(STORAGE_URL=url)


@pytest.mark.parametrize("url", ["minio:9000", "ftp://minio", "http://"])
def test_an_s3_endpoint_that_is_not_a_web_address_is_refused(url):
    with pytest.raises(ValidationError, match="S3_ENDPOINT_URL"):
        Settings(S3_ENDPOINT_URL=url)


def test_a_client_that_cannot_be_built_is_unavailable_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")  # as compose passes an unset variable

    with pytest.raises(StorageUnavailable):
        storage_for("s3://bucket", upload_dir=tmp_path)


def test_an_empty_storage_url_is_the_default():
    assert Settings(STORAGE_URL="", S3_ENDPOINT_URL=" ").STORAGE_URL is None


def files_under(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize(
    ("sent", "cleaned"),
    [
        ("C:\\Users\\me\\samples.csv", "samples.csv"),
        ("../../x.csv", "x.csv"),
        (".hidden.csv", "hidden.csv"),
        ("tab\there.csv", "tabhere.csv"),
        ("", "upload"),
        (None, "upload"),
        ("x" * 400, "x" * 255),
        # Cut to 255 characters, the name keeps its extension: the reader checks the content
        # against it, and a name cut inside its stem would claim an unknown type (415).
        ("a.b" + "x" * 400 + ".csv", "a.b" + "x" * 248 + ".csv"),
        ("y" * 300 + ".xlsx", "y" * 250 + ".xlsx"),
    ],
)
def test_clean_filename(sent, cleaned):
    assert clean_filename(sent) == cleaned


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name():
    assert content_disposition('Ä "quoted";.csv') == (
        "attachment; filename=\"A _quoted__.csv\"; filename*=UTF-8''%C3%84%20%22quoted%22%3B.csv"
    )
