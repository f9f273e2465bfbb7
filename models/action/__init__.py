"""Action recognition on pose tracks: GRU over 32-frame windows of 2D keypoints.

Run time (numpy + onnxruntime): :class:`ActionClassifier`, :func:`classify_extraction`.
Training (torch, training extra): :mod:`models.action.train`; data: :mod:`models.action.synth`
(procedural generator) and :mod:`models.action.dataset` (RNN-HAR-2D-Pose-database format).
"""
from .classifier import ActionClassifier
from .timeline import classify_extraction

__all__ = ["ActionClassifier", "classify_extraction"]
