from __future__ import annotations

from pathlib import Path

from inference_service.storage import ResultStore


def test_a_result_is_moved_into_the_store_under_its_job_id(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    source = tmp_path / "out.mp4"
    source.write_bytes(b"mp4")
    key = store.put("job-1", source)
    assert key == "job-1.mp4"
    assert (tmp_path / "results" / key).read_bytes() == b"mp4"
    assert not source.exists()
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["job-1.mp4"]
