"""convnext_dense.analysis.curves and tools/analysis/plot_curves.py on logs written by mmengine's
own LocalVisBackend: the series read back, resumed runs merged, the PNG decoded and checked
(size, not blank, each requested series drawn in its panel), and the errors."""
import json
import os
import re

import cv2
import numpy as np
import pytest
from mmengine.visualization import LocalVisBackend

from convnext_dense.analysis.curves import (
    DPI,
    LINE_COLOR,
    PANEL_SIZE,
    find_scalars,
    load_history,
    plot_curves,
)
from tests.helpers import ROOT, run_tool, run_tool_in_process

LINE_RGB = np.array([int(LINE_COLOR[i:i + 2], 16) for i in (1, 3, 5)])


def training_line(step, max_iters=100):
    return dict(lr=1e-3 * min(1.0, step / 30) * (1 - step / (max_iters + 1)), data_time=0.01,
                loss=2.0 * np.exp(-step / 40) + 0.1, **{'decode.loss_ce': 1.0 / step},
                time=0.5, iter=step, memory=100)


def evaluation(step):
    return dict(aAcc=80 + step / 10, mIoU=40 + step / 4, mAcc=50 + step / 5, data_time=0.01,
                time=0.2)


def write_run(run_dir, lines):
    """A run's scalars written by mmengine's LocalVisBackend, as a training writes them."""
    backend = LocalVisBackend(save_dir=str(run_dir / 'vis_data'))
    for step, scalars in lines:
        backend.add_scalars(scalars, step=step)
    backend.close()
    return run_dir / 'vis_data' / 'scalars.json'


def training(first, last, evaluate_every=50):
    lines = []
    for step in range(first, last + 1, 10):
        lines.append((step, training_line(step)))
        if step % evaluate_every == 0:
            lines.append((step, evaluation(step)))
    return lines


@pytest.fixture
def work_dir(tmp_path):
    write_run(tmp_path / 'work' / '20260101_120000', training(10, 100))
    return tmp_path / 'work'


def test_series_are_what_was_logged(work_dir):
    history = load_history(str(work_dir))
    assert history.default_keys == ['loss', 'lr', 'aAcc', 'mIoU', 'mAcc']
    steps, values = history.series('loss')
    assert steps == list(range(10, 101, 10))
    assert values == pytest.approx([training_line(s)['loss'] for s in steps])
    assert history.series('mIoU') == ([50, 100], [pytest.approx(52.5), pytest.approx(65.0)])
    assert history.series('decode.loss_ce')[0] == steps  # any logged key, on request
    assert {'loss', 'lr', 'mIoU', 'decode.loss_ce', 'data_time'} <= set(history.keys)
    assert 'step' not in history.keys


def panel_pixels(image, box):
    left, top, right, bottom = box
    area = image[top:bottom, left:right].astype(int)
    return np.abs(area - LINE_RGB).sum(axis=2) < 60  # the line's colour, anti-aliasing aside


