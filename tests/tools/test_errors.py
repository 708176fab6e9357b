"""Bad input to the real tools, run in subprocesses: the error names the file at fault (a config
of the ``_base_`` chain with a syntax error and its line, an image that cannot be read)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convnext_dense.apis import read_image
from convnext_dense.config import load_config
from tests.helpers import DET_CONFIG, ROOT, SEG_CONFIG

BROKEN_LINE = "    norm_cfg=dict(type='BN' requires_grad=True),"


def run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def write_chain(folder: Path, broken: str) -> tuple[Path, Path]:
    """top.py -> _base_/middle.py -> _base_/broken.py -> mmseg's default_runtime; the file
    ``broken`` ('top', 'middle' or 'base') has a syntax error on its line 3.

    Returns the top config and the broken file.
    """
    (folder / '_base_').mkdir()
    files = dict(
        top=(folder / 'top.py', ["_base_ = ['./_base_/middle.py']", 'model = dict(',
                                 '    type=\'EncoderDecoder\',', ')']),
        middle=(folder / '_base_/middle.py', ["_base_ = ['./broken.py']", 'crop_size = (64, 64)',
                                              'size = crop_size']),
        base=(folder / '_base_/broken.py', ["_base_ = ['mmseg::_base_/default_runtime.py']",
                                            'head = dict(', "    norm_cfg=dict(type='BN'),",
                                            ')']),
    )
    for name, (path, lines) in files.items():
        if name == broken:
            lines = lines[:2] + [BROKEN_LINE] + lines[3:]
        path.write_text('\n'.join(lines) + '\n')
    return files['top'][0], files[broken][0]


@pytest.mark.parametrize('broken', ['top', 'middle', 'base'])
def test_load_config_names_the_file_with_the_syntax_error(tmp_path, broken):
    top, culprit = write_chain(tmp_path, broken)
    with pytest.raises(SyntaxError, match=re.escape(f"config file '{culprit}', line 3: ")) as info:
        load_config(str(top))
    assert info.value.filename == str(culprit) and info.value.lineno == 3
    assert info.value.text.rstrip('\n') == BROKEN_LINE


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_name_the_base_file_with_the_syntax_error(tmp_path, tool):
    top, culprit = write_chain(tmp_path, 'base')
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')  # tools/test.py checks that it exists before reading the config
    args = [top] if tool == 'train' else [top, checkpoint]
    result = run_tool(ROOT / f'tools/{tool}.py', *args)
    assert result.returncode != 0
    assert f"SyntaxError: config file '{culprit}', line 3: " in result.stderr, result.stderr
    assert BROKEN_LINE.strip() in result.stderr  # the offending line, shown with a caret
    assert '<unknown>' not in result.stderr


def test_train_names_the_top_config_with_the_syntax_error(tmp_path):
    top, culprit = write_chain(tmp_path, 'top')
    assert culprit == top
    result = run_tool(ROOT / 'tools/train.py', top)
    assert result.returncode != 0
    assert f"SyntaxError: config file '{top}', line 3: " in result.stderr, result.stderr
    assert BROKEN_LINE.strip() in result.stderr


def test_a_config_without_errors_still_loads():
    assert load_config(SEG_CONFIG).default_scope == 'mmseg'


NOT_AN_IMAGE = dict(text=b'class names: sky, tree\n', empty=b'',
                    truncated_png=b'\x89PNG\r\n\x1a\n' + bytes(16))


@pytest.mark.parametrize('content', NOT_AN_IMAGE.values(), ids=NOT_AN_IMAGE.keys())
def test_read_image_names_a_file_that_is_not_an_image(tmp_path, content):
    path = tmp_path / 'photo.jpg'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"image '{path}' (") + r'\d+ bytes\) could '
                       'not be read as an image'):
        read_image(str(path))


def test_read_image_names_a_missing_file_or_a_folder(tmp_path):
    missing = tmp_path / 'missing.jpg'
    with pytest.raises(FileNotFoundError, match=re.escape(f"image '{missing}' does not exist")):
        read_image(str(missing))
    with pytest.raises(IsADirectoryError, match=re.escape(f"image '{tmp_path}' is a folder")):
        read_image(str(tmp_path))


@pytest.mark.parametrize('config', [SEG_CONFIG, DET_CONFIG], ids=['upernet', 'mask_rcnn'])
def test_demo_names_the_file_that_is_not_an_image(tmp_path, config):
    image = tmp_path / 'photo.jpg'
    image.write_text('class names: sky, tree\n')
    # The image is read before the config and the checkpoint: a missing checkpoint is not
    # what gets reported.
    result = run_tool(ROOT / 'tools/demo.py', image, config, tmp_path / 'missing.pth',
                      '--out', tmp_path / 'out.png')
    assert result.returncode != 0
    assert (f"ValueError: image '{image}' (23 bytes) could not be read as an image; expected "
            'a file OpenCV decodes') in result.stderr, result.stderr
    assert 'cv2.error' not in result.stderr
    assert not (tmp_path / 'out.png').exists()


def test_demo_says_the_image_does_not_exist(tmp_path):
    image = tmp_path / 'missing.jpg'
    result = run_tool(ROOT / 'tools/demo.py', image, SEG_CONFIG, tmp_path / 'missing.pth',
                      '--out', tmp_path / 'out.png')
    assert result.returncode != 0
    assert f"FileNotFoundError: image '{image}' does not exist" in result.stderr, result.stderr
