#!/usr/bin/env bash
# The prepared device check (run on a lent GPU through the device tool, from the repo root, with `.gpu` carried):
#   1. the CUDA tests (tests/test_gpu.py),
#   2. `hde bench attention` on the GPU: the full grid without FlexAttention, then FlexAttention on a few points
#      (it compiles per shape, which would eat the grid's time),
#   3. `hde train` (the main job) on the GPU, and `hde bench pipeline`,
#   4. `hde bench encoder` (frozen encoding vs a bare AutoModel forward on the same batches, bf16) and
#      `hde bench pipeline --wikihop-scale` (43,738 + 5,129 WikiHop-shaped examples; a --limit keeps it inside its slot,
#      every stage is projected to the full counts).
# Everything lands in $OUT/gpu_results.tgz (plus a log), which benchmarks/results/gpu/ gets from it.
# `.gpu/` (git-ignored, made as described in benchmarks/results/gpu/README.md) holds the wheels the GPU image lacks and the packaged MiniLM
# (float16 weights, to fit the transfer limit). Each step has its own time limit, so a slow one costs only itself.
set -u
OUT=${OUT:-/tmp/gpu_out}; R=/tmp/gpu_results; mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD HDE_CACHE=/tmp/hde_cache TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
DEV=${DEV:-cuda}   # DEV=cpu: a dry run of the script's plumbing on a machine without a GPU
printf '#!/usr/bin/env python3\nimport sys\nfrom hde_kit.cli import main\nsys.exit(main(sys.argv[1:]))\n' > /tmp/hde; chmod +x /tmp/hde
pack() { tar czf "$OUT/gpu_results.tgz" -C "$R" . ; }
step() { local name=$1 limit=$2; shift 2; echo "=== $name (limit ${limit}s): $*"; local t0=$SECONDS
         timeout "$limit" "$@" 2>&1 | tee "$R/$name.log"; echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"; pack; }
{ nvidia-smi; python3 -c "import torch, torch_geometric, transformers; print('torch', torch.__version__, 'PyG', torch_geometric.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else None)"; } > "$R/machine.log" 2>&1
cat "$R/machine.log"
STEPS=${STEPS:-"tests bench_attention bench_flex train bench_pipeline bench_encoder bench_wikihop"}   # a subset, in any order, to re-run part of it
run() { case " $STEPS " in *" $1 "*) step "$@";; esac; }
for s in $STEPS; do case $s in
  tests) run tests 45 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py
  ;; bench_attention) run bench_attention 150 /tmp/hde bench attention --device "$DEV" --out "$R/attention" --repeats 5 --budget 0.2 --max-repeats 10 \
     --kernels hde_sparse hde_sparse_csr hde_dense hde_padded hde_auto pyg_transformer pyg_gat sdpa_layer sdpa
  ;; bench_flex) run bench_flex 60 /tmp/hde bench attention --device "$DEV" --out "$R/attention_flex" --repeats 5 --budget 0.2 \
     --nodes 1024 4096 --densities 0.01 0.1 --hde-graphs --kernels hde_sparse_csr hde_dense sdpa flex
  ;; train) run train 100 /tmp/hde train train.device="$DEV" train.run_dir=/tmp/run_gpu --quiet
     cp /tmp/run_gpu/metrics.jsonl /tmp/run_gpu/config.yaml "$R/" 2>/dev/null; pack
  ;; bench_pipeline) run bench_pipeline 40 /tmp/hde bench pipeline --device "$DEV" --out "$R/pipeline"
  ;; bench_encoder) run bench_encoder 60 /tmp/hde bench encoder --device "$DEV" --out "$R/encoder" --n 64 --repeats 3
  ;; bench_wikihop) run bench_wikihop 150 /tmp/hde bench pipeline --wikihop-scale --device "$DEV" --out "$R/pipeline" \
     --limit ${WIKIHOP_LIMIT:-4096} --encode-sample ${WIKIHOP_ENCODE:-4096} --batch-size 64
  ;; esac; done
ls -R "$R" | head -50
