"""Training a KAME front-end: losses, the loop (one CPU to many GPUs), checkpoints, logs and plots."""
