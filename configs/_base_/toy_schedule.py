# Schedule of the CPU demos (configs/*/convnext_atto_toy.py): max_iters iterations of AdamW with
# layer-wise lr decay, validated and saved at the end. Each demo sets its lr, decay grouping and
# warm-up length.
max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9))
# Warmup and decay overlap from iteration 0 and multiply (both schedulers are chainable, eta_min
# is 0): a run shorter than the warmup still works. PolyLR has no `end`, so it ends at
# train_cfg.max_iters, whatever that is set to.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0),
]
randomness = dict(seed=0)
