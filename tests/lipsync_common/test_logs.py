from __future__ import annotations

import json
import logging

from lipsync_common.logs import JsonFormatter, job_context


def render(record_msg: str, **fields: object) -> dict:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, record_msg, None, None)
    for key, value in fields.items():
        setattr(record, key, value)
    parsed: dict = json.loads(JsonFormatter("svc").format(record))
    return parsed


def test_a_log_line_is_one_json_object() -> None:
    entry = render("hello", fields={"port": 1})
    assert entry["msg"] == "hello" and entry["service"] == "svc" and entry["port"] == 1
    assert "job_id" not in entry


def test_the_job_id_of_the_context_is_carried() -> None:
    with job_context("job-1"):
        assert render("working")["job_id"] == "job-1"
    assert "job_id" not in render("after")
