"""Running tasks from Hydra configs: train/eval entry points, checkpoint I/O, callbacks, config checks."""
