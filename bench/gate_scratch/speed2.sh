set -x
cd /work/main
while pgrep -f "bash runs/gate/speed.sh" > /dev/null; do sleep 5; done
python -m bench.query --queries 60 --cold-runs 0
python -m bench.query --queries 60 --model runs/gate/D.onnx --cold-runs 0
python -m bench.similarity_scale --model runs/gate/D.onnx
