"""The op registry: every primitive defined once, grouped by family."""
from . import elementwise, nn, reduce, shape  # noqa: F401  (registers the primitives)
from . import fused  # noqa: F401,E402  (primitives made by the fusion passes)
from . import control  # noqa: F401,E402  (scan: a loop with a body subgraph)
from . import bitwise  # noqa: F401,E402  (integer bit operations, bitcast)
from .base import OPS, Op, OpTraits, get_op, register

__all__ = ["OPS", "Op", "OpTraits", "get_op", "register"]
