"""The fast-path switches (--bf16, --channels-last, --compile): each gives the plain path's losses
and predictions on the toy Mask R-CNN and UperNet (within the tolerance of its arithmetic), the
config rewrites, eager fallbacks logged, plain checkpoint keys, and the flags through the real
tools/train.py."""
import copy

import pytest
import torch
from mmengine.config import Config

import convnext_dense  # noqa: F401  (registers the hook, the optim wrapper, the preprocessor)
from convnext_dense.engine.fast_path import (
    FastPathHook,
    WatchedCompile,
    apply_fast_path,
    configure_fast_path,
    match_optimizer_state,
    normalize_fast_path,
    plain_state_dict,
)
from convnext_dense.testing import det_batch, seg_batch
from tests.helpers import (
    DET_CONFIG,
    ROOT,
    SEG_CONFIG,
    LogRecords,
    make_toy_data_in,
    perturb_,
    run_tool,
)
from tests.numerics import assert_close_to_reference, reduction_depth, rounding_depth

COCO_RECIPE = str(ROOT / 'configs/mask_rcnn/mask_rcnn_convnext_t_coco_3x.py')
AOT_EAGER = dict(compile=dict(backend='aot_eager'))


# -- config rewriting -------------------------------------------------------------------------
def test_configure_rewrites_detection_config():
    cfg = Config.fromfile(DET_CONFIG)
    preprocessor = copy.deepcopy(cfg.model.data_preprocessor)
    configure_fast_path(cfg, bf16=True, channels_last=True, compile=True)
    assert cfg.fast_path == dict(bf16=True, channels_last=True,
                                 compile=normalize_fast_path(dict(compile=True))['compile'])
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper' and 'loss_scale' not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer.fused is True  # AdamW, fused kernel on the CPU
    assert cfg.model.roi_head.bbox_roi_extractor.type == 'FP32SingleRoIExtractor'
    assert cfg.model.roi_head.mask_roi_extractor.type == 'FP32SingleRoIExtractor'
    # mmdet's preprocessor with its arguments, padding to the default (COCO) buckets
    assert cfg.model.data_preprocessor.type == 'BucketDetDataPreprocessor'
    assert {**cfg.model.data_preprocessor, 'type': preprocessor.type} == preprocessor
    assert [h.type for h in cfg.custom_hooks].count('FastPathHook') == 1
    configure_fast_path(cfg)  # again: nothing added twice
    assert [h.type for h in cfg.custom_hooks].count('FastPathHook') == 1


def test_fp16_recipe_becomes_bf16():
    cfg = Config.fromfile(COCO_RECIPE)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    configure_fast_path(cfg, bf16=True)
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.model.data_preprocessor.type == 'DetDataPreprocessor'  # no compile, no buckets


def test_flags_merge_with_the_config():
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.fast_path = dict(bf16=True, compile=dict(backend='aot_eager', recompile_limit=4))
    configure_fast_path(cfg, compile=True, channels_last=None)
    assert cfg.fast_path.bf16 is True and cfg.fast_path.channels_last is False
    assert cfg.fast_path.compile.backend == 'aot_eager'  # --compile keeps the options
    assert cfg.fast_path.compile.recompile_limit == 4
    assert cfg.model.data_preprocessor.type == 'SegDataPreProcessor'  # fixed crops already
    configure_fast_path(cfg, bf16=False, compile=False)
    assert cfg.fast_path == dict(bf16=False, channels_last=False, compile=False)


def test_plain_config_is_left_alone():
    cfg = Config.fromfile(DET_CONFIG)
    before = copy.deepcopy(cfg._cfg_dict.to_dict())
    configure_fast_path(cfg)
    after = cfg._cfg_dict.to_dict()
    assert after.pop('fast_path') == dict(bf16=False, channels_last=False, compile=False)
    assert after == before


@pytest.mark.parametrize('fast_path, error, match', [
    (dict(bf16=True, fp8=True), ValueError, r"fast_path: unknown keys \['fp8'\]"),
    (dict(bf16='yes'), TypeError, 'fast_path.bf16 must be True or False'),
    (dict(compile='inductor'), TypeError, 'fast_path.compile must be'),
    (dict(compile=dict(backedn='inductor')), ValueError, r"fast_path.compile: unknown keys"),
])
def test_bad_fast_path(fast_path, error, match):
    with pytest.raises(error, match=match):
        normalize_fast_path(fast_path)


