"""Media I/O every task shares: from a file on disk to the batch the model sees.

* decoding: :func:`read_frames` (frame-exact, seeking; PyAV, torchcodec, decord, frame folders), :func:`video_info`,
  and the one image reader :func:`read_image` (:func:`image_size`)
* items: the :class:`Item` envelope every dataset item carries, :func:`collate_items`, and
  :class:`RetryingDataset` (what happens to an unreadable source, in one place)
* sampling: :func:`clip_indices` (the official dense and segment protocols)
* transforms: :class:`TrainTransform`, :class:`EvalTransform`, :class:`VideoMixup` and their parts
* datasets: :func:`read_video_list` (Kinetics, Something-Something V1/V2, UCF101, HMDB51, folder tree),
  :class:`VideoDataset`, :func:`collate_videos`, :class:`SkippedInputs`, :func:`build_video_dataset`,
  :func:`build_image_dataset`
* at scale: remote roots (any fsspec URL, :mod:`uniformer.data.remote`), WebDataset shards (:func:`write_shards`,
  read as ``format="webdataset"`` lists by :func:`read_shard_index`)
* tools: :func:`synthesize` (motion-defined synthetic videos), :func:`check_videos`; preparation at scale in
  :mod:`uniformer.data.prepare` (:func:`resize_videos`, :func:`extract_frames`, :func:`build_lists`)
"""

from uniformer.data.check import CheckReport, FileCheck, check_videos
from uniformer.data.datasets import (
    ClipItem,
    ImageDataset,
    SkippedInputs,
    VideoDataset,
    build_image_dataset,
    build_video_dataset,
    collate_videos,
    image_transform,
)
from uniformer.data.decode import (
    BACKENDS,
    VideoInfo,
    available_backends,
    backend_status,
    frame_folder_files,
    read_frames,
    video_info,
)
from uniformer.data.images import IMAGE_EXTENSIONS, DecodeError, image_size, read_image
from uniformer.data.items import Item, RetryingDataset, collate_items, envelope
from uniformer.data.lists import (
    FORMATS,
    IMAGE_FORMAT,
    LIST_FORMATS,
    ShardMember,
    VideoList,
    VideoRecord,
    read_classes,
    read_folder_tree,
    read_hmdb51,
    read_kinetics_list,
    read_shard_index,
    read_ssv1,
    read_ssv2,
    read_ucf101,
    read_video_list,
)
from uniformer.data.prepare import PrepareReport, build_lists, extract_frames, resize_videos
from uniformer.data.sampling import clip_indices
from uniformer.data.shards import write_shards
from uniformer.data.synth import MOTIONS, SynthResult, render_clip, synthesize, write_video
from uniformer.data.transforms import (
    DEFAULT_RAND_AUGMENT,
    IMAGE_RAND_AUGMENT,
    ClipRandAugment,
    ClipRandomErasing,
    EvalTransform,
    RandomShortSideScale,
    TrainTransform,
    VideoMixup,
    normalize,
    short_side_resize,
    uniform_crop,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_RAND_AUGMENT",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMAT",
    "IMAGE_RAND_AUGMENT",
    "LIST_FORMATS",
    "PrepareReport",
    "MOTIONS",
    "CheckReport",
    "ClipItem",
    "ImageDataset",
    "Item",
    "ClipRandAugment",
    "ClipRandomErasing",
    "DecodeError",
    "EvalTransform",
    "FileCheck",
    "RandomShortSideScale",
    "RetryingDataset",
    "ShardMember",
    "SkippedInputs",
    "SynthResult",
    "TrainTransform",
    "VideoDataset",
    "VideoInfo",
    "VideoList",
    "VideoMixup",
    "VideoRecord",
    "available_backends",
    "backend_status",
    "build_image_dataset",
    "build_lists",
    "build_video_dataset",
    "check_videos",
    "clip_indices",
    "collate_items",
    "collate_videos",
    "envelope",
    "extract_frames",
    "frame_folder_files",
    "image_size",
    "image_transform",
    "normalize",
    "read_classes",
    "read_folder_tree",
    "read_frames",
    "read_hmdb51",
    "read_image",
    "read_kinetics_list",
    "read_shard_index",
    "read_ssv1",
    "read_ssv2",
    "read_ucf101",
    "read_video_list",
    "render_clip",
    "resize_videos",
    "short_side_resize",
    "synthesize",
    "uniform_crop",
    "video_info",
    "write_shards",
    "write_video",
]
