"""Any image a user may have becomes RGB, or a clear per-file reason why not; inputs expand predictably."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mobiclass import ImageError
from mobiclass.data import Preprocessing, expand_inputs, load_image


def png_header_only(path, width, height):
    """A tiny PNG file that claims enormous dimensions (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) +
                     chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("this is not a picture"), "not an image, or a format Pillow cannot read"),
    (lambda p: p.write_bytes(b""), "empty file"),
])
def test_unusable_files_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "photo.jpg"
    make(path)
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert str(error.value) == message


def test_truncated_jpeg(tmp_path, photos):
    path = tmp_path / "cut.jpg"
    path.write_bytes(photos["chelsea"].read_bytes()[:3000])
    with pytest.raises(ImageError, match=r"^truncated or corrupt image data"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    with pytest.raises(ImageError, match=r"^image too large: over the limit of \d+ pixels"):
        load_image(png_header_only(tmp_path / "bomb.png", 100_000, 100_000))
    with pytest.raises(ImageError, match=r"^image too large: 12000x12000 pixels is over the limit"):
        load_image(png_header_only(tmp_path / "big.png", 12_000, 12_000))


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="^no such file$"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="^is a folder, not an image$"):
        load_image(tmp_path)


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "L", "P", "LA", "I;16", "F", "1"])
def test_every_mode_becomes_8_bit_rgb(mode, photos):
    source = Image.open(photos["coffee"]).convert("RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.float32) / 255.0)
    else:
        image = source.convert(mode)
    from mobiclass.data import to_rgb
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == source.size
    if mode in ("I;16", "F", "L", "LA"):  # gray levels survive the conversion (not clipped to white)
        gray = np.asarray(source.convert("L"), dtype=np.int16)
        assert np.abs(np.asarray(rgb)[..., 0].astype(np.int16) - gray).max() <= 1


def test_sixteen_bit_png_file_keeps_its_contrast(tmp_path, photos):
    gray = np.asarray(Image.open(photos["chelsea"]).convert("L"), dtype=np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "deep.png")
    rgb = np.asarray(load_image(tmp_path / "deep.png"))
    assert rgb.shape[2] == 3 and rgb.min() == gray.min() and rgb.max() == gray.max()


def test_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the camera stored it sideways
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_large_jpeg_is_decoded_small_with_draft_mode(tmp_path):
    Image.new("RGB", (4000, 3000), "green").save(tmp_path / "big.jpg")
    image = load_image(tmp_path / "big.jpg", min_size=256)
    assert min(image.size) >= 256 and image.size[0] <= 1000  # 1/4 scale decode: 1000x750


def test_one_pixel_image_is_still_classifiable(tmp_path):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "dot.png")
    array = Preprocessing()(load_image(tmp_path / "dot.png"))
    assert array.shape == (3, 224, 224) and array.dtype == np.float32


def test_preprocessing_normalises_and_center_crops():
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 100, 200))  # a blue band on the left, cropped away by the center crop
    array = Preprocessing(size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)(image)
    assert array.shape == (3, 224, 224)
    assert np.allclose(array[0], 1.0) and np.allclose(array[2], -1.0)


def test_preprocessing_for_size_resizes_for_the_crop_share():
    assert (Preprocessing.for_size(224).resize, Preprocessing.for_size(224, crop=1.0).resize) == (256, 224)
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 200))  # the left half of the central 200 x 200 square is blue
    array = Preprocessing.for_size(64, crop=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)(image)
    assert np.allclose(array[2, :, 1:31], 1.0) and np.allclose(array[2, :, 33:], -1.0)


def test_expand_inputs_keeps_order_recurses_folders_and_globs(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/2.jpg", "b/deep/1.png", "b/notes.txt", "b/.hidden.jpg", "a.jpg", "c.JPG"):
        (tmp_path / name).write_bytes(b"x")
    paths = expand_inputs([tmp_path / "c.JPG", tmp_path / "b", str(tmp_path / "*.jpg"), tmp_path / "gone.jpg"])
    relative = [str(p).replace(str(tmp_path) + "/", "") for p in paths]
    assert relative == ["c.JPG", "b/2.jpg", "b/deep/1.png", "a.jpg", "gone.jpg"]
