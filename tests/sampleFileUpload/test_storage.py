"""The local storage: server-made keys, complete files or none, no temporary file left behind."""

import os

import pytest

from src.sampleFileUpload.storage import LocalStorage
from src.sampleFileUpload.utils import clean_filename, content_disposition


def files_under(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_save_moves_the_temporary_file_under_a_new_key(tmp_path):
    storage = LocalStorage(tmp_path)

    with storage.temp_file() as temp:
        temp.write_bytes(b"a,b\n")
        key = storage.save(temp)

    assert files_under(tmp_path) == [f"files/{key[:2]}/{key}"]
    with storage.open(key) as stored:
        assert stored.read() == b"a,b\n"


def test_a_temporary_file_not_saved_is_removed_even_on_failure(tmp_path):
    storage = LocalStorage(tmp_path)

    def failing_import() -> None:
        with storage.temp_file() as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("the import failed")

    with pytest.raises(RuntimeError):
        failing_import()

    assert files_under(tmp_path) == []


def test_a_failed_rename_leaves_only_the_temporary_file_which_is_then_removed(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)

    def failing_replace(*_args):
        raise OSError("disk full")

    def store() -> None:
        with storage.temp_file() as temp:
            temp.write_bytes(b"x")
            storage.save(temp)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store()

    assert files_under(tmp_path) == []


def test_delete_removes_and_tolerates_a_missing_file(tmp_path):
    storage = LocalStorage(tmp_path)
    with storage.temp_file() as temp:
        key = storage.save(temp)

    storage.delete(key)
    storage.delete(key)

    assert files_under(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        storage.open(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "a" * 31, "A" * 32, "/abs", ""])
def test_anything_but_a_key_it_made_is_refused(tmp_path, key):
    with pytest.raises(ValueError, match="not a storage key"):
        LocalStorage(tmp_path).open(key)


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
