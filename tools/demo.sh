#!/usr/bin/env bash
# The README's main job (`make demo`): make the built-in toy data, train the ConvNeXt-atto
# UperNet and Mask R-CNN demo configs on it (evaluating every 60 iterations), evaluate them with
# tools/test.py (mIoU over the background and the 5 shapes; COCO box/mask AP), save a picture of
# each model's prediction beside the input and the ground truth and one of its training curves,
# and print a summary. Everything goes under work_dirs/demo/.
#
# Each tool's whole output goes to a log beside its results; the terminal shows the training
# and evaluation lines (VERBOSE=1: everything). Arguments are passed on to tools/train.py,
# e.g. `bash tools/demo.sh --cfg-options train_cfg.max_iters=600`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=work_dirs/demo
VAL_INTERVAL=60
PROGRESS='Iter\((train|val|test)\)|^wrote |^error|Error|Traceback'

# run LOG COMMAND...: COMMAND's output into LOG and, filtered, onto the terminal; on failure,
# the last lines of LOG and the demo stops with COMMAND's exit status.
run() {
  local log=$1 status
  shift
  set +e
  if [ "${VERBOSE:-0}" = 1 ]; then
    "$@" 2>&1 | tee "$log"
  else
    "$@" 2>&1 | tee "$log" | grep --line-buffered -E "$PROGRESS"
  fi
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "!! $* failed (exit $status); the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit "$status"
  fi
}

# test_metric LOG NAME: the value tools/test.py printed for metric NAME
test_metric() {
  grep -E 'Iter\(test\)' "$1" | tail -n 1 | grep -oE "(^| )$2: [0-9.]+" | awk '{print $2}'
}

if [ ! -f data/toy_coco/annotations/instances_val.json ] || [ ! -d data/toy_ade ]; then
  "$PY" tools/make_toy_data.py --out data --overwrite
fi
mkdir -p "$OUT"

declare -A MODEL=([upernet]='UperNet ConvNeXt-atto' [mask_rcnn]='Mask R-CNN ConvNeXt-atto')
for task in upernet mask_rcnn; do
  config=configs/$task/convnext_atto_toy.py
  mkdir -p "$OUT/$task"
  echo "== $task: training $config (log: $OUT/$task/train.log)"
  run "$OUT/$task/train.log" "$PY" tools/train.py "$config" --work-dir "$OUT/$task" \
    --cfg-options train_cfg.val_interval=$VAL_INTERVAL "$@"
  checkpoint=$(cat "$OUT/$task/last_checkpoint")
  echo "== $task: evaluating $checkpoint (log: $OUT/$task/test.log)"
  run "$OUT/$task/test.log" "$PY" tools/test.py "$config" "$checkpoint" \
    --work-dir "$OUT/$task/test"
  run "$OUT/$task/curves.log" "$PY" tools/analysis/plot_curves.py "$OUT/$task" \
    --out "$OUT/${task}_curves.png" --title "${MODEL[$task]}, toy set"
done

# The first held-out image of each set, beside its ground truth and the prediction
echo "== pictures of the predictions"
seg_image=$(ls data/toy_ade/images/validation/*.jpg | head -n 1)
seg_label=data/toy_ade/annotations/validation/$(basename "${seg_image%.jpg}").png
run "$OUT/upernet/picture.log" "$PY" tools/demo.py "$seg_image" \
  configs/upernet/convnext_atto_toy.py "$(cat "$OUT/upernet/last_checkpoint")" \
  --gt "$seg_label" --out "$OUT/upernet_prediction.png"
det_image=$(ls data/toy_coco/val/*.png | head -n 1)
run "$OUT/mask_rcnn/picture.log" "$PY" tools/demo.py "$det_image" \
  configs/mask_rcnn/convnext_atto_toy.py "$(cat "$OUT/mask_rcnn/last_checkpoint")" \
  --gt data/toy_coco/annotations/instances_val.json --out "$OUT/mask_rcnn_prediction.png"

seg_log=$OUT/upernet/test.log
det_log=$OUT/mask_rcnn/test.log
val_images=$(ls data/toy_ade/images/validation/*.jpg | wc -l)
cat <<EOF

== demo done in $((SECONDS / 60)) min $((SECONDS % 60)) s
models:
  ${MODEL[upernet]}      $(cat "$OUT/upernet/last_checkpoint")
  ${MODEL[mask_rcnn]}   $(cat "$OUT/mask_rcnn/last_checkpoint")
metrics on the $val_images held-out images (tools/test.py):
  UperNet     mIoU $(test_metric "$seg_log" mIoU) (background and 5 shapes), aAcc $(test_metric "$seg_log" aAcc), mAcc $(test_metric "$seg_log" mAcc)
  Mask R-CNN  bbox AP $(test_metric "$det_log" coco/bbox_mAP), segm AP $(test_metric "$det_log" coco/segm_mAP) (bbox AP50 $(test_metric "$det_log" coco/bbox_mAP_50))
pictures:
  $OUT/upernet_prediction.png    input, ground truth, prediction
  $OUT/mask_rcnn_prediction.png  input, ground truth, prediction
  $OUT/upernet_curves.png        loss, learning rate, held-out metrics by iteration
  $OUT/mask_rcnn_curves.png      loss, learning rate, held-out metrics by iteration
logs: $OUT/*/train.log, $OUT/*/test.log
EOF
