#!/usr/bin/env bash
# The recipe that builds the mini model's trained parts, in stages (run from the repository root):
#   bash recipes/mini/run.sh [STAGE [STOP_STAGE]]      e.g. `bash recipes/mini/run.sh 1 2`
# Stage 0: synthesise the training corpus (8.5 h incl. the test split; ~18 min on 2 cores)
# Stage 1: acoustic codebook, 4096 x 40 ms log-mel slices (~5 min; a learned tokenizer is tried in its comment)
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
# Training runs under bfloat16 autocast where the CPU has AMX / AVX512-BF16 (--precision auto); weights packaged
# before that option (the vocoder, the flow's first 4000 steps) were trained with --precision fp32; on a GPU it
# takes bf16 where the GPU has it (the TTS LM).
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
  # Tried and not packaged (2026-11-27), each measured against the packaged decoder in one session, with
  # bench/decoder.py's resynth and judge run from a /tmp script over both tokenizers:
  # - the same codebook over log-mel with each utterance's mean taken away (--utterance-mean, below: the codes
  #   spend themselves on what is said; the voice prompt gives the average spectrum). Vocoding the centroids
  #   (the removed mean added back) was more intelligible than the packaged codebook's (eval-en 0.57 vs 0.70,
  #   LibriVox 0.48 vs 0.76). With the corpus's acoustic codes made again and the packaged flow fine-tuned on
  #   them (stage 5's flow, --init "$assets/decoder" --embedding-init acoustic --steps 2000 --lr 5e-4
  #   --precision bf16, 27 min), resynth was LibriVox 0.634 vs 0.718 but eval-en 0.588 vs 0.544: no clear gain
  #   after a quarter of the packaged flow's steps, and the TTS LM would need training again on the new codes.
  #   Probed after (/tmp scripts): its codes are no easier for a TTS LM to predict (held-out cross-entropy under
  #   count models: 11.6 bits alone and 6.7 given the previous code, against 11.4 and 5.8 for the packaged codes).
  #   Taking away a running mean instead (it would stream exactly; the corpus mean as a prior for the first
  #   0.5-2 s) loses the gain: centroid vocoding LibriVox 0.79-0.80, eval-en 0.59-0.66, against 0.52 and 0.54
  #   with the whole utterance's mean in the same run.
  # - k-means over Whisper tiny.en frames pooled to 25 Hz (the official 25 Hz stream is an ASR encoder's too):
  #   the same fine-tune resynthesised eval-en 0.948, LibriVox 0.915. Those codes keep far less than mel slices.
  # - codes of the spectral envelope (20 cepstra x 2 x 20 ms, the utterance's mean taken away; the harmonics left
  #   to the decoder): a small CTC reader of the codes read them no better than the packaged ones (CER 0.62 both).
  # The utterance-mean codebook of the first experiment:
  #   "$stepaudio" train kmeans acoustic --manifest "$corpus/manifest.jsonl" --out "$assets/acoustic_codebook.safetensors" \
  #     --codes 4096 --max-hours 2 --iterations 30 --seed 0 --utterance-mean
  # - a learned tokenizer (2026-11-27, `train acoustic`, the command below, 48 min on 2 cores): a convolutional encoder
  #   over the same slices, its output rounded to 8 levels in 4 dimensions (FSQ, 4096 codes), trained with a decoder
  #   that is given the speaker's GE2E embedding, so the codes need not carry the voice. The voices share its codes
  #   (python bench/token_voices.py on the corpus re-tokenized with it: English acoustic 0.41 between voices, 0.03 of
  #   the tokens on codes one voice owns; the k-means codes 0.13 and 0.34), and they keep more of what was said: that
  #   decoder's own mel, vocoded by the mini vocoder, scored eval-en 0.43, LibriVox 0.47 (a /tmp script with
  #   bench/decoder.py's sets and judge; the packaged flow's resynth 0.49 / 0.78). They are harder to predict from the
  #   code before (count models on the test split: 10.0 bits against 7.5). Not packaged yet: the flow fine-tuned on them
  #   (stage 5's comment) resynthesised better (eval-en 0.475, LibriVox 0.535), but the TTS LM must first be trained
  #   again on them (stage 7, on a GPU).
  #   Its export replaces the k-means codebook; stage 3 then re-tokenizes the corpus with it.
  #   "$stepaudio" train acoustic --manifest "$corpus/manifest.jsonl" --out "$runs/acoustic" \
  #     --export "$assets/acoustic_codebook.safetensors" --steps 3000 --batch-size 32 --lr 1e-3 --warmup 200 \
  #     --log-every 50 --save-every 500 --precision fp32
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  "$stepaudio" train kmeans semantic --manifest "$corpus/manifest.jsonl" --out "$assets/semantic_codebook.safetensors" \
    --codes 1024 --max-hours 1 --iterations 30 --seed 0
  # Tried and not packaged (2026-11-26): a codebook trained under a CTC character loss (below, ~12 min of encoder
  # frames + 15 min on 2 cores). Its codes keep more of the words (a 2-conv CTC reader: test CER en 0.43, zh 0.77,
  # yue 0.78, perplexity 822 of 1024; a /tmp probe gave the k-means codes CER 0.64 in English), but with the corpus
  # re-tokenized, the packaged flow fine-tuned on it (--init DIR --embedding-init semantic, 2000 steps of 8, lr 5e-4,
  # bf16, 31 min) resynthesised worse (bench/decoder.py: eval-en 0.580, LibriVox 0.761 vs 0.51-0.53 / 0.69-0.72).
  # The same run resumed to a 6000-step schedule (--resume --steps 6000, 70 min more) was no clear gain: bench/decoder.py
  # run in one session for both (the candidate from a git worktree holding it), eval-en 0.558 vs the packaged 0.516,
  # LibriVox 0.676 vs 0.718, within the ±0.04 that runs of the same weights differ by. With a TTS LM trained on these
  # tokens (stage 7's command, 1500 steps on an H200) and the voices re-cached, bench/tts.py still heard babble
  # (WER 1.18 vs the packaged 1.23; cloning 13/15 vs 14/15), and streamed semantic codes differed from offline ones
  # more often (tests/tokenizer/test_dual.py: 20 % of them vs < 15 %). So the k-means codebook stays packaged.
  #   "$stepaudio" train semantic --manifest "$corpus/manifest.jsonl" --out "$runs/semantic" \
  #     --export "$assets/semantic_codebook.safetensors" --max-hours 4 --steps 3000 --batch-size 16 --lr 2e-3 \
  #     --warmup 100 --log-every 50 --save-every 500 --device cpu
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
  # The packaged vocoder was made on a shared machine as --steps 6000 stopped after step 500, then --resume
  # --steps 2800 (~1.5 h in all); this single run is the intended recipe.
  "$stepaudio" train vocoder --manifest "$corpus/manifest.jsonl" --out "$runs/vocoder" --export "$assets/decoder" \
    --steps 2800 --batch-size 16 --segment-frames 64 --lr 1e-3 --warmup 200
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # ~75 min on 2 cores (about 1.1 s a step), on all 9138 utterances; its token embeddings start from the codebooks'
  # centroids (--embedding-init codebooks, the default): from random ones (the flow packaged before) 4800 steps left
  # them where they started, and resynth was less intelligible. Then the same run continued under bf16 on a longer
  # schedule, stopped partway (~17 min for each 1000 steps) at step 8000, where the fine-tune below starts.
  # bench/decoder.py on eval-en, resynth WER 0.635 (step 4000, temperature 1) -> 0.508 (step 8000, temperature 0.2,
  # MINI_FLOW's); LibriVox 0.76 -> 0.69. The end of that schedule (step 9000) was no better (/tmp sweep: eval-en 0.54, LibriVox 0.80).
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow" --export "$assets/decoder" \
    --steps 4000 --batch-size 8 --max-tokens 200 --lr 1e-3 --warmup 100 --precision fp32
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow" --export "$assets/decoder" \
    --steps 9000 --stop-after 8000 --resume --batch-size 8 --max-tokens 200 --lr 1e-3 --warmup 100 --precision bf16
  # The packaged flow: that step-8000 flow fine-tuned with its encoder's dropout off (it underfits: its resynth of
  # training utterances was no more intelligible than of held-out ones), 2500 steps, then resumed on a 5000-step
  # schedule (~30 min each on 2 cores). Resynth WER against the step-8000 flow, both in one run of a /tmp script
  # with bench/decoder.py's resynth and judge: eval-en 0.484 vs 0.536, the corpus's 60 English test sentences
  # 0.536 vs 0.595, LibriVox 0.761 vs 0.775 (at step 2500: 0.536, 0.544, 0.761).
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-nodrop" --export "$assets/decoder" \
    --init "$assets/decoder" --encoder-dropout 0 --steps 2500 --batch-size 8 --max-tokens 200 --lr 3e-4 --warmup 100 \
    --precision bf16
  "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-nodrop" --export "$assets/decoder" \
    --init "$assets/decoder" --encoder-dropout 0 --steps 5000 --resume --batch-size 8 --max-tokens 200 --lr 3e-4 \
    --warmup 100 --precision bf16
  # Training on from there was no gain (bench/decoder.py --corpus data/eval-en --flow RUN/export, 2026-11-27): 2000
  # more steps of that fine-tune (lr 3e-4) resynthesised eval-en 0.549 vs 0.492, LibriVox 0.746 vs 0.775; the first
  # 1000 of a 10000-step schedule 0.530 / 0.789.
  # Tried and not packaged (2026-11-27): the flow reads the words from the acoustic tokens (quantised mel slices),
  # which a TTS LM predicts worst, and hardly from the semantic ones. Resynth WER on eval-en (bench/decoder.py):
  # 0.49 as packaged, 0.67 with the semantic tokens shuffled in time, 3.5 with the acoustic ones shuffled. So the
  # packaged flow was fine-tuned on acoustic tokens partly replaced by random codes (the command below, 5000 steps,
  # 78 min). Measured by /tmp scripts with the bench's resynth and judge: with 0 / 50 / 100 % of the acoustic tokens random, resynth 0.58 / 1.00 /
  # 1.28 against the packaged flow's 0.49 / 1.97 / 1.76. More robust, but the semantic codes alone do not carry the
  # words (a CTC-trained semantic codebook, stage 2's comment, might), and the packaged TTS LM's tokens stay babble
  # either way (the first 30 test sentences decoded offline: WER 1.47 vs 1.62).
  #   "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-corrupt" --export "$runs/flow-corrupt" \
  #     --init "$assets/decoder" --encoder-dropout 0 --acoustic-corruption 0.9 --steps 5000 --batch-size 8 \
  #     --max-tokens 200 --lr 3e-4 --warmup 100 --precision bf16
  # Tried and not packaged (2026-11-27): the packaged flow fine-tuned on the learned acoustic tokens of stage 1's
  # comment (the corpus re-tokenized with them, the tokenizer in the assets' place as its --export puts it), its
  # encoder also given the speaker embedding (--encoder-speaker: those codes leave the voice out), 3000 steps
  # (39 min). bench/decoder.py --corpus data/eval-en --flow "$runs/flow-fsq/export" (the tokenizer copied beside
  # it), in one run with the packaged flow: eval-en 0.475 vs 0.492, LibriVox 0.535 vs 0.775; its encoder's rough mel
  # is worse than the tokenizer's own decoder (eval-en 0.43 above). Better on real speech, but both numbers come from
  # tokens the packaged TTS LM does not make: packaging waits for a TTS LM trained on them (a GPU session).
  #   "$stepaudio" train flow --manifest "$corpus/manifest.jsonl" --out "$runs/flow-fsq" --export "$runs/flow-fsq/export" \
  #     --init "$assets/decoder" --encoder-speaker --embedding-init acoustic --encoder-dropout 0 --steps 3000 \
  #     --batch-size 8 --max-tokens 200 --lr 5e-4 --warmup 100 --save-every 500 --precision bf16
