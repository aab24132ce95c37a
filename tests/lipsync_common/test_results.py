from __future__ import annotations

from pathlib import Path

import pytest

from lipsync_common.results import ResultStore


def test_a_result_is_moved_into_the_store_under_its_job_id(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    source = tmp_path / "out.mp4"
    source.write_bytes(b"mp4")
    key = store.put("job-1", source)
    assert key == "job-1.mp4"
    assert (tmp_path / "results" / key).read_bytes() == b"mp4"
    assert not source.exists()
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["job-1.mp4"]


def test_delete_removes_the_object_once(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    source = tmp_path / "out.mp4"
    source.write_bytes(b"mp4")
    key = store.put("job-1", source)
    assert store.delete(key) is True
    assert store.delete(key) is False
    assert list((tmp_path / "results").iterdir()) == []


def test_delete_refuses_a_key_that_leaves_the_store(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    (tmp_path / "secret").write_bytes(b"x")
    for key in ("../secret", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            store.delete(key)
    assert (tmp_path / "secret").exists()
