"""graphc.nn: PyTorch-style layers, losses and initializers that trace into graphc graphs.

Example:

    import graphc as gc
    from graphc import nn

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    @gc.function(x=gc.spec(("N", 784)), y=gc.spec(("N",), "int64"))
    def loss_fn(x, y):
        return nn.cross_entropy(model(x), y)

    loss_fn.graph.params   # "0.weight", "0.bias", "2.weight", "2.bias": the state-dict names

Conventions (see `module.py` for details):

* Parameter names, shapes and layouts are PyTorch's, so `model.load_state_dict({k:
  v.numpy() for k, v in torch_model.state_dict().items()})` loads as is.
* A traced graph's params carry the state-dict names relative to the root module called.
* Buffers (batch-norm running statistics) are graph params with role `Role.BUFFER`;
  in training mode their new values are graph outputs named ``"state:<buffer name>"`` (listed
  in `graph.updates`), which the runtime feeds back after each step.
* `model.eval()` then a fresh trace gives an inference graph: no dropout, running statistics.
"""
from __future__ import annotations

from . import functional, init
from .containers import ModuleDict, ModuleList, Sequential
from .conv import AdaptiveAvgPool2d, Conv1d, ConvTranspose2d
from .functional import (avg_pool2d, batch_norm, binary_cross_entropy,
                         binary_cross_entropy_with_logits, conv2d, cross_entropy, dropout, elu,
                         embedding, gelu, hinge_embedding_loss, huber_loss, kl_div, l1_loss,
                         layer_norm, leaky_relu, linear, log_softmax, logsumexp, max_pool2d,
                         mse_loss, multi_margin_loss, multiclass_hinge_loss, nll_loss, one_hot, relu,
                         scaled_dot_product_attention, sigmoid, silu, smooth_l1_loss, softmax,
                         softplus, tanh)
from .functional import adaptive_avg_pool2d, conv1d, conv_transpose2d, group_norm
from .layers import (ELU, GELU, AvgPool2d, Conv2d, Dropout, Embedding, Flatten, Identity, LeakyReLU,
                     Linear, LogSoftmax, MaxPool2d, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh)
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss,
                     MultiMarginLoss, NLLLoss, SmoothL1Loss)
from .module import STATE_PREFIX, Buffer, Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .transformer import (MultiHeadAttention, MultiheadAttention, PositionalEncoding,
                          TransformerEncoder, TransformerEncoderLayer, sinusoidal_positions)

F = functional

__all__ = [
    "functional", "F", "init", "Module", "Parameter", "Buffer", "STATE_PREFIX", "Sequential",
    "ModuleList", "ModuleDict", "Linear", "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
    "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "Dropout", "Embedding", "Identity", "BatchNorm1d",
    "BatchNorm2d", "LayerNorm", "GroupNorm", "RNN", "LSTM", "GRU",
    "RNNCell", "LSTMCell", "GRUCell", "MultiheadAttention", "MultiHeadAttention", "TransformerEncoderLayer",
    "TransformerEncoder", "PositionalEncoding", "sinusoidal_positions", "ReLU", "Sigmoid", "Tanh",
    "LeakyReLU", "GELU", "SiLU", "ELU", "Softplus", "Softmax", "LogSoftmax", "MSELoss", "L1Loss",
    "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
    "MultiMarginLoss", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu", "elu", "softplus",
    "softmax", "log_softmax", "logsumexp", "linear", "conv1d", "conv2d", "conv_transpose2d",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout", "layer_norm", "batch_norm",
    "group_norm", "embedding", "scaled_dot_product_attention", "one_hot",
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "multi_margin_loss",
    "multiclass_hinge_loss", "hinge_embedding_loss", "kl_div",
]


def _alias_as_graphc_nn() -> None:
    """Makes `import graphc.nn` and `import graphc.nn.functional` name these same modules."""
    import sys
    for name, mod in list(sys.modules.items()):
        if name == __name__ or name.startswith(__name__ + "."):
            sys.modules.setdefault("graphc.nn" + name[len(__name__):], mod)


_alias_as_graphc_nn()
