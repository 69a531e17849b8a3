"""Optimizers as graph code (torch.optim names, arguments and formulas), clipping and schedules."""
from . import schedules
from .base import Optimizer, UpdateContext
from .clip import clip_by_global_norm
from .loss_scaling import LossScaler
from .optimizers import OPTIMIZERS, SGD, Adagrad, Adam, AdamW, RMSprop, Rprop

__all__ = ["Optimizer", "UpdateContext", "SGD", "Adagrad", "RMSprop", "Rprop", "Adam", "AdamW",
           "OPTIMIZERS", "clip_by_global_norm", "schedules", "LossScaler"]
