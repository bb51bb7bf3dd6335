"""The one image reader: a file to a ``(3, H, W)`` uint8 RGB tensor, turned upright as its EXIF tag says.

Which library decodes what (chosen by the file's first bytes, not its name):

* JPEG and PNG: ``torchvision.io.decode_image`` (libjpeg-turbo, libpng), which also applies the EXIF orientation.
  For 8-bit files its pixels are PIL's (the same libjpeg-turbo defaults: integer IDCT, fancy upsampling), so a
  result does not depend on which library read the file.
* everything else PIL opens (WebP, GIF (its first frame), BMP, TIFF, ...): PIL, oriented by
  ``ImageOps.exif_transpose``. torchvision reads neither TIFF nor BMP, and applies no EXIF orientation to WebP.

Whichever library decodes, the result is converted the same way:

* grayscale is repeated to three channels; a palette image is looked up;
* an alpha channel is dropped, not composited onto a background (as PIL's ``convert("RGB")``, and hence timm's and
  torchvision's datasets, do);
* 16 bits per channel become 8 by keeping the high byte (``v >> 8``, torchvision's ``to_dtype(scale=True)`` and
  PIL's own 16-bit RGB reading): 65535 -> 255, 0 -> 0. A 16-bit grayscale PNG or TIFF is scaled, not clipped;
* CMYK (JPEG or TIFF) is converted to RGB.

Pixel limit: an image with more pixels than PIL's ``Image.MAX_IMAGE_PIXELS`` (its decompression-bomb limit, about
179 million by default; set it higher, or to ``None``, to read larger images) is refused from its header, before
anything is decoded, whichever library would decode it: a small file can declare a size whose pixels fill the memory.

torchvision 0.29 deprecates its image codecs in favour of torchcodec's; its warning is silenced around the one call
that uses them.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "DecodeError", "image_files", "image_size", "read_image", "read_label_map"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""What a folder walk counts as an image file (frame folders, image splits, segmentation pairs)."""

_TORCHVISION_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # PIL's 32-bit "I" holds 16-bit data
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112
_SOURCE_LOCATION = re.compile(r"^[\w()]+, \S+:\d+, ")


class DecodeError(ValueError):
    """A video, frame folder or image exists but cannot be read: truncated, empty, not that kind of file, or a
    frame index out of range.

    A ``ValueError`` so that the command line reports it as one ``error:`` line naming the file.
    """


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """The image at ``path`` as a ``(3, H, W)`` uint8 RGB tensor, upright (see the module docstring for formats
    and conversions); :class:`DecodeError` naming the file for one that is missing or cannot be decoded.

    The tensor is a view of an ``(H, W, 3)`` buffer (channels last), whichever library decoded it: torch's resize
    kernels pick their path by memory layout, and this is the layout every reader had, so results stay the same.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    _check_pixels(path, data)
    if data.startswith(_TORCHVISION_SIGNATURES):
        return _decode_torchvision(path, data)
    return _decode_pil(path, data)


def image_files(paths: Sequence[str]) -> list[str]:
    """The image files that ``paths`` name, in order: a file as given (read later, so a broken one is that input's
    own error), a folder as the files directly in it whose extension is in :data:`IMAGE_EXTENSIONS`, by name. Paths
    that do not exist are a ``FileNotFoundError`` naming them all; a folder without images a ``ValueError``."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = sorted(
            e.path for e in os.scandir(path) if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )
        if not found:
            raise ValueError(f"{path}: a folder without images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += found
    return files


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of the image :func:`read_image` returns, from the file's header (nothing decoded);
    :class:`DecodeError` for a header PIL refuses as a decompression bomb (over twice ``Image.MAX_IMAGE_PIXELS``)."""
    path = os.fspath(path)
    try:
        with _open_header(path, path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except DecodeError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise DecodeError(f"{path}: cannot decode image: {exc}") from None
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def read_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """The class indices a label-map PNG stores (a palette or grayscale image, as ADE20K's and our predictions'),
    as they are: no colour conversion, no orientation (a label map has no EXIF); an (H, W) array, or (H, W, C)
    for a file that is not single-channel (the caller refuses it). Raises :class:`DecodeError` naming the file."""
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{path}: cannot decode label map: {exc}") from None


def _open_header(path: str, source: str | io.BytesIO) -> Image.Image:
    """PIL's lazy image (the header read, no pixels decoded); PIL's own decompression-bomb refusal becomes a
    :class:`DecodeError` naming the file, its warning below that is left to :func:`_check_pixels`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"{path}: refused: {exc} (PIL.Image.MAX_IMAGE_PIXELS sets the limit)") from None


def _check_pixels(path: str, data: bytes) -> None:
    """:class:`DecodeError` for an image whose header declares more than ``Image.MAX_IMAGE_PIXELS`` pixels; a
    header PIL cannot read passes (the decoder then says what is wrong with the file)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    try:
        with _open_header(path, io.BytesIO(data)) as image:
            width, height = image.size
    except DecodeError:
        raise
    except (OSError, ValueError, SyntaxError):
        return
    if width * height > limit:
        raise DecodeError(
            f"{path}: refused: {width}x{height} is {width * height} pixels, more than the limit of {int(limit)} "
            "(PIL.Image.MAX_IMAGE_PIXELS; set it higher, or to None, to read larger images)"
        )


def _decode_torchvision(path: str, data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
            image = decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError as exc:  # "decode_png, /path/to/decode_png.cpp:79, <the reason>": keep the reason
        raise DecodeError(f"{path}: cannot decode image: {_SOURCE_LOCATION.sub('', str(exc))}") from None
    if image.dtype != torch.uint8:
        image = to_dtype(image, torch.uint8, scale=True)
    return image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels last, as PIL's pixels come


def _decode_pil(path: str, data: bytes) -> torch.Tensor:
    try:
        with _open_header(path, io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in _SIXTEEN_BIT_MODES:
                high_byte = (np.asarray(image).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
                array = np.repeat(high_byte[..., None], 3, axis=-1)
            else:
                array = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise DecodeError(f"{path}: cannot decode image: not a format torchvision or PIL reads") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{path}: cannot decode image: {exc}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)
