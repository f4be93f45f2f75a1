"""read_image / write_image: every documented conversion, and clear errors for bad files."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from data_prep.imageio import ImageReadError, read_image, read_image_with_notes, write_image

RGB = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 4).astype(np.uint8)


def test_png_roundtrip_is_bgr(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")       # PIL writes RGB
    img, notes = read_image_with_notes(tmp_path / "a.png")
    assert img.dtype == np.uint8 and img.shape == (4, 5, 3) and notes == []
    np.testing.assert_array_equal(img, RGB[:, :, ::-1])


def test_16bit_is_scaled_and_rounded(tmp_path):
    values = np.array([[0, 128, 129, 257, 385, 386, 65535, 32768]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    img, notes = read_image_with_notes(tmp_path / "g16.png")
    # v * 255 / 65535 = v / 257: 128 -> 0.498 -> 0, 129 -> 0.502 -> 1, 385 -> 1.498 -> 1, 386 -> 2
    np.testing.assert_array_equal(img[0, :, 0], [0, 0, 1, 1, 1, 2, 255, 128])
    assert any("16-bit" in n for n in notes) and any("gray" in n for n in notes)


def test_16bit_colour(tmp_path):
    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[..., 2] = 65535
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    img, notes = read_image_with_notes(tmp_path / "c16.png")
    np.testing.assert_array_equal(img[0, 0], [0, 0, 255])
    assert notes == ["16-bit -> 8-bit (x255/65535, rounded)"]


def test_gray_becomes_three_equal_channels(tmp_path):
    Image.fromarray(RGB[:, :, 0]).save(tmp_path / "g.png")
    img, notes = read_image_with_notes(tmp_path / "g.png")
    assert img.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], RGB[:, :, 0])
    assert notes == ["gray -> 3 channels"]


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([RGB, np.full((4, 5), 10, np.uint8)])  # nearly transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img, notes = read_image_with_notes(tmp_path / "a.png")
    np.testing.assert_array_equal(img, RGB[:, :, ::-1])
    assert any("alpha dropped" in n for n in notes)


def test_gray_alpha(tmp_path):
    Image.fromarray(RGB[:, :, 1]).convert("LA").save(tmp_path / "la.png")
    img, notes = read_image_with_notes(tmp_path / "la.png")
    np.testing.assert_array_equal(img[:, :, 0], RGB[:, :, 1])
    np.testing.assert_array_equal(img[:, :, 2], RGB[:, :, 1])
    assert any("alpha dropped" in n for n in notes)


def test_palette_image_is_expanded(tmp_path):
    pal = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img, np.asarray(pal.convert("RGB"))[:, :, ::-1])


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png: no such image file"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_corrupt_file_names_it_and_says_what_to_do(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"broken\.png: not a readable image .*re-export"):
        read_image(path)


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_write_image_is_atomic_and_roundtrips(tmp_path):
    img = RGB[:, :, ::-1].copy()
    path = write_image(tmp_path / "sub" / "x.png", img)
    np.testing.assert_array_equal(read_image(path), img)
    assert os.listdir(tmp_path / "sub") == ["x.png"]  # no temporary left behind
    write_image(tmp_path / "x.jpg", img)
    assert read_image(tmp_path / "x.jpg").shape == img.shape


def test_write_image_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="cannot encode"):
        write_image(tmp_path / "x.unknownext", RGB)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "y.png", RGB.astype(np.float32))
    assert os.listdir(tmp_path) == []
