"""Errors that point at the user's source line and show the offending node in context."""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GraphcError(Exception):
    """Base class of graphc's errors."""


class GraphBuildError(GraphcError, ValueError):
    """A bad shape, dtype or argument while building a graph."""


class VerifyError(GraphcError):
    """The graph breaks an IR invariant."""


class FeedError(GraphcError, ValueError):
    """Bad run-time feeds: unknown, missing, or of the wrong shape or dtype."""


def user_frame() -> str | None:
    """'file:line' of the innermost caller outside the graphc package.

    Package modules that are themselves DSL user code (graphc.models) set the module global
    `__graphc_user_code__ = True`, so the nodes they build point at their own lines.
    """
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if ((not path.startswith(_PKG_DIR + os.sep) or frame.f_globals.get("__graphc_user_code__"))
                and "<frozen" not in path):
            return f"{os.path.relpath(path) if not os.path.relpath(path).startswith('..') else path}:{frame.f_lineno}"
        frame = frame.f_back
    return None