def test_picture_has_a_panel_per_requested_series(work_dir, tmp_path):
    out = tmp_path / 'pictures' / 'curves.png'
    picture = plot_curves(str(work_dir), keys=['loss', 'lr', 'mIoU', 'decode.loss_ce'],
                          out=str(out))
    bgr = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert bgr is not None, f'{out} does not decode'
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    # 4 panels: 3 columns x 2 rows of PANEL_SIZE inches at DPI, and a title band
    assert picture.size == (image.shape[1], image.shape[0])
    assert picture.size == (round(3 * PANEL_SIZE[0] * DPI), round((2 * PANEL_SIZE[1] + 0.4) * DPI))
    assert (image < 250).any(axis=2).mean() > 0.03  # not blank
    assert [panel.key for panel in picture.panels] == ['loss', 'lr', 'mIoU', 'decode.loss_ce']
    boxes = [panel.box for panel in picture.panels]
    for (left, top, right, bottom) in boxes:
        assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]
    for a in range(len(boxes)):  # no two panels overlap
        for b in range(a + 1, len(boxes)):
            (l1, t1, r1, b1), (l2, t2, r2, b2) = boxes[a], boxes[b]
            assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1
    last = max(panel.steps[-1] for panel in picture.panels)
    for panel in picture.panels:
        line = panel_pixels(image, panel.box)
        assert line.sum() > 50, panel.key  # each series is drawn in its own panel
        # from its first to its last iteration, on the axis all panels share (0 .. last)
        columns = np.flatnonzero(line.any(axis=0))
        width = panel.box[2] - panel.box[0]
        for column, step in ((columns[0], panel.steps[0]), (columns[-1], panel.steps[-1])):
            assert column / width == pytest.approx(step / (1.04 * last), abs=0.03), panel.key
    # the loss falls: its line starts high on the left and ends low on the right
    loss = panel_pixels(image, picture.panels[0].box)
    rows = np.arange(loss.shape[0])[:, None]
    width = loss.shape[1]
    left_y = (rows * loss[:, :width // 5]).sum() / loss[:, :width // 5].sum()
    right_y = (rows * loss[:, -width // 5:]).sum() / loss[:, -width // 5:].sum()
    assert left_y < right_y - 0.3 * loss.shape[0]
    # the pixels outside the four panels' series carry no line of the panels' colour
    outside = np.ones(image.shape[:2], bool)
    for left, top, right, bottom in boxes:
        outside[top:bottom, left:right] = False
    assert (np.abs(image.astype(int) - LINE_RGB).sum(axis=2) < 60)[outside].sum() == 0


def test_default_picture_and_place(work_dir):
    picture = plot_curves(str(work_dir))
    assert picture.path == os.path.join(str(work_dir), 'curves.png')
    assert [panel.key for panel in picture.panels] == ['loss', 'lr', 'aAcc', 'mIoU', 'mAcc']
    assert cv2.imread(picture.path) is not None


def test_resumed_runs_are_merged(tmp_path):
    work = tmp_path / 'work'
    write_run(work / '20260101_120000', training(10, 70))
    # resumed from the checkpoint at 50: the new run logs 60..100, the old one's 60, 70 go
    write_run(work / '20260101_130000', [(s, dict(line, loss=5.0) if 'loss' in line else line)
                                         for s, line in training(60, 100)])
    history = load_history(str(work))
    assert len(history.files) == 2
    steps, values = history.series('loss')
    assert steps == list(range(10, 101, 10))
    assert values[5:] == [5.0] * 5 and 5.0 not in values[:5]
    assert history.series('mIoU')[0] == [50, 100]
    # a run folder or a scalars.json alone is read alone
    assert load_history(str(work / '20260101_130000')).series('loss')[0] == [60, 70, 80, 90, 100]
    only = work / '20260101_120000' / 'vis_data' / 'scalars.json'
    assert find_scalars(str(only)) == [str(only)]
    # a new run from scratch in the same work dir: only it is drawn
    write_run(work / '20260101_140000', training(10, 30))
    assert load_history(str(work)).series('loss')[0] == [10, 20, 30]


def test_evaluations_logged_by_epoch_are_drawn_at_their_iteration(tmp_path):
    # mmdet's default LoggerHook(log_metric_by_epoch=True) logs an evaluation at step = epoch
    lines = [(10, training_line(10)), (20, training_line(20)),
             (1, {'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.3}),
             (30, training_line(30)), (40, training_line(40)),
             (2, {'coco/bbox_mAP': 0.2, 'coco/bbox_mAP_50': 0.5})]
    write_run(tmp_path / 'run', lines)
    history = load_history(str(tmp_path / 'run'))
    assert history.series('coco/bbox_mAP') == ([20, 40], [0.1, 0.2])
    # COCO's breakdown only on request
    assert history.default_keys == ['loss', 'lr', 'coco/bbox_mAP']
    assert history.series('coco/bbox_mAP_50')[1] == [0.3, 0.5]


def test_errors_name_the_problem(tmp_path, work_dir):
    with pytest.raises(FileNotFoundError, match=r"work dir '.*nowhere' does not exist"):
        load_history(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError,
                       match=r"no training log under '.*empty': no <timestamp>/vis_data/"
                             r'scalars\.json'):
        load_history(str(tmp_path / 'empty'))
    with pytest.raises(ValueError, match=r"key 'mIOU' is not in the log of .*did you mean "
                                         r"'mIoU'\? its keys: aAcc, data_time, decode.loss_ce"):
        plot_curves(str(work_dir), keys=['loss', 'mIOU'])
    assert not (work_dir / 'curves.png').exists()  # nothing drawn
    broken = tmp_path / 'broken' / 'run' / 'vis_data' / 'scalars.json'
    broken.parent.mkdir(parents=True)
    broken.write_text(json.dumps({'loss': 1.0, 'step': 1}) + '\n{"loss": \n')
    with pytest.raises(ValueError, match=r'scalars\.json:2: not a JSON line'):
        load_history(str(tmp_path / 'broken'))
    broken.write_text('')
    with pytest.raises(ValueError, match='holds no line yet'):
        load_history(str(tmp_path / 'broken'))


def test_tool(work_dir, tmp_path):
    out = tmp_path / 'tool.png'
    result = run_tool([ROOT / 'tools/analysis/plot_curves.py', work_dir, '--keys', 'loss',
                       'mIoU', '--out', out], cwd=tmp_path)
    assert cv2.imread(str(out)) is not None
    assert f'wrote {out} (' in result.stdout and ': loss, mIoU)' in result.stdout


@pytest.mark.parametrize('args,message', [
    (['--keys', 'miou'], "error: key 'miou' is not in the log of .*; did you mean 'mIoU'\\?"),
    (None, 'error: .*nowhere.* does not exist'),
], ids=['unknown key', 'missing work dir'])
def test_tool_exits_with_the_message(work_dir, tmp_path, monkeypatch, args, message):
    """Bad input ends the tool (run in this process) with ``sys.exit(message)``: exit status 1
    and the message alone on stderr, no traceback."""
    argv = [work_dir, *args] if args else [tmp_path / 'nowhere']
    with pytest.raises(SystemExit) as info:
        run_tool_in_process('tools/analysis/plot_curves.py', *argv, monkeypatch=monkeypatch)
    assert isinstance(info.value.code, str), info.value  # exit status 1, no traceback
    assert re.match(message, info.value.code), info.value.code
