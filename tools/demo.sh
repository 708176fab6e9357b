#!/usr/bin/env bash
# The README's main job (`make demo`): make the built-in toy data, train the ConvNeXt-atto
# UperNet and Mask R-CNN demo configs on it, evaluate them (mIoU; COCO box/mask AP) and save a
# picture of each model's prediction beside the input and the ground truth. Everything goes
# under work_dirs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=work_dirs/demo

if [ ! -f data/toy_coco/annotations/instances_val.json ] || [ ! -d data/toy_ade ]; then
  "$PY" tools/make_toy_data.py --out data --overwrite
fi
mkdir -p "$OUT"

for task in upernet mask_rcnn; do
  config=configs/$task/convnext_atto_toy.py
  echo "== $task: training $config"
  "$PY" tools/train.py "$config" --work-dir "$OUT/$task" "$@"
  checkpoint=$(cat "$OUT/$task/last_checkpoint")
  echo "== $task: evaluating $checkpoint"
  "$PY" tools/test.py "$config" "$checkpoint" --work-dir "$OUT/$task/test" \
    2>&1 | tee "$OUT/$task/test.log" | grep -E "Average (Precision|Recall)|mIoU|bbox_mAP|segm_mAP" || true
done

# The first held-out image of each set, beside its ground truth and the prediction
seg_image=$(ls data/toy_ade/images/validation/*.jpg | head -n 1)
seg_label=data/toy_ade/annotations/validation/$(basename "${seg_image%.jpg}").png
"$PY" tools/demo.py "$seg_image" configs/upernet/convnext_atto_toy.py \
  "$(cat "$OUT/upernet/last_checkpoint")" --gt "$seg_label" --out "$OUT/upernet_prediction.png"
det_image=$(ls data/toy_coco/val/*.png | head -n 1)
"$PY" tools/demo.py "$det_image" configs/mask_rcnn/convnext_atto_toy.py \
  "$(cat "$OUT/mask_rcnn/last_checkpoint")" --gt data/toy_coco/annotations/instances_val.json \
  --out "$OUT/mask_rcnn_prediction.png"
echo "== pictures (input, ground truth, prediction): $OUT/upernet_prediction.png" \
  "$OUT/mask_rcnn_prediction.png"
