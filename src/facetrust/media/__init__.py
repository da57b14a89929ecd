"""Safe media decoding: images and video frames as upright ``HxWx3`` uint8 RGB arrays.

Formats are decided by content, limits are checked before decoding, and every failure is a
:class:`~facetrust.errors.MediaError` (or :class:`~facetrust.errors.InputError` for a wrong
argument) with a one-line message.
"""

from facetrust.media.image import ImageLimits, decode_image, load_image
from facetrust.media.sniff import IMAGE_SUFFIXES, VIDEO_SUFFIXES, sniff_kind, sniff_path
from facetrust.media.video import VideoFrame, VideoInfo, probe_video, read_video_frames

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "ImageLimits",
    "VideoFrame",
    "VideoInfo",
    "decode_image",
    "load_image",
    "probe_video",
    "read_video_frames",
    "sniff_kind",
    "sniff_path",
]
