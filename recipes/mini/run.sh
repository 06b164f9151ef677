#!/usr/bin/env bash
# The recipe that builds the mini model's trained parts, in stages (run from the repository root):
#   bash recipes/mini/run.sh [STAGE [STOP_STAGE]]      e.g. `bash recipes/mini/run.sh 1 2`
# Stage 0: synthesise the training corpus (8.5 h incl. the test split; ~18 min on 2 cores)
# Stage 1: acoustic codebook, 4096 x 40 ms log-mel slices (~5 min)
# Stage 2: semantic codebook, 1024 x Whisper tiny.en frames pooled to 16.67 Hz (~12 min)
# Stage 5: the TTS LM (needs the corpus tokenized: `stepaudio data tokenize`), trained on the utterances with
#          token files; one process, OMP_NUM_THREADS=1 (see the stage for steps and time)
# The codebooks' usage reports are written beside them (*.report.json).
set -euo pipefail
stage=${1:-0}
stop_stage=${2:-2}
corpus=${CORPUS:-data/corpus-v1}
assets=src/stepaudio/assets/mini
stepaudio=${STEPAUDIO:-.venv/bin/stepaudio}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  "$stepaudio" data synth "$corpus" --hours 8 --seed 0 --jobs 2
fi
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  "$stepaudio" train kmeans acoustic --manifest "$corpus/manifest.jsonl" --out "$assets/acoustic_codebook.safetensors" \
    --codes 4096 --max-hours 2 --iterations 30 --seed 0
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  "$stepaudio" train kmeans semantic --manifest "$corpus/manifest.jsonl" --out "$assets/semantic_codebook.safetensors" \
    --codes 1024 --max-hours 1 --iterations 30 --seed 0
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # The packaged weights: TTS_RECIPE_NOTE
  OMP_NUM_THREADS=1 "$stepaudio" train tts --manifest "$corpus/manifest.jsonl" --out "${runs:-runs}/tts" \
    --export "$assets/tts" --steps TTS_STEPS --batch-size 8 --lr 1e-3 --warmup 100 --save-every 100
fi
