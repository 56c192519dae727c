set -x
cd /work/main
time phpq-export assets/models/phpq-cub200-lite0-64bit.onnx -o runs/gate/D.onnx --fp16-weights --general-dim 256 --search-from-recipe
time phpq-export runs/zoom/F.onnx -o runs/gate/F.onnx --fp16-weights --general-dim 256 --search-from-recipe
time phpq-export runs/zoom/U.onnx -o runs/gate/U.onnx --fp16-weights --general-dim 256 --search-from-recipe
time phpq-export runs/val/V.onnx -o runs/gate/V.onnx --fp16-weights --general-dim 256 --search-from-recipe
python - <<'PY'
from pathlib import Path
from phpq.model import PHPQModel
from phpq_train.export.onnx_export import write_metadata
for name in "FUV":
    old = PHPQModel(Path(f"runs/gate/unrotated/{name}.onnx"), prefer_cuda=False)
    new = Path(f"runs/gate/{name}.onnx")
    print(name, write_metadata(new, new, {"class_prototypes": old.info.metadata["class_prototypes"]})[:12])
PY
phpq-eval --model runs/gate/F.onnx --data ../shared/data/cub200/train --protocol fresh --json
phpq-eval --model runs/gate/D.onnx --data ../shared/data/birds525-dev --protocol other --json
phpq-eval --model runs/gate/U.onnx --data ../shared/data/cub200/train --protocol unseen --json
phpq-eval --model runs/gate/V.onnx --data ../shared/data/cub200/train --protocol val --json
phpq-eval --model runs/gate/D.onnx --data runs/small-other --protocol other --json
phpq-eval --model runs/gate/D.onnx --data ../shared/data/birds525-dev --protocol other-held --json
