"""Bad input to the real tools: the error names the file at fault (a config of the ``_base_``
chain with a syntax error and its line, an image that cannot be read).

The tools run in this process (their ``__main__``, as ``python tools/X.py`` runs it): a failing
tool ends with an exception, and what the interpreter would print for it on stderr is its
traceback, formatted here as the interpreter formats it. The end-to-end tests run the same tools
in subprocesses."""
import re
import traceback
from pathlib import Path

import pytest

from convnext_dense.apis import read_image
from convnext_dense.config import load_config
from tests.helpers import DET_CONFIG, SEG_CONFIG, run_tool_in_process, short_run

BROKEN_LINE = "    norm_cfg=dict(type='BN' requires_grad=True),"


def failure_of(tool: str, *args, monkeypatch) -> str:
    """The traceback that ``python tool *args`` ends with (exit status 1), as printed on stderr;
    fails if the tool returns."""
    with pytest.raises(Exception) as info:
        run_tool_in_process(tool, *args, monkeypatch=monkeypatch)
    return ''.join(traceback.format_exception(info.value))


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
def test_tools_name_the_base_file_with_the_syntax_error(tmp_path, tool, monkeypatch):
    top, culprit = write_chain(tmp_path, 'base')
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')  # tools/test.py checks that it exists before reading the config
    args = [top] if tool == 'train' else [top, checkpoint]
    stderr = failure_of(f'tools/{tool}.py', *args, monkeypatch=monkeypatch)
    assert f"SyntaxError: config file '{culprit}', line 3: " in stderr, stderr
    assert BROKEN_LINE.strip() in stderr  # the offending line, shown with a caret
    assert '<unknown>' not in stderr


def test_train_names_the_top_config_with_the_syntax_error(tmp_path, monkeypatch):
    top, culprit = write_chain(tmp_path, 'top')
    assert culprit == top
    stderr = failure_of('tools/train.py', top, monkeypatch=monkeypatch)
    assert f"SyntaxError: config file '{top}', line 3: " in stderr, stderr
    assert BROKEN_LINE.strip() in stderr


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
def test_demo_names_the_file_that_is_not_an_image(tmp_path, config, monkeypatch):
    image = tmp_path / 'photo.jpg'
    image.write_text('class names: sky, tree\n')
    # The image is read before the config and the checkpoint: a missing checkpoint is not
    # what gets reported.
    stderr = failure_of('tools/demo.py', image, config, tmp_path / 'missing.pth', '--out',
                        tmp_path / 'out.png', monkeypatch=monkeypatch)
    assert (f"ValueError: image '{image}' (23 bytes) could not be read as an image; expected "
            'a file OpenCV decodes') in stderr, stderr
    assert 'cv2.error' not in stderr
    assert not (tmp_path / 'out.png').exists()


def test_demo_says_the_image_does_not_exist(tmp_path, monkeypatch):
    image = tmp_path / 'missing.jpg'
    stderr = failure_of('tools/demo.py', image, SEG_CONFIG, tmp_path / 'missing.pth', '--out',
                        tmp_path / 'out.png', monkeypatch=monkeypatch)
    assert f"FileNotFoundError: image '{image}' does not exist" in stderr, stderr


def test_train_names_the_missing_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the toy config's data_root is relative: data/toy_ade
    stderr = failure_of('tools/train.py', SEG_CONFIG, '--work-dir', tmp_path / 'w',
                        *short_run(2, 2), monkeypatch=monkeypatch)
    assert "data_root 'data/toy_ade' does not exist" in stderr, stderr[-2000:]


def test_train_suggests_the_key_of_a_cfg_options_typo(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    stderr = failure_of('tools/train.py', SEG_CONFIG, '--cfg-options', 'train_cfg.max_iter=2',
                        monkeypatch=monkeypatch)
    assert "did you mean 'max_iters'" in stderr, stderr[-2000:]
    assert not (workspace / 'work_dirs').exists()  # nothing half-written