def test_bf16_optim_wrapper_on_cpu():
    from mmengine.registry import OPTIM_WRAPPERS
    model = torch.nn.Linear(4, 4)
    wrapper = OPTIM_WRAPPERS.build(dict(type='BF16OptimWrapper',
                                        optimizer=torch.optim.AdamW(model.parameters())))
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().sum())
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state
    wrapper.load_state_dict({**state, 'loss_scaler': {'scale': 65536.0}})  # an fp16 run's


# -- the toy models ---------------------------------------------------------------------------
def build(config, shallow=True, **model_options):
    cfg = Config.fromfile(config)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules()
    # Stochastic depth draws random numbers, whose order a compiled graph need not keep: the
    # comparisons are about the arithmetic. One block per stage (atto's widths, so the heads
    # fit) keeps torch.compile's tracing within seconds on a CPU; no switch depends on depth.
    cfg.model.backbone.drop_path_rate = 0.0
    if shallow:
        cfg.model.backbone.arch = dict(depths=[1, 1, 1, 1], dims=[40, 80, 160, 320])
        cfg.model.backbone.version = 'v2'  # atto's block (GRN)
    cfg.merge_from_dict(dict(model=model_options))
    torch.manual_seed(0)
    model = perturb_(MODELS.build(cfg.model))  # off the init: every tensor matters
    return model


@pytest.fixture(scope='module')
def det_model():
    return build(DET_CONFIG)


@pytest.fixture(scope='module')
def seg_model():
    # crops of seg_batch's 64x64, not the config's 128x128: a quarter of the bf16 convolutions'
    # work on a CPU without bf16 instructions, the same code
    return build(SEG_CONFIG, data_preprocessor=dict(size=(64, 64)))


def det_data(model, training):
    batch = det_batch(2, 64, 96, instances=3, num_classes=5)
    return model.data_preprocessor(batch, training=training)


def seg_data(model, training):
    return model.data_preprocessor(seg_batch(2, 64, 64, num_classes=5), training=training)


def losses(model, data, autocast=False):
    model.train()
    torch.manual_seed(0)  # the RPN and R-CNN samplers draw at random
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        result = model(**copy.deepcopy(data), mode='loss')
    loss, log_vars = model.parse_losses(result)
    loss.backward()
    return log_vars, loss


def predictions(model, data):
    model.eval()
    with torch.no_grad():
        return model.test_step(copy.deepcopy(data))


def assert_det_predictions_close(ours, reference, depth, dtype=torch.float32):
    for sample, ref in zip(ours, reference):
        mine, theirs = sample.pred_instances, ref.pred_instances
        assert len(mine) == len(theirs) > 0
        assert torch.equal(mine.labels, theirs.labels)
        for key in ('bboxes', 'scores'):
            assert mine[key].dtype == torch.float32
            assert_close_to_reference(mine[key], theirs[key], depth, dtype, name=key)


def assert_losses_close(ours, reference, depth, dtype=torch.float32):
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        if key == 'acc' and dtype != torch.float32:
            # R-CNN's accuracy counts the sampled RoIs classified right: one RoI whose two top
            # scores are within bf16's rounding flips it by 100 / 128 points. The losses are
            # the continuous functions of the arithmetic.
            continue
        assert_close_to_reference(torch.tensor(ours[key]), torch.tensor(value), depth, dtype,
                                  name=key)


def fast_copy(model, **fast_path):
    return apply_fast_path(copy.deepcopy(model), fast_path)


def test_channels_last_detection(det_model):
    fast = fast_copy(det_model, channels_last=True)
    assert fast.backbone.stages[0][0].dwconv.weight.is_contiguous(
        memory_format=torch.channels_last)
    depth = reduction_depth(det_model)
    data = det_data(det_model, training=True)
    (reference, _), (ours, _) = losses(det_model, data), losses(fast, data)
    assert_losses_close(ours, reference, depth)
    data = det_data(det_model, training=False)
    assert_det_predictions_close(predictions(fast, data), predictions(det_model, data), depth)


