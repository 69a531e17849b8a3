"""graphc's IR: Graph, Node, Value, TensorType, verify() and the text form."""
from .errors import FeedError, GraphBuildError, GraphcError, VerifyError
from .graph import Graph, Node, Value, ValueRange, current_graph
from .program import TrainingProgram, TrainingSpec
from .roles import Role
from .printer import format_graph
from .types import DTYPES, Dim, TensorType, broadcast_shapes, parse_type
from .verify import verify

__all__ = ["Graph", "Node", "Value", "ValueRange", "Role", "TrainingProgram", "TrainingSpec", "TensorType", "Dim", "DTYPES", "verify", "format_graph",
           "current_graph", "broadcast_shapes", "parse_type", "GraphcError", "GraphBuildError",
           "VerifyError", "FeedError"]
