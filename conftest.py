"""The checkout's root: quiet TensorFlow. The conformance plugin itself loads through its
pytest11 entry point (pyproject.toml), from the checkout (an editable install, which
scripts/setup.sh makes) and from an installed wheel alike."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
