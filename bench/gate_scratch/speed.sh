set -x
cd /work/main
while pgrep -f "bash runs/gate/refit.sh" > /dev/null; do sleep 5; done
D=assets/models/phpq-cub200-lite0-64bit.onnx
python bench/indexing.py --large 0 --limit 1000 --model runs/gate/D.onnx --baseline-model $D
python -m bench.query --queries 40 --model runs/gate/D.onnx --cold-runs 0
python -m bench.query --queries 40 --cold-runs 0
python -m bench.collection_gate --fresh runs/gate/F.onnx --unseen runs/gate/U.onnx --other runs/gate/D.onnx
