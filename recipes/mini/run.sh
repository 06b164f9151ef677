#!/usr/bin/env bash
# The recipe that builds the mini model's trained parts, in stages (run from the repository root):
#   bash recipes/mini/run.sh [STAGE [STOP_STAGE]]      e.g. `bash recipes/mini/run.sh 1 2`
# Stage 0: synthesise the training corpus (8.5 h incl. the test split; ~18 min on 2 cores)
# Stage 1: acoustic codebook, 4096 x 40 ms log-mel slices (~5 min)
# Stage 2: semantic codebook, 1024 x Whisper tiny.en frames pooled to 16.67 Hz (~12 min)
# Stage 3: token files for the corpus (`stepaudio data tokenize`, ~4-7 utterances/s, 35 min; resumable; in token
#          files made by another codebook, that stream is made again: a new acoustic codebook takes 1.6 min), the
#          English words' times (`stepaudio data align`), and the built-in voices' cached prompt tokens
# Stage 4: the speech decoder's vocoder (HiFT, mel -> 22.05 kHz PCM)
# Stage 5: the speech decoder's flow (tokens -> mel), on the utterances that have token files
# Stage 6: the decoder's evaluation set: the 30 held-out English sentences read by training voices that
#          Whisper tiny.en understands (then: python bench/decoder.py --corpus data/eval-en)
# Stage 7: the TTS LM, on the utterances that have token files (on a GPU; then
#          python bench/tts.py --corpus data/corpus-v1 --tag-sentences 5)
# The codebooks' usage reports are written beside them (*.report.json).
# Training runs under bfloat16 autocast where the CPU has AMX / AVX512-BF16 (--precision auto); on a GPU it
# takes bf16 where the GPU has it (the TTS LM). What was tried besides these commands, and what each packaged
# part measured: docs/experiments.md.
set -euo pipefail
stage=${1:-0}
stop_stage=${2:-7}
corpus=${CORPUS:-data/corpus-v1}
assets=src/stepaudio/assets/mini
runs=${RUNS:-data/runs}
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
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  "$stepaudio" data tokenize "$corpus"
  # the English words' times, for stage 7's attention guide (~7 min on 2 cores)
  "$stepaudio" data align "$corpus"
  # the built-in voices' prompt tokens, cached by the codebooks of stages 1-2 (the caches are named by their hash)
  rm -f "$assets"/voices/*.npz
  "$(dirname "$stepaudio")/python" -c "from stepaudio.tts import TTS; tts = TTS.load('mini')
for name in tts.voices.builtin: tts.prepare_voice(tts.voices.get(name), tts.decoder)"
fi
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  "$stepaudio" train vocoder --manifest "$corpus/manifest.jsonl" --out "$runs/vocoder" --export "$assets/decoder" \
    --steps 2800 --batch-size 16 --segment-frames 64 --lr 1e-3 --warmup 200
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # ~75 min on 2 cores; token embeddings start from the codebooks' centroids (--embedding-init codebooks, the
  # default). Then the same run goes on under bf16 on a longer schedule, stopped at step 8000.
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow" --export "$assets/decoder" \
    --steps 4000 --batch-size 8 --max-tokens 200 --lr 1e-3 --warmup 100 --precision fp32
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow" --export "$assets/decoder" \
    --steps 9000 --stop-after 8000 --resume --batch-size 8 --max-tokens 200 --lr 1e-3 --warmup 100 --precision bf16
  # The packaged flow: that step-8000 flow fine-tuned with its encoder's dropout off (it underfits), 2500 steps,
  # then resumed on a 5000-step schedule (~30 min each on 2 cores).
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-nodrop" --export "$assets/decoder" \
    --init "$assets/decoder" --encoder-dropout 0 --steps 2500 --batch-size 8 --max-tokens 200 --lr 3e-4 --warmup 100 \
    --precision bf16
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-nodrop" --export "$assets/decoder" \
    --init "$assets/decoder" --encoder-dropout 0 --steps 5000 --resume --batch-size 8 --max-tokens 200 --lr 3e-4 \
    --warmup 100 --precision bf16
fi
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  "$stepaudio" data synth data/eval-en --max-utterances 0 --mix en=1 --test-voices 1 --seed 0 \
    --voices 'piper:*,flite:awb,flite:slt,flite:rms,festival:cmu*'
fi
if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # 1700 steps of 64 examples with the attention guide, ~5.5 min on one GPU (hours with --device cpu).
  # --batching random and --guide-pace even: the packaged weights were trained before batches of similar lengths
  # and word-timed guidance became the defaults.
  "$stepaudio" train tts --manifest "$corpus/manifest.jsonl" --out "$runs/tts" --export "$assets/tts" \
    --steps 1700 --batch-size 64 --lr 1e-3 --warmup 300 --save-every 500 --device cuda --workers 4 --batching random \
    --guide-pace even
fi
