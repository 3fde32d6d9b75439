"""Test set-up shared by every test module."""

import os

# Quiet TensorFlow's C++ logging; must happen before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
