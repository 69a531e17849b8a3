"""Frontends: the DSL, tracing, composites and (in nn/) layers."""
