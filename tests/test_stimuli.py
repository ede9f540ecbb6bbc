"""Stimuli: discovery, ids, decoding, resizing and model-input scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurotask.stimuli import (
    INPUT_SIZE,
    ImageError,
    check_image,
    find_images,
    image_source,
    lightness_input,
    load_image,
    rgb_input,
)


def _save(path: Path, mode: str = "RGB", size: tuple[int, int] = (375, 375), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).convert(mode).save(path)
    return path


def test_find_images_in_tree(tmp_path: Path) -> None:
    b = _save(tmp_path / "b" / "scene2.png")
    a = _save(tmp_path / "a" / "n01440764_10110.JPG")
    _save(tmp_path / ".hidden" / "x.png")
    _save(tmp_path / "a" / ".y.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == [a, b]
    assert find_images(str(b)) == [b]
    assert find_images([b, a]) == [b, a]  # a list keeps its order


def test_find_images_bold5000_root(tmp_path: Path) -> None:
    presented = tmp_path / "Scene_Stimuli" / "Presented_Stimuli"
    coco = _save(presented / "COCO" / "COCO_train2014_000000000584.jpg")
    scene = _save(presented / "Scene" / "airplanecabin1.jpg")
    _save(tmp_path / "Scene_Stimuli" / "Original_Images" / "COCO_train2014_000000000999.jpg")
    assert find_images(tmp_path) == [coco, scene]
    assert [image_source(p.stem) for p in (coco, scene)] == ["coco", "scene"]


def test_find_images_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        find_images(tmp_path)
    with pytest.raises(ValueError, match="images is empty"):
        find_images([])
    with pytest.raises(ValueError, match="does not exist"):
        find_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="1 listed files do not exist"):
        find_images([tmp_path / "missing.jpg"])
    one = _save(tmp_path / "a" / "img1.jpg")
    two = _save(tmp_path / "b" / "img1.png")
    with pytest.raises(ValueError, match=r"1 image ids occur more than once.*img1.*a/img1\.jpg.*b/img1\.png"):
        find_images(tmp_path)
    with pytest.raises(ValueError, match="more than once"):
        find_images([one, two])


def test_load_image_resizes_whole_image(tmp_path: Path) -> None:
    path = _save(tmp_path / "wide.png", size=(400, 200))
    image, grayscale = load_image(path)
    assert image.shape == (INPUT_SIZE, INPUT_SIZE, 3) and image.dtype == np.uint8 and not grayscale
    expected = np.asarray(Image.open(path).resize((256, 256), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(image, expected)


def test_load_image_square_256_untouched(tmp_path: Path) -> None:
    path = _save(tmp_path / "exact.png", size=(256, 256))
    np.testing.assert_array_equal(load_image(path)[0], np.asarray(Image.open(path)))


@pytest.mark.parametrize("mode", ["L", "I;16", "LA"])
def test_load_image_grayscale(tmp_path: Path, mode: str) -> None:
    path = _save(tmp_path / "gray.png", mode="L")
    if mode != "L":
        Image.open(path).convert(mode).save(path)
    image, grayscale = load_image(path)
    assert grayscale
    assert image.shape == (256, 256, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_load_image_palette_and_rgba_are_color(tmp_path: Path) -> None:
    for mode in ("P", "RGBA"):
        path = _save(tmp_path / f"x_{mode}.png")
        Image.open(path).convert(mode).save(path)
        assert load_image(path)[1] is False


def test_corrupt_images_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(garbage)
    truncated = _save(tmp_path / "truncated.jpg")
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ImageError, match="truncated.jpg"):
        load_image(truncated)


def test_rgb_input_scaling() -> None:
    pixels = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    scaled = rgb_input(pixels)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[0, 0, 0], [-1, 128 / 255 * 2 - 1, 1], atol=1e-7)


def test_lightness_input_matches_skimage() -> None:
    import skimage.color as skimage_color
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    pixels[0, 0, 0] = 0
    pixels[0, 0, 1] = 255
    ours = lightness_input(pixels)
    assert ours.shape == (2, 8, 8, 1) and ours.dtype == np.float32
    reference = skimage_color.rgb2lab(pixels)[..., 0] / 50 - 1  # float64 reference
    np.testing.assert_allclose(ours[..., 0], reference, atol=1e-6)  # float32 rounding of [-1, 1]
    assert ours[0, 0, 0, 0] == -1 and abs(ours[0, 0, 1, 0] - 1) < 1e-6


def test_ids_is_the_bottom_layer_and_stimuli_reexports_it() -> None:
    import ast

    import neurotask.ids as ids
    import neurotask.stimuli as stimuli

    assert stimuli.image_id is ids.image_id and stimuli.image_source is ids.image_source
    assert stimuli.SOURCES == ids.SOURCES == ("coco", "imagenet", "scene")
    tree = ast.parse(Path(ids.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith("neurotask")]
    ids_of = ["COCO_train2014_000000000584", "n01440764_10110", "n0144076_1", "ATM1", "a/b/COCO_x.jpg"]
    assert [ids.image_source(i) for i in ids_of] == ["coco", "imagenet", "scene", "scene", "coco"]
    assert ids.image_id("d/n01440764_10110.JPEG") == "n01440764_10110"


def _bad_files(tmp_path: Path) -> list[Path]:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    text = tmp_path / "notes.png"
    text.write_text("a text file named like a PNG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated_jpeg = _save(tmp_path / "truncated.jpg")
    truncated_jpeg.write_bytes(truncated_jpeg.read_bytes()[:2000])
    truncated_png = _save(tmp_path / "truncated.png")
    truncated_png.write_bytes(truncated_png.read_bytes()[:5000])
    return [garbage, text, empty, truncated_jpeg, truncated_png]


def test_check_image_fails_where_load_image_fails(tmp_path: Path) -> None:
    for path in _bad_files(tmp_path):
        with pytest.raises(ImageError, match=path.name) as checked:
            check_image(path)
        with pytest.raises(ImageError) as loaded:
            load_image(path)
        assert str(checked.value) == str(loaded.value)


def test_check_image_grayscale_as_load_image(tmp_path: Path) -> None:
    for mode in ("RGB", "L", "I;16", "LA", "P", "RGBA", "CMYK"):
        path = _save(tmp_path / f"x_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}")
        Image.open(path).convert(mode).save(path)
        assert check_image(path) is load_image(path)[1] is (mode in ("L", "I;16", "LA"))


def test_check_image_does_not_resize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the resize is two thirds of load_image's time; the check needs only the decode
    path = _save(tmp_path / "wide.png", size=(400, 200))

    def no_resize(*args, **kwargs):
        raise AssertionError("check_image resized")

    monkeypatch.setattr(Image.Image, "resize", no_resize)
    assert check_image(path) is False
