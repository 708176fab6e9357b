"""convnext_dense.visualization: the layout of demo pictures, on synthetic arrays."""
import numpy as np
import pytest

from convnext_dense.datasets import SEG_CLASSES, SEG_PALETTE
from convnext_dense.visualization import (
    MAX_LEGEND_CLASSES,
    MIN_PANEL_HEIGHT,
    compose,
    label_outlines,
    legend_classes,
    scale_factor,
    upscale,
)

# the toy segmentation set's: the background (black) and the five shapes
CLASSES, PALETTE = SEG_CLASSES, SEG_PALETTE


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('height, factor', [(1, 384), (100, 4), (128, 3), (192, 2), (383, 2),
                                            (384, 1), (1000, 1)])
def test_scale_factor_is_the_least_that_reaches_the_height(height, factor):
    assert scale_factor(height) == factor
    assert height * factor >= MIN_PANEL_HEIGHT
    assert factor == 1 or height * (factor - 1) < MIN_PANEL_HEIGHT


def test_scale_factor_and_upscale_reject_bad_values():
    with pytest.raises(ValueError, match='height=0'):
        scale_factor(0)
    with pytest.raises(ValueError, match='factor=0'):
        upscale(random_image(4, 4), 0)
    with pytest.raises(ValueError, match=r'shape \(4,\)'):
        upscale(np.zeros(4), 2)


def test_upscale_is_nearest_neighbour():
    image = random_image(5, 7)
    big = upscale(image, 3)
    assert big.shape == (15, 21, 3) and big.dtype == np.uint8
    for y in range(15):
        for x in range(21):
            assert (big[y, x] == image[y // 3, x // 3]).all()
    labels = np.array([[0, 1], [255, 4]], np.uint8)  # label maps keep exactly their labels
    assert upscale(labels, 2).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 4, 4],
                                           [255, 255, 4, 4]]
    assert upscale(image, 1) is image


@pytest.mark.parametrize('num_panels', [2, 3])
def test_compose_lays_panels_side_by_side_scaled_up(num_panels):
    height, width = 128, 96
    images = [random_image(height, width, seed) for seed in range(num_panels)]
    titles = ['input', 'ground truth', 'prediction'][-num_panels:]
    picture = compose(list(zip(titles, images)), CLASSES, PALETTE)

    assert picture.scale == 3
    assert [title for title, _ in picture.panels] == titles
    boxes = [box for _, box in picture.panels]
    assert all((box.width, box.height) == (3 * width, 3 * height) for box in boxes)
    # left to right, one row, not overlapping, inside the picture
    assert all(a.x + a.width < b.x for a, b in zip(boxes, boxes[1:]))
    assert len({box.y for box in boxes}) == 1
    image = picture.image
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert boxes[-1].x + boxes[-1].width < image.shape[1] < num_panels * 3 * width + 100
    assert boxes[0].y > 20  # room for the titles above
    for box, source in zip(boxes, images):
        assert np.array_equal(box.crop(image), upscale(source, 3))
    # each title is drawn in the band over its panel
    for box in boxes:
        band = image[:box.y, box.x:box.x + box.width]
        assert (band.min(axis=2) < 100).sum() > 50


def test_compose_keeps_tall_images_at_their_size():
    images = [random_image(400, 500, seed) for seed in range(2)]
    picture = compose([('input', images[0]), ('prediction', images[1])], CLASSES, PALETTE)
    assert picture.scale == 1
    for (_, box), source in zip(picture.panels, images):
        assert np.array_equal(box.crop(picture.image), source)


