"""graphc: a computation-graph compiler for training neural networks.

Build graphs with the DSL (`with gc.Graph(...)` or `@gc.function`), differentiate them, and run
them on numpy, onnxruntime or TVM. Heavy backends are imported only when used.
"""
from __future__ import annotations

from . import ops  # noqa: F401  (registers the primitives)
from .backends.onnx import export_onnx, to_onnx
from .frontends import initializers as init
from .frontends.dsl import (Tensor, abs, add, amax, amin, apply, argmax, argmin, broadcast_to,
                            cast, cat, concat, concatenate, constant, div, divide, equal, erf, exp,
                            expand, expand_dims, flatten, gather, greater, greater_equal,
                            index_select, less, less_equal, log, logical_and, logical_not,
                            logical_or, matmul, max, maximum, mean, min, minimum, moveaxis, movedim,
                            mul, multiply, neg, negative, pad, permute, pow, power, random_uniform,
                            relu, reshape, sigmoid, sign, slice, sqrt, squeeze, stack, stop_gradient,
                            sub, subtract, sum, swapaxes, swapdims, take, take_along_axis, tanh,
                            transpose, unsqueeze, where)
from .frontends.functional import (adaptive_avg_pool2d, avg_pool2d,
                                   binary_cross_entropy_with_logits, clamp, clip, conv1d, conv2d,
                                   conv_transpose2d, cross_entropy, dropout, gelu, group_norm,
                                   layer_norm, leaky_relu, linear, log_softmax, logsumexp,
                                   max_pool2d, mse_loss, nll_loss, norm, one_hot, ones_like,
                                   rng_inputs, silu, softmax, zeros_like)
from .frontends.initializers import manual_seed
from .frontends.trace import Function, Spec, function, spec
from .frontends.control import scan
from .ir import (FeedError, Graph, GraphBuildError, GraphcError, Node, Role, TensorType,
                 TrainingProgram, Value, ValueRange, VerifyError, verify)
from .runtime.executable import Executable, compile

from . import inspect, models, optim  # gc.inspect.summary, gc.models.lenet5(), gc.optim.Adam
from .backends.base import (Backend, available_backends, get_backend, register_backend,
                            unregister_backend)
from .backends.executable import bind_feeds
from .backends.lowering import MissingLowering, check_lowering
from .frontends import nn  # layers: `from graphc import nn`
from .frontends.onnx_import import OnnxImportError, import_onnx
from .frontends.parser import ParseError, elided_constants, parse_graph
from .passes.autodiff import AutodiffError, check_differentiable, grad, hvp, vjp
from .runtime.gradcheck import GradCheckError, GradCheckReport, check_grads
from .runtime.bundle import export_training  # a training bundle for onnxruntime-web/-node
from .passes.pipeline import (Pipeline, PipelineReport, get_pipeline, register_pipeline, run_passes,
                              simplify)
from .runtime import (EarlyStopping, History, NonFiniteLossError, Trainer, TrainingSpec,
                      load_checkpoint, make_stepper, optimizer_graph, save_checkpoint,
                      training_step)

__version__ = "0.1.0"
