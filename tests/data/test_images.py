"""The one image reader: PIL's pixels for ordinary files, upright, RGB from every mode, 16 bits scaled, clear errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uniformer.data import DecodeError, image_size, read_image
from uniformer.data.images import read_label_map

RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes: no block or chroma alignment
YY, XX = np.mgrid[0:48, 0:64]
SMOOTH = np.stack([(XX * 3) % 256, (YY * 5) % 256, ((XX + YY) * 2) % 256], axis=-1).astype(np.uint8)


def pil_rgb(path: Path) -> np.ndarray:
    """What the readers before this one returned: PIL's ``convert("RGB")``."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def hwc(image: torch.Tensor) -> np.ndarray:
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
    return image.permute(1, 2, 0).numpy()


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG (grayscale ``(H, W)`` or RGB ``(H, W, 3)``), written by hand: PIL cannot write 16-bit RGB."""
    rows = array.reshape(array.shape[0], -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    colour_type = 0 if array.ndim == 2 else 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def write_tiff16_rgb(path: Path, array: np.ndarray) -> Path:
    """An uncompressed 16-bit RGB TIFF ``(H, W, 3)``, written by hand: PIL cannot write one."""
    height, width, _ = array.shape
    pixels = array.astype("<u2").tobytes()
    count, ifd_offset = 10, 8
    bits_offset = ifd_offset + 2 + count * 12 + 4
    pixels_offset = bits_offset + 6
    short, long = 3, 4
    tags = [(256, short, 1, width), (257, short, 1, height), (258, short, 3, bits_offset), (259, short, 1, 1),
            (262, short, 1, 2), (273, long, 1, pixels_offset), (277, short, 1, 3), (278, short, 1, height),
            (279, long, 1, len(pixels)), (284, short, 1, 1)]  # fmt: skip
    entries = b"".join(
        struct.pack("<HHIHH", tag, kind, n, value, 0)
        if kind == short and n == 1
        else struct.pack("<HHII", tag, kind, n, value)
        for tag, kind, n, value in tags
    )
    header = b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", count) + entries + struct.pack("<I", 0)
    path.write_bytes(header + struct.pack("<HHH", 16, 16, 16) + pixels)
    return path


@pytest.mark.parametrize("quality", [75, 95])
@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0 (upsampled chroma)
@pytest.mark.parametrize("pixels", [NOISE, SMOOTH], ids=["noise", "smooth"])
def test_ordinary_jpeg_gives_pil_pixels_exactly(tmp_path: Path, quality: int, subsampling: int, pixels) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(pixels).save(path, quality=quality, subsampling=subsampling)
    assert np.array_equal(hwc(read_image(path)), pil_rgb(path))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".webp", ".tif", ".gif"])
def test_lossless_formats_give_the_written_pixels(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"a{suffix}"
    Image.fromarray(NOISE).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    expected = pil_rgb(path) if suffix == ".gif" else NOISE  # a GIF holds a 256-colour palette of it
    assert np.array_equal(hwc(read_image(path)), expected)


def test_the_format_is_found_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    Image.fromarray(NOISE).save(tmp_path / "png.jpg", format="PNG")
    Image.fromarray(NOISE).save(tmp_path / "tiff.png", format="TIFF")
    assert np.array_equal(hwc(read_image(tmp_path / "png.jpg")), NOISE)
    assert np.array_equal(hwc(read_image(tmp_path / "tiff.png")), NOISE)


def test_pixels_are_stored_channels_last_as_pil_gave_them(tmp_path: Path) -> None:
    """Resize kernels choose their path by layout: every reader must give the (H, W, 3) buffer PIL gave."""
    Image.fromarray(NOISE).save(tmp_path / "a.png")
    Image.fromarray(NOISE).save(tmp_path / "a.bmp")
    for name in ("a.png", "a.bmp"):
        image = read_image(tmp_path / name)
        assert image.stride() == (1, 53 * 3, 3), name


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("orientation", [3, 6, 8])  # 180 degrees, 90 clockwise, 90 counter-clockwise
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str, orientation: int) -> None:
    # a quarter-size block in the top-left corner shows where the stored top-left ends up
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:8, :12] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"a{suffix}"
    image.save(path, exif=exif, **({"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}))
    upright = np.asarray(Image.fromarray(pixels).transpose({3: 3, 6: 4, 8: 2}[orientation]))  # ROTATE_180/270/90
    got = hwc(read_image(path))
    assert got.shape == upright.shape
    assert (np.abs(got.astype(int) - upright.astype(int)) <= 8).all()  # JPEG may round the block's edge
    assert image_size(path) == (upright.shape[1], upright.shape[0])


def test_grayscale_is_repeated_to_three_channels(tmp_path: Path) -> None:
    gray = NOISE[..., 0]
    for name in ("g.png", "g.jpg", "g.tif"):
        Image.fromarray(gray).save(tmp_path / name)
        got = hwc(read_image(tmp_path / name))
        assert np.array_equal(got, pil_rgb(tmp_path / name)), name
        assert (got == got[..., :1]).all(), name
    assert np.array_equal(hwc(read_image(tmp_path / "g.png")), np.repeat(gray[..., None], 3, axis=-1))


@pytest.mark.parametrize("transparency", [None, 3])
def test_palette_images_are_looked_up(tmp_path: Path, transparency: int | None) -> None:
    image = Image.fromarray(NOISE).convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(tmp_path / "p.png", **({} if transparency is None else {"transparency": transparency}))
    expected = np.asarray(image.convert("RGB"))
    assert np.array_equal(hwc(read_image(tmp_path / "p.png")), expected)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_alpha_is_dropped_not_composited(tmp_path: Path, suffix: str) -> None:
    alpha = np.zeros((37, 53, 1), np.uint8)  # fully transparent: compositing on a background would erase the colour
    rgba = Image.fromarray(np.concatenate([NOISE, alpha], axis=-1))
    rgba.save(tmp_path / f"a{suffix}", lossless=True, exact=True)  # exact: WebP keeps the colour under alpha 0
    assert np.array_equal(hwc(read_image(tmp_path / f"a{suffix}")), NOISE)
    Image.fromarray(np.concatenate([NOISE[..., :1], alpha], axis=-1), "LA").save(tmp_path / "la.png")
    assert np.array_equal(hwc(read_image(tmp_path / "la.png")), np.repeat(NOISE[..., :1], 3, axis=-1))


def test_sixteen_bit_png_and_tiff_are_scaled_not_binarised(tmp_path: Path) -> None:
    levels = np.array([[0, 255, 256, 4095, 32896, 65280, 65535]], np.uint16)
    expected = np.array([[0, 0, 1, 15, 128, 255, 255]], np.uint8)  # the high byte: v >> 8
    gray_png = write_png16(tmp_path / "gray16.png", levels)
    Image.fromarray(levels).save(tmp_path / "gray16.tif")
    assert Image.open(tmp_path / "gray16.tif").mode == "I;16"
    for path in (gray_png, tmp_path / "gray16.tif"):
        assert np.array_equal(hwc(read_image(path)), np.repeat(expected[..., None], 3, axis=-1)), path.name
    colour = np.stack([levels, levels[:, ::-1], np.full_like(levels, 40000)], axis=-1)
    colour_expected = np.stack([expected[0], expected[0, ::-1], np.full(7, 156, np.uint8)], axis=-1)[None]
    for path in (write_png16(tmp_path / "rgb16.png", colour), write_tiff16_rgb(tmp_path / "rgb16.tif", colour)):
        assert np.array_equal(hwc(read_image(path)), colour_expected), path.name


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_is_converted_to_rgb(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cmyk{suffix}"
    Image.fromarray(SMOOTH).convert("CMYK").save(path, **({"quality": 95} if suffix == ".jpg" else {}))
    got = hwc(read_image(path))
    assert np.array_equal(got, pil_rgb(path))
    assert np.abs(got.astype(int) - SMOOTH.astype(int)).mean() < 3  # the colours survive the round trip


def test_unreadable_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(SMOOTH).save(tmp_path / "whole.jpg")
    Image.fromarray(SMOOTH).save(tmp_path / "whole.png")
    cases = {
        "garbage.png": b"not an image",
        "empty.jpg": b"",
        "truncated.jpg": (tmp_path / "whole.jpg").read_bytes()[:200],
        "truncated.png": (tmp_path / "whole.png").read_bytes()[:100],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DecodeError, match=f"{tmp_path / name}: cannot decode image: ") as caught:
            read_image(tmp_path / name)
        assert ".cpp" not in str(caught.value), name  # torchvision's source location is left out
    with pytest.raises(DecodeError, match="missing.png: cannot read image: No such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DecodeError, match="garbage.png: cannot decode image"):
        image_size(tmp_path / "garbage.png")


def write_png_bomb(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels and whose data is one compressed row: the size
    of a decompression bomb without its memory."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * (1 + 3 * width))
    chunks = [(b"IHDR", header), (b"IDAT", data), (b"IEND", b"")]
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    )
    return path


def write_bmp_header(path: Path, width: int, height: int) -> Path:
    """A 24-bit BMP header declaring ``width`` x ``height`` pixels with no pixel data (PIL reads BMP)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path.write_bytes(b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info)
    return path


