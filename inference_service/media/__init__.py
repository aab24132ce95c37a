"""Media probing, decoding and MP4 encoding for the inference service (no RPC, no messaging)."""

from inference_service.media.audio import load_audio, load_audio_mono
from inference_service.media.encode import EncodeStats, Mp4Writer, encode_mp4, even_size
from inference_service.media.errors import FaceTooSmallError, MediaError, NoFaceError
from inference_service.media.image import load_image_bgr
from inference_service.media.probe import (
    AudioInfo,
    ImageInfo,
    OutputInfo,
    VideoInfo,
    probe_audio,
    probe_image,
    probe_output,
    probe_video,
)

__all__ = [
    "AudioInfo",
    "EncodeStats",
    "FaceTooSmallError",
    "ImageInfo",
    "MediaError",
    "Mp4Writer",
    "NoFaceError",
    "OutputInfo",
    "VideoInfo",
    "encode_mp4",
    "even_size",
    "load_audio",
    "load_audio_mono",
    "load_image_bgr",
    "probe_audio",
    "probe_image",
    "probe_output",
    "probe_video",
]
