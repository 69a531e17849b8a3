"""The runtime: compile() -> Executable, the training-step compiler, steppers, Trainer, data,
checkpoints and History."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import batches, standardize, train_test_split
from .executable import Executable, compile
from .history import History
from .metrics import accuracy, with_metrics
from .stepper import Stepper, make_stepper
from .trainer import EarlyStopping, NonFiniteLossError, Trainer
from .training import TrainingProgram, TrainingSpec, optimizer_graph, training_spec, training_step

__all__ = ["Executable", "compile", "training_step", "training_spec", "optimizer_graph",
           "TrainingSpec", "TrainingProgram", "Stepper", "make_stepper", "Trainer", "EarlyStopping",
           "NonFiniteLossError", "History", "batches", "standardize", "train_test_split",
           "save_checkpoint", "load_checkpoint", "CheckpointError", "accuracy", "with_metrics"]
