"""JobSpecs for tests, one builder per model, with placeholder media URLs."""

from __future__ import annotations

from lipsync.jobs.v1 import jobs_pb2

P480 = jobs_pb2.RESOLUTION_480P
P720 = jobs_pb2.RESOLUTION_720P


def image_spec(
    image: str = "https://x/i.png",
    audio: str = "https://x/a.wav",
    resolution: jobs_pb2.Resolution.ValueType = P480,
) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        lipsync_image=jobs_pb2.LipsyncImageInputs(image=image, audio=audio), resolution=resolution
    )


def video_spec(
    video: str = "https://x/v.mp4",
    audio: str = "https://x/a.wav",
    resolution: jobs_pb2.Resolution.ValueType = P480,
) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        lipsync_video=jobs_pb2.LipsyncVideoInputs(video=video, audio=audio), resolution=resolution
    )


def multi_spec(
    order: jobs_pb2.Order.ValueType = jobs_pb2.ORDER_UNSPECIFIED,
    image: str = "https://x/two.png",
    left_audio: str = "https://x/l.wav",
    right_audio: str = "https://x/r.wav",
    resolution: jobs_pb2.Resolution.ValueType = P480,
) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        lipsync_image_multi=jobs_pb2.LipsyncImageMultiInputs(
            image=image, left_audio=left_audio, right_audio=right_audio, order=order
        ),
        resolution=resolution,
    )
