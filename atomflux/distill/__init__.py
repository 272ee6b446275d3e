"""Distillation: a fast atomflux student of a slow teacher (a foundation model, EMT ...) by active learning.

:func:`distill` runs the loop (see :mod:`atomflux.distill.loop` for the run
folder): MD with the current student at each condition, the frames where its
uncertainty is largest (plus a random subset) labelled by the teacher,
retraining, recalibration, until the student's force error against the
teacher and its uncertainty are below stated bounds at every condition.

One job per module: ``config`` (settings, conditions), ``teacher`` (labels in
batches), ``sampling`` (rattled frames, teacher MD, student MD with the
guard), ``selection`` (most uncertain + random), ``student`` (training,
shallow ensemble, errors), ``loop`` (rounds, records, resume), ``plots``.
"""

from .config import Condition, DistillConfig
from .loop import DistillResult, distill, read_rounds, round_summary
from .selection import select_frames
from .teacher import Teacher

__all__ = ["Condition", "DistillConfig", "DistillResult", "Teacher", "distill", "read_rounds", "round_summary", "select_frames"]
