"""Training: run folders, checkpoints, callbacks and the ``fit`` driver."""
