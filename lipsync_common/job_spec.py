"""The REST names of the job vocabulary, read off the protos' descriptors.

`protos/lipsync/jobs/v1/jobs.proto` defines the vocabulary once: a job's
model is the case of `JobSpec.inputs` that is set, and its REST name is that
case's name with dashes; resolutions and orders are enums whose value names
give the REST words (`RESOLUTION_480P` is `480p`, `ORDER_LEFT_RIGHT` is
`left_right`). Everything here is derived from those descriptors, so a new
model or enum value needs no edit in this file.
"""

from __future__ import annotations

from google.protobuf.descriptor import EnumDescriptor

from lipsync.jobs.v1 import jobs_pb2

_INPUTS = jobs_pb2.JobSpec.DESCRIPTOR.oneofs_by_name["inputs"]


def _enum_names(descriptor: EnumDescriptor, prefix: str) -> dict[int, str]:
    return {
        value.number: value.name.removeprefix(prefix).lower()
        for value in descriptor.values
        if value.number != 0
    }


# The oneof case (field name) of each model, keyed by its REST name.
MODEL_CASES: dict[str, str] = {field.name.replace("_", "-"): field.name for field in _INPUTS.fields}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_CASES)

RESOLUTION_NAMES: dict[int, str] = _enum_names(jobs_pb2.Resolution.DESCRIPTOR, "RESOLUTION_")
RESOLUTIONS_BY_NAME: dict[str, int] = {name: value for value, name in RESOLUTION_NAMES.items()}

ORDER_NAMES: dict[int, str] = _enum_names(jobs_pb2.Order.DESCRIPTOR, "ORDER_")
ORDERS_BY_NAME: dict[str, int] = {name: value for value, name in ORDER_NAMES.items()}

STATUS_NAMES: dict[int, str] = _enum_names(jobs_pb2.JobStatus.DESCRIPTOR, "JOB_STATUS_")
STATUSES_BY_NAME: dict[str, int] = {name: value for value, name in STATUS_NAMES.items()}

STAGE_NAMES: dict[int, str] = _enum_names(jobs_pb2.JobStage.DESCRIPTOR, "JOB_STAGE_")


def model_name(spec: jobs_pb2.JobSpec) -> str:
    """The REST name of the spec's model (`lipsync-image`), or "" when none is set."""
    case = spec.WhichOneof("inputs")
    return case.replace("_", "-") if case else ""


def resolution_name(spec: jobs_pb2.JobSpec) -> str:
    """`480p` or `720p`; "" when unset."""
    return RESOLUTION_NAMES.get(spec.resolution, "")