@pytest.mark.parametrize("width, height", [(20000, 20000), (15000, 12000)])  # above twice PIL's limit, and between
def test_an_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path: Path, width: int, height: int) -> None:
    for path in (
        write_png_bomb(tmp_path / "bomb.png", width, height),
        write_bmp_header(tmp_path / "bomb.bmp", width, height),
    ):
        with pytest.raises(DecodeError, match=f"{path}: refused: .*PIL.Image.MAX_IMAGE_PIXELS"):
            read_image(path)
    if width * height <= 2 * Image.MAX_IMAGE_PIXELS:  # above that PIL refuses even to read the header
        assert image_size(tmp_path / "bomb.png") == (width, height)
    else:
        with pytest.raises(DecodeError, match="bomb.png: refused: "):
            image_size(tmp_path / "bomb.png")


def test_the_pixel_limit_is_pils_and_can_be_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(NOISE).save(tmp_path / "noise.png")  # 53 x 37 = 1961 pixels
    Image.fromarray(NOISE).save(tmp_path / "noise.bmp")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1960)
    for name in ("noise.png", "noise.bmp"):
        with pytest.raises(
            DecodeError, match=f"noise.{name[-3:]}: refused: 53x37 is 1961 pixels, more than the limit of 1960"
        ):
            read_image(tmp_path / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1961)
    assert (hwc(read_image(tmp_path / "noise.png")) == NOISE).all()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert (hwc(read_image(tmp_path / "noise.bmp")) == NOISE).all()


def test_a_label_map_keeps_its_class_indices_and_a_broken_one_names_its_file(tmp_path: Path) -> None:
    classes = (NOISE[..., 0] % 7).astype(np.uint8)
    palette = Image.fromarray(classes, mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] * 85 + [0, 0, 0])  # colours that are not the indices
    palette.save(tmp_path / "palette.png")
    Image.fromarray(classes, mode="L").save(tmp_path / "gray.png")
    for name in ("palette.png", "gray.png"):
        label = read_label_map(tmp_path / name)
        assert label.shape == classes.shape and np.array_equal(label, classes)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DecodeError, match=r"broken\.png: cannot decode label map"):
        read_label_map(tmp_path / "broken.png")