def test_channels_last_roi_features_read_right(det_model):
    """The FPN outputs of a channels-last model are channels-last; mmcv's RoIAlign gets them
    contiguous (it misreads them otherwise: the second assertion)."""
    fast = fast_copy(det_model, channels_last=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = fast.neck(fast.backbone(x))
    assert not feats[0].is_contiguous()
    rois = torch.tensor([[0., 3., 5., 40., 50.], [0., 20., 10., 90., 60.]])
    extractor = fast.roi_head.bbox_roi_extractor
    reference = det_model.roi_head.bbox_roi_extractor(tuple(f.contiguous() for f in feats[:4]),
                                                      rois)
    assert torch.equal(extractor(feats[:4], rois), reference)
    misread = det_model.roi_head.bbox_roi_extractor(feats[:4], rois)
    assert not torch.allclose(misread, reference)


def test_bf16_detection(det_model):
    # 10 detections per image, not 100: the mask head's bf16 convolutions over every detection
    # took 20 of this test's 25 s on a CPU without bf16 instructions; 10 run the same code
    cfg_model = build(DET_CONFIG, roi_head=dict(
        bbox_roi_extractor=dict(type='FP32SingleRoIExtractor'),
        mask_roi_extractor=dict(type='FP32SingleRoIExtractor')),
        test_cfg=dict(rcnn=dict(max_per_img=10)))
    cfg_model.load_state_dict(det_model.state_dict())
    fast = apply_fast_path(cfg_model, dict(bf16=True))
    data = det_data(det_model, training=True)
    reference, _ = losses(det_model, data)
    ours, loss = losses(fast, data, autocast=True)  # BF16OptimWrapper's autocast
    assert torch.isfinite(loss)
    # Each convolution and Linear rounds its inputs and weights to bf16 on the way.
    assert_losses_close(ours, reference, rounding_depth(det_model), torch.bfloat16)
    # inference autocasts through test_step and hands fp32 predictions to the metrics
    outputs = predictions(fast, det_data(det_model, training=False))
    assert [len(sample.pred_instances) for sample in outputs] == [10, 10]
    for sample in outputs:
        assert sample.pred_instances.bboxes.dtype == torch.float32
        assert sample.pred_instances.scores.dtype == torch.float32
        assert torch.isfinite(sample.pred_instances.bboxes).all()


def test_compile_detection_equals_eager(det_model):
    torch._dynamo.reset()
    fast = fast_copy(det_model, **AOT_EAGER)
    assert isinstance(fast.backbone.forward, WatchedCompile)
    # the compiled model's parameters keep their names: checkpoints load into a plain model
    assert list(fast.state_dict()) == list(det_model.state_dict())
    depth = reduction_depth(det_model)
    data = det_data(det_model, training=True)
    with LogRecords() as messages:
        (reference, _), (ours, _) = losses(det_model, data), losses(fast, data)
        data = det_data(det_model, training=False)
        assert_det_predictions_close(predictions(fast, data), predictions(det_model, data),
                                     depth)
    assert_losses_close(ours, reference, depth)
    assert fast.backbone.forward.eager_calls == []
    assert not [m for m in messages if 'ran eagerly' in m]


def logits(model, data):
    return torch.stack([sample.seg_logits.data for sample in predictions(model, data)])


def test_segmentation_switches(seg_model):
    torch._dynamo.reset()
    # Copies of the untrained model: a training step moves BatchNorm's running statistics.
    switches = [dict(channels_last=True), AOT_EAGER, dict(bf16=True)]
    models = [fast_copy(seg_model, **fast_path) for fast_path in switches]
    assert isinstance(models[1].extract_feat, WatchedCompile)
    assert isinstance(models[1].decode_head.forward, WatchedCompile)
    assert isinstance(models[1].auxiliary_head.forward, WatchedCompile)
    data, test_data = seg_data(seg_model, training=True), seg_data(seg_model, training=False)
    ref_logits = logits(seg_model, test_data)
    reference, _ = losses(seg_model, data)
    depth = reduction_depth(seg_model)
    for fast_path, fast in zip(switches[:2], models):
        assert list(fast.state_dict()) == list(seg_model.state_dict())
        assert_close_to_reference(logits(fast, test_data), ref_logits, depth,
                                  name=f'{fast_path} logits')
        ours, _ = losses(fast, data)
        assert_losses_close(ours, reference, depth)
    bf16_logits = logits(models[2], test_data)
    assert bf16_logits.dtype == torch.float32  # for mmseg's IoUMetric
    depth = rounding_depth(seg_model)
    assert_close_to_reference(bf16_logits, ref_logits, depth, torch.bfloat16, name='bf16 logits')
    ours, loss = losses(models[2], data, autocast=True)
    assert_losses_close(ours, reference, depth, torch.bfloat16)


# -- compile: fallbacks, limits, checkpoints --------------------------------------------------
def test_eager_fallback_is_logged():
    torch._dynamo.reset()
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch._dynamo.config.patch(recompile_limit=1), LogRecords() as messages:
        watched = WatchedCompile(conv.forward, 'conv', backend='aot_eager')
        watched(torch.randn(1, 3, 8, 8))
        watched(torch.randn(1, 3, 8, 8))  # the same shape: compiled, no message
        assert watched.eager_calls == []
        x = torch.randn(1, 3, 9, 9)
        out = watched(x)  # past the limit: eager
        watched(x)  # said once
    assert torch.equal(out, conv(x))  # the eager fallback is the module's own forward
    assert len(watched.eager_calls) == 1
    eager = [m for m in messages if 'ran eagerly' in m]
    assert len(eager) == 1 and 'conv' in eager[0] and '(1, 3, 9, 9)' in eager[0]
    torch._dynamo.reset()


def test_recompile_limit_covers_the_buckets(det_model):
    torch._dynamo.reset()
    from mmdet.registry import MODELS
    model = copy.deepcopy(det_model)
    model.data_preprocessor = MODELS.build(dict(type='BucketDetDataPreprocessor'))
    with torch._dynamo.config.patch(recompile_limit=8, accumulated_recompile_limit=8):
        apply_fast_path(model, AOT_EAGER)
        # 8 COCO buckets, each compiled for training and for inference
        assert torch._dynamo.config.recompile_limit == 16
        assert torch._dynamo.config.accumulated_recompile_limit == 16


def test_checkpoint_keys_stay_plain(det_model, tmp_path):
    """An OptimizedModule (torch.compile of a module) names parameters '_orig_mod.*'; the hook
    writes checkpoints with the plain names, which load into an uncompiled model."""
    model = copy.deepcopy(det_model)
    model.backbone = torch.compile(model.backbone, backend='aot_eager')
    state = model.state_dict()
    assert any('_orig_mod.' in key for key in state)
    checkpoint = dict(state_dict=state)
    FastPathHook().before_save_checkpoint(None, checkpoint)
    assert list(checkpoint['state_dict']) == list(det_model.state_dict())
    plain = copy.deepcopy(det_model)
    plain.load_state_dict(checkpoint['state_dict'], strict=True)
    state = det_model.state_dict()
    assert plain_state_dict(state) is state  # plain names: left as they are


# -- channels-last under DDP ------------------------------------------------------------------
def test_channels_last_wrapper_config():
    cfg = Config.fromfile(SEG_CONFIG)
    configure_fast_path(cfg, channels_last=True)
    # the arguments mmengine's Runner.wrap_model passes without a model_wrapper_cfg
    assert cfg.model_wrapper_cfg == dict(type='ChannelsLastDistributedDataParallel',
                                         broadcast_buffers=False, find_unused_parameters=False)
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
    configure_fast_path(cfg, channels_last=True)
    assert cfg.model_wrapper_cfg == dict(type='ChannelsLastDistributedDataParallel',
                                         find_unused_parameters=True)
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model_wrapper_cfg = dict(type='MMFullyShardedDataParallel')
    with LogRecords() as messages:
        configure_fast_path(cfg, channels_last=True)
    assert cfg.model_wrapper_cfg.type == 'MMFullyShardedDataParallel'
    assert any("model_wrapper_cfg.type='MMFullyShardedDataParallel'" in m for m in messages)


@pytest.fixture
def gloo_process_group():
    """This process as a gloo group of one: DDP builds its reducer and buckets as with more."""
    import socket

    import torch.distributed as dist
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


BUCKET_WARNING = 'Grad strides do not match bucket view strides'


def _layout_warnings(model_wrapper) -> list[str]:
    """One training step through the DDP ``model_wrapper``; the warnings about gradients whose
    strides differ from their views in DDP's buckets (each such gradient is copied into its
    view every step). torch says so once per process unless warn_always is set."""
    import warnings

    from mmengine.optim import OptimWrapper
    optim_wrapper = OptimWrapper(torch.optim.SGD(model_wrapper.parameters(), lr=0.0))
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            model_wrapper.train_step(seg_batch(2, 64, 64, num_classes=5), optim_wrapper)
    finally:
        torch.set_warn_always(warn_always)
    return [str(w.message) for w in caught if BUCKET_WARNING in str(w.message)]


def test_ddp_buckets_take_the_channels_last_layout(gloo_process_group):
    """--channels-last in a distributed run: the wrapper converts the model before DDP lays out
    its buckets in the parameters' strides, so no gradient mismatches its bucket view. Converted
    after wrapping (mmengine wraps in the Runner's constructor, the fast-path hook runs later),
    the channels-last gradients do."""
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import MODEL_WRAPPERS
    cfg = Config.fromfile(SEG_CONFIG)
    configure_fast_path(cfg, channels_last=True)
    model = build(SEG_CONFIG)
    wrapper = MODEL_WRAPPERS.build(cfg.model_wrapper_cfg, default_args=dict(module=model))
    stem = model.backbone.downsample_layers[0][0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    apply_fast_path(wrapper, cfg.fast_path)  # FastPathHook: nothing left to convert
    assert _layout_warnings(wrapper) == []

    late = MMDistributedDataParallel(module=build(SEG_CONFIG), broadcast_buffers=False)
    apply_fast_path(late, cfg.fast_path)
    assert _layout_warnings(late)


def test_resumed_optimizer_state_takes_the_parameter_layout():
    """Fused AdamW on the CPU misapplies the update when a channels-last parameter has NCHW
    state (a resumed run); match_optimizer_state gives the state the parameter's layout."""
    torch.manual_seed(0)
    start, grad = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    results = []
    for channels_last in (False, True):
        param = torch.nn.Parameter(start.clone())
        optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
        param.grad = grad.clone()
        optimizer.step()  # state in NCHW, as a checkpoint restores it
        if channels_last:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
            assert match_optimizer_state(optimizer) == 2  # exp_avg, exp_avg_sq
            assert optimizer.state[param]['exp_avg'].stride() == param.stride()
        param.grad = grad.clone().contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        optimizer.step()
        results.append(param.detach().contiguous())
    assert torch.equal(results[0], results[1])


# -- the real tool ----------------------------------------------------------------------------
@pytest.mark.slow  # a process that imports mmdet and compiles: about 40 s of a 2-core CPU
def test_train_tool_flags(tmp_path):
    """tools/train.py --bf16 --channels-last --compile on the toy COCO data: trains, validates
    (bf16 predictions through CocoMetric), and saves a checkpoint with the plain keys."""
    make_toy_data_in(tmp_path, num_train=8, num_val=2)
    result = run_tool([ROOT / 'tools/train.py', DET_CONFIG, '--work-dir', 'run', '--bf16',
                       '--channels-last', '--compile', '--cfg-options', 'train_cfg.max_iters=2',
                       'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
                       'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                       'val_dataloader.num_workers=0', 'fast_path.compile.backend=aot_eager',
                       'fast_path.compile.bucket_sizes=[(160,160)]'], cwd=tmp_path)
    log = result.stdout + result.stderr
    assert 'fast_path.bf16: bf16 autocast (training: BF16OptimWrapper' in log
    assert 'fast_path: fused AdamW kernel' in log
    assert 'size buckets [(160, 160)]' in log
    assert 'ran eagerly' not in log and 'larger than every bucket' not in log
    assert 'coco/bbox_mAP' in log
    checkpoint = torch.load(tmp_path / 'run/iter_2.pth', map_location='cpu', weights_only=True)
    plain = build(DET_CONFIG, shallow=False)
    assert list(checkpoint['state_dict']) == list(plain.state_dict())
    assert 'loss_scaler' not in checkpoint['optimizer']
