"""Training data for the KAME front-end: text QA -> spoken dialogues -> speech -> simulated oracles.

Stages (each a `kamevoice data ...` command, each resumable and streaming):

1. `dialogues`: question/answer JSONL -> two-party dialogue scripts (`dialogues.py`);
2. `synth`: scripts -> stereo 24 kHz WAV + word timings (`synth.py`, engines in `tts/`);
3. `oracles`: word timings -> oracle events with hint levels (`oracles.py`).

Files follow the published kame_finetune layout (`formats.py`).
"""
