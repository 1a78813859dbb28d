"""What a client is told of a failure nobody foresaw: where, its type and an id, never its text
(``errors.unexpected``, ``deployments.failures.as_pipeline_error``)."""

from __future__ import annotations

import logging
import re

import ray.exceptions

from deployments.failures import as_pipeline_error
from pose_pipeline.errors import InternalError, JobError, from_dict, unexpected

#: What an error's text may carry and a client must never see.
LEAKS = re.compile(r"Traceback|\x1b\[|pid=|ip=|\d+\.\d+\.\d+\.\d+|/site-packages/|/home/|File \"")


def test_an_unexpected_error_says_where_and_gives_an_id_the_log_has(caplog):
    cause = OSError(28, "No space left on device: '/data/pose-pipeline/jobs/x/result.json.partial'")
    with caplog.at_level(logging.ERROR):
        error = unexpected(cause, "the Aggregation deployment (result)")
    assert isinstance(error, InternalError) and error.code == "internal_error" and error.status == 500
    assert error.stage == "the Aggregation deployment (result)" and re.fullmatch(r"[0-9a-f]{12}", error.error_id or "")
    assert "OSError" in error.message and error.error_id in error.message and "/data" not in error.message
    assert any(error.error_id in record.getMessage() and record.exc_info for record in caplog.records)
    again = from_dict(JobError.of(error).to_dict())  # through a job's record and back
    assert isinstance(again, InternalError) and again.error_id == error.error_id


def test_a_replica_s_traceback_stays_in_the_log():
    """A real RayTaskError as Ray raises it in the ingress: colour codes, the replica's pid and
    address, paths into site-packages in its text."""
    traceback_text = ("\x1b[36mray::ServeReplica:pose:Aggregation.finalize()\x1b[39m (pid=4242, ip=10.1.2.3)\n"
                      'Traceback (most recent call last):\n  File "/usr/lib/python3/site-packages/x.py", line 1\n'
                      "OSError: [Errno 28] No space left on device")
    raised = ray.exceptions.RayTaskError("finalize", traceback_text, OSError(28, "No space left on device"),
                                         pid=4242, ip="10.1.2.3")
    error = as_pipeline_error(raised, "the Aggregation deployment (result)")
    assert isinstance(error, InternalError) and error.stage == "the Aggregation deployment (result)"
    body = str(error.to_dict())
    assert not LEAKS.search(body), body
    assert "OSError" in error.message


def test_a_dead_worker_s_error_keeps_ray_s_words_without_the_cluster_s_details():
    """``worker_died`` and ``out_of_memory`` carry the first line of Ray's text (``ray_error``)."""
    from deployments.failures import _first_line

    died = ("\x1b[36mThe actor died unexpectedly before finishing this task.\x1b[39m (pid=4242, ip=10.1.2.3) "
            "worker_id=abc\nmore")
    memory = ("Task was killed due to the node running low on memory. Memory on the node (IP: 10.0.0.1, ID: 3f) "
              "was 23 GB")
    assert _first_line(died) == "The actor died unexpectedly before finishing this task."
    assert _first_line(memory) == "Task was killed due to the node running low on memory. Memory on the node was 23 GB"
    error = as_pipeline_error(ray.exceptions.ActorDiedError())  # Ray's own exception and text
    assert error.code == "worker_died" and not LEAKS.search(str(error.to_dict()))