fi
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  "$stepaudio" data synth data/eval-en --max-utterances 0 --mix en=1 --test-voices 1 --seed 0 \
    --voices 'piper:*,flite:awb,flite:slt,flite:rms,festival:cmu*'
fi
if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # The packaged weights: 1700 steps of 64 examples (~12 epochs of the 9138 utterances) with the attention guide,
  # on one GPU (an H200 shared with a second run: ~5.5 min, 0.18 s a step; with --device cpu the same command
  # takes hours). bench/tts_text_use.py --split test (teacher-forced, 40 held-out utterances): accuracy 0.39 with
  # their own transcript, 0.36 with another (loss 2.48 vs 2.74), where the weights packaged before (1200 CPU steps
  # of 8 without the guide) had 0.19 either way (4.16 vs 4.17); bench/tts.py: WER 1.23 (was 1.60), cloning 14/15
  # (was 13/15). What it says still does not follow the text. The same run at 8 x 384 learned the training set
  # by heart (teacher-forced accuracy 0.975 there, greedy decoding gives its utterances back token for token) and
  # did worse on held-out speech (a /tmp check on 60 test utterances: loss 2.97 / 3.31 on the semantic / acoustic
  # tokens against 2.35 / 2.71 at 6 x 256): on these tokens more capacity memorises rather than reads.
  # Earlier CPU runs with the guide to step 4300 of 8 examples also babbled (the first 12 test sentences: WER 1.44).
  # Why it cannot read (2026-11-27): the acoustic codes are each voice's own (python bench/token_voices.py: English
  # voices share 0.13 of their acoustic code distributions, 0.70 of their semantic ones; one voice's two halves
  # 0.86), so the LM learns what a text becomes voice by voice, from ~290 English utterances each.
  # Tried and not packaged (2026-11-27, CPU; bench/tts.py --tag-sentences 1, same session: packaged WER 1.41):
  # - one voice with ten times the speech (piper joe, 3077 utterances, `stepaudio data synth data/corpus-joe --hours 3
  #   --mix en=1 --voices piper:en_US-joe-medium --test-voices 1`), a fresh LM, 900 steps of 16 (~47 min): WER 1.64,
  #   cloning lost (6/15); teacher-forced on joe's test speech (bench/tts_text_use.py --corpus data/corpus-joe
  #   --split test) loss 2.78 with its own text vs 2.95 with another, the packaged LM 3.40 vs 3.79.
  # - the packaged LM fine-tuned on input speech partly replaced by random tokens, so that the text is worth
  #   reading (the command below, 500 steps of 16, 32 min): held-out loss 2.36 own / 2.58 other text (packaged
  #   2.48 / 2.74), but WER 2.00, more babble.
  #   "$stepaudio" train tts --manifest "$corpus/manifest.jsonl" --out "$runs/tts-sc" --init "$assets/tts" \
  #     --speech-corruption 0.5 --steps 500 --batch-size 16 --lr 3e-4 --warmup 50 --device cpu
  # Measured (2026-11-27, CPU): do the learned acoustic codes of stage 1's comment make a TTS LM read its text better?
  # Two fresh LMs side by side, one core each (OMP_NUM_THREADS=1 taskset -c N, the command below with --steps 2000
  # --batch-size 16 --lr 1e-3 --warmup 100 --save-every 250 --device cpu, batches by length), on corpus-v1 (k-means
  # codes) and on a copy re-tokenized with the learned tokenizer (same semantic codes); each export scored by
  # bench/tts_text_use.py --corpus C --split test at step 1500 (loss own / other transcript; semantic loss own / other):
  # k-means 2.495 / 2.554, 2.325 / 2.438; learned 4.138 / 4.202, 2.430 / 2.551 (step 1000: gaps 0.02-0.04 and
  # 0.04-0.06). The text helps alike on both, so the learned codes alone will not make the LM read; they would
  # still help the decoder on real speech (stage 5's comment). ~1.7 h for 1500 steps of 16 on one core beside the other run.
  # --batching random: the packaged weights were trained before batches of similar lengths became the default.
  # On 2 cores (--device cpu, batches of 16, bf16, steps 11-70 of a 300-step schedule, a /tmp A/B run twice in one
  # session): 2.51 / 2.72 s a step before the attention guide's loss became one weighted sum, 1.94 / 2.38 after it,
  # 1.37 / 2.03 with batches by length (1.3-1.8x in all; this machine's speed varied between the two runs).
  # On a CPU without native bfloat16 (an AMD EPYC without AVX512-BF16, 2026-12-07) --precision auto trains in
  # float32: 5.55 s a step, 2000 steps ~3 h. Setting glibc's mmap threshold to 1 MiB (so freed tensors go back to
  # the system) cut the peak RSS of a 30-step run from 3.6 to 2.9 GB but made it 47 % slower (8.15 s a step).
  # The packaged weights were trained before stage 3 timed the words, with the even-pace guide alone (--guide-pace
  # even, below); the default, --guide-pace words, guides the aligned utterances a word wide.
  # The packaged LM's guided heads keep that even pace rather than follow the words (bench/tts_attention.py, 40
  # test utterances: attention mass 0.38 around the word read, 0.65 around the even pace). Fine-tuned 80 steps of 16
  # with each pace (2026-12-07, the command below, one core each, 17 min), the word-timed heads follow the words
  # on held-out speech (0.62 around the word read, 0.24 around the even pace; the even arm 0.37 / 0.62), but the LM
  # reads its text no more: bench/tts_text_use.py --split test, loss own / other transcript 2.507 / 2.740 (semantic
  # 2.451 / 2.826) against the even arm's 2.517 / 2.767 (2.458 / 2.872) and the packaged 2.481 / 2.738 (2.420 / 2.846).
  #   "$stepaudio" train tts --manifest "$corpus/manifest.jsonl" --out "$runs/ft-words" --init "$assets/tts" \
  #     --guide-pace words --steps 80 --batch-size 16 --lr 3e-4 --warmup 10 --save-every 80 --device cpu
  # A fresh LM trained with the word-timed guide (2026-12-07, the 2026-11-27 command above on 2 cores in fp32:
  # --steps 2000 --stop-after 1000 --batch-size 16 --lr 1e-3 --warmup 100 --save-every 250 --device cpu, 89 min,
  # peak RSS 3.9 GB, then --resume --stop-after 1500, 43 min) reads its text hardly more than the even-pace control
  # did: bench/tts_text_use.py --split test, loss own / other transcript at step 1000 2.885 / 2.920 (semantic
  # 2.648 / 2.707) against 2.870 / 2.894 (2.651 / 2.694), at step 1500 2.526 / 2.596 (2.353 / 2.476) against
  # 2.495 / 2.554 (2.325 / 2.438), while its heads follow the words (bench/tts_attention.py at step 1000: 0.71
  # around the word read, 0.29 around the even pace). Step 500: 4.741 / 4.749; step 750: 3.401 / 3.420.
  # Decoding does not make up for it either (2026-12-07, /tmp scripts on the first 10 test sentences of
  # bench/tts.py with the packaged LM and decoder; WER 1.21 with the official sampling): temperature 0.3 gave
  # 1.31; guidance on the text (logits + w (logits - logits with the text left out), which the LM never saw
  # in training) 2.98 at w = 1 and 4.00 at w = 3 (it repeats itself); the training band around the even pace,
  # at the expected duration, added to the guided heads' scores as a log-Gaussian (x1, x4) 1.20 and 1.20: what
  # those heads read hardly changes what the LM says. Nor is the English text hard to read: it takes 290 of the
  # 4096 pieces (the rest are mostly CJK characters), near letters ("▁H e ll o ▁th er e,"), and all but 0.06 %
  # of its occurrences are of pieces seen more than 10 times. Teacher-forced, the text helps all along an
  # utterance (semantic loss gap 0.40 / 0.30 / 0.36 / 0.59 / 0.55 by fifth), not only at its start.
  "$stepaudio" train tts --manifest "$corpus/manifest.jsonl" --out "$runs/tts" --export "$assets/tts" \
    --steps 1700 --batch-size 64 --lr 1e-3 --warmup 300 --save-every 500 --device cuda --workers 4 --batching random \
    --guide-pace even
fi