def test_legend_lists_every_class_with_its_colour():
    image = random_image(128, 128)
    picture = compose([('input', image), ('prediction', image)], CLASSES, PALETTE)
    assert [name for name, _ in picture.legend] == list(CLASSES)
    bottom = max(box.y + box.height for _, box in picture.panels)
    for (_, swatch), colour in zip(picture.legend, PALETTE):
        assert swatch.y > bottom  # under the panels
        pixels = swatch.crop(picture.image)
        assert pixels.shape[:2] == (swatch.height, swatch.width) and swatch.width >= 10
        assert (pixels == colour).all()
        # the class name is written right of its swatch
        text = picture.image[swatch.y:swatch.y + swatch.height,
                             swatch.x + swatch.width + 2:swatch.x + swatch.width + 40]
        assert (text.max(axis=2) < 100).sum() > 10
    swatches = [swatch for _, swatch in picture.legend]
    assert all(a.x + a.width < b.x for a, b in zip(swatches, swatches[1:]))  # one row here


def test_legend_wraps_and_lists_only_the_shown_classes():
    classes = tuple(f'class number {i}' for i in range(40))
    palette = [(i * 6, 255 - i * 6, 100) for i in range(40)]
    image = random_image(64, 64)
    picture = compose([('input', image)], classes, palette)
    assert [name for name, _ in picture.legend] == list(classes)
    rows = sorted({swatch.y for _, swatch in picture.legend})
    assert len(rows) > 1  # 40 names do not fit one 384 px row
    for _, swatch in picture.legend:
        assert swatch.x + swatch.width <= picture.image.shape[1]
        assert swatch.y + swatch.height <= picture.image.shape[0]
    shown = compose([('input', image)], classes, palette, shown=[7, 3])
    assert [name for name, _ in shown.legend] == ['class number 7', 'class number 3']
    assert (shown.legend[0][1].crop(shown.image) == palette[7]).all()
    assert shown.image.shape[0] < picture.image.shape[0]


def test_legend_classes_lists_the_present_ones_of_many():
    assert legend_classes(5, present=[4]) == [0, 1, 2, 3, 4]
    assert legend_classes(150, present=[140, 3, 3, 255]) == [3, 140]
    assert legend_classes(150) == list(range(150))
    assert legend_classes(MAX_LEGEND_CLASSES, present=[]) == list(range(MAX_LEGEND_CLASSES))


def test_compose_errors_name_the_problem():
    image = random_image(32, 32)
    with pytest.raises(ValueError, match='panels is empty'):
        compose([], CLASSES, PALETTE)
    with pytest.raises(ValueError, match='different shapes'):
        compose([('a', image), ('b', random_image(32, 33))], CLASSES, PALETTE)
    with pytest.raises(ValueError, match='expected HxWx3'):
        compose([('a', image[..., 0])], CLASSES, PALETTE)
    with pytest.raises(ValueError, match='2 palette colours for 6 classes'):
        compose([('a', image)], CLASSES, PALETTE[:2])
    with pytest.raises(ValueError, match=r'shown=\[6\]'):
        compose([('a', image)], CLASSES, PALETTE, shown=[0, 6])


def test_label_outlines_are_the_inner_rims_of_the_regions():
    labels = np.full((12, 12), 255, np.uint8)  # ignored
    labels[2:8, 2:8] = 0
    labels[4:6, 4:6] = 1  # a hole of another class
    labels[:, 10:] = 2  # along the image's right border
    rims = label_outlines(labels, num_classes=3, width=1)
    expected = np.zeros((12, 12), bool)
    expected[2:8, 2:8] = True
    expected[3:7, 3:7] = False  # class 0: its outer rim ...
    expected[3, 3:7] = expected[6, 3:7] = expected[3:7, 3] = expected[3:7, 6] = True  # ... inner
    expected[4:6, 4:6] = True  # class 1: 2x2, all rim
    expected[:, 10] = True  # class 2: only its side facing the ignored pixels
    assert rims.tolist() == expected.tolist()
    assert not rims[labels == 255].any()
    # 2 wide: every pixel of classes 0 and 1 is within 2 of another label
    assert label_outlines(labels, 3, width=2)[2:8, 2:8].all()
    with pytest.raises(ValueError, match='expected an HxW label map'):
        label_outlines(np.zeros((2, 2, 3)), 3)
