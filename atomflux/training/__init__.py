"""Training potentials on reference data (extxyz)."""

from .dataset import Frame, fingerprint, read_frames
from .metrics import Predictions, predict_frames
from .trainer import TrainConfig, TrainResult, train

__all__ = ["Frame", "Predictions", "TrainConfig", "TrainResult", "fingerprint", "predict_frames",
           "read_frames", "train"]
