#!/usr/bin/env bash
# The whole GPU benchmark in one go: bf16 training and inference of ResNet-50, ViT-B/16,
# Swin-T and MAE ViT-L pretraining at batch 256 (jaxbones next to timm / transformers under
# AMP bf16, eager and torch.compile), then the cuDNN flash-attention check. At most 11.5 minutes
# on one H100/H200; needs only jax (CUDA), flax, optax, torch, timm and transformers.
#
#   bash scripts/gpu_benchmark.sh OUT.jsonl            # on the GPU host
#   bash scripts/gpu_benchmark.sh OUT.jsonl --smoke    # tiny sizes on CPU (tests the script)
#
# Each invocation has its own time limit, most important first, so a slow compile or a
# failure costs only its own rows; the limits are what one H200 needed (one torch.compile of
# ResNet-50 takes ~55 s, a Swin-T train step did not finish building in 110 s). PyTorch's eager
# and compiled rows run in the same invocation as the JAX row they are compared with. With
# `TRACE=DIR` every row is profiled into DIR (see scripts/trace_summary.py). Render the table
# with `python -m scripts.benchmark --render`.
set -u
# JAX and PyTorch share the GPU inside one process: JAX allocates as it goes instead of
# taking 75% of the memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
out=${1:?usage: gpu_benchmark.sh OUT.jsonl [--smoke]}
smoke=${2:-}
batch=256 steps=10 warmup=3 px=() scale=1
# on a CPU the full-size models compile for minutes even at 32 px: four times the limits
if [[ $smoke == --smoke ]]; then batch=2 steps=1 warmup=1 px=(--img-size 32) scale=4; fi
python3 -c "import jax, flax, optax, torch, timm; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, 'timm', timm.__version__, jax.devices())"

bench() {  # seconds, then scripts.benchmark arguments
  local limit=$(($1 * scale))
  shift
  echo "$(date +%T) start ($limit s): $*"
  timeout "$limit" python3 -m scripts.benchmark --no-render --out "$out" --dtypes bfloat16 \
    --batch "$batch" --steps "$steps" --warmup "$warmup" ${TRACE:+--trace "$TRACE"} "$@" ||
    echo "FAILED or timed out: $*"
}
bench 150 --models vit_base_patch16_224 --modes train --torch eager,compile "${px[@]}"
bench 150 --models resnet50 --modes train --torch eager,compile "${px[@]}"
bench 100 --models mae_vit_large_patch16_dec512d8b --modes train --variants scan=true \
  --torch eager "${px[@]}"
bench 60 --models vit_base_patch16_224,resnet50 --modes infer --torch eager "${px[@]}"
if [[ $smoke == --smoke ]]; then
  bench 150 --models swin_tiny_patch4_window7_224 --modes infer --torch none --img-size 224 \
    --batch 1
else
  bench 150 --models swin_tiny_patch4_window7_224 --modes train --torch eager
fi
if [[ $smoke == --smoke ]]; then
  timeout 120 python3 -m scripts.check_attention --out "$out" --smoke
else
  timeout 60 python3 -m scripts.check_attention --out "$out" --batch 64
fi
