"""Knowledge distillation from the float model (Hinton et al. 2015), for QAT fine-tuning.

A quantized student fine-tuned from a float model has the best possible teacher at hand: the
float model itself. Its softened output distribution says which wrong classes are *almost*
right, information the one-hot labels lack, and matching it keeps the student close to the
function it started from while its weights and activations lose precision (Polino et al. 2018,
Mishra & Marr 2018 "Apprentice", Martinez et al. 2020 for binary networks).

The loss, for student logits s, teacher logits t, labels y, temperature T and weight w::

    L = w · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − w) · CE(s, y)

The KL term is averaged over the batch (``batchmean``: the mathematical KL per sample), and the
T² factor keeps its gradient on the scale of the cross-entropy's when T changes (the softened
gradients shrink as 1/T²). ``intquant.train(model, data, teacher=float_model)`` uses it with the
defaults below; users with their own training loop call :func:`distillation_loss` directly::

    with torch.no_grad():
        t = float_model.eval()(x)
    loss = intquant.qat.distillation_loss(qat_model(x), t, y)

Defaults (``DEFAULT_TEMPERATURE`` = 4, ``DEFAULT_WEIGHT`` = 0.5): Hinton's range of temperatures
for small networks and an equal share for labels and teacher; the label term keeps the student
from copying the teacher's mistakes on the training data. See benchmarks/RESULTS.md (QAT
section) for what distillation gives on the MNIST-1D CNN at 4, 2 and 1 bits.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["distillation_loss", "DEFAULT_TEMPERATURE", "DEFAULT_WEIGHT"]

DEFAULT_TEMPERATURE = 4.0
DEFAULT_WEIGHT = 0.5


def check_distillation_args(temperature: float, weight: float) -> None:
    """Raise a one-line ValueError for a temperature <= 0 or a weight outside [0, 1]."""
    if not temperature > 0:
        raise ValueError(f"distillation: temperature must be > 0, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation: weight must be in [0, 1], got {weight}")


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch (no gradient to t)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor,
                      labels: Tensor | None = None, *,
                      temperature: float = DEFAULT_TEMPERATURE,
                      weight: float = DEFAULT_WEIGHT) -> Tensor:
    """w·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − w)·CE(s, y): distillation plus hard labels.

    ``student_logits`` and ``teacher_logits`` are (N, classes); the teacher's are detached (the
    teacher is not trained). ``labels`` (N,) int64; None means pure distillation (then the label
    term is dropped whatever ``weight`` is). ``weight`` = 0 gives plain cross-entropy exactly.
    """
    check_distillation_args(temperature, weight)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"distillation_loss: student logits {tuple(student_logits.shape)} and "
                         f"teacher logits {tuple(teacher_logits.shape)} must both be (N, classes)")
    teacher_logits = teacher_logits.to(student_logits.dtype)
    if labels is None:
        return soft_kl(student_logits, teacher_logits, temperature)
    ce = F.cross_entropy(student_logits, labels)
    if weight == 0.0:
        return ce
    return weight * soft_kl(student_logits, teacher_logits, temperature) + (1.0 - weight) * ce
