"""Speech corpora for training: text sources, TTS engines, the manifest, synthesis and real-speech import.

A corpus is a folder with `manifest.jsonl` (one `Utterance` per line) and the audio files it names,
all 16 kHz mono 16-bit. `synth` renders text with every TTS engine installed here; `real` imports
recordings with transcripts into the same format.
"""
