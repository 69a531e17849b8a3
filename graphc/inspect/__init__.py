"""Looking at graphs: statistics (FLOPs, parameters, memory) and drawings (DOT, SVG, HTML).

    import graphc as gc
    print(gc.inspect.summary(graph, bindings={"N": 128}))
    gc.inspect.step_memory(step, {"N": 128}).peak_bytes     # the step's peak, liveness analysis
    gc.inspect.to_html(graph, "graph.html")
"""
from .draw import layout_svg, to_dot, to_svg
from .draw import to_html as to_static_html
from .memory import MemoryEstimate, step_memory
from .stats import (GraphSummary, LayerStats, NodeStats, ParamStats, flops, format_bytes, format_count,
                    node_flops, param_count, peak_memory, summary)
from .viewer import graph_data, to_html

__all__ = ["summary", "GraphSummary", "LayerStats", "NodeStats", "ParamStats", "flops", "node_flops",
           "param_count", "peak_memory", "step_memory", "MemoryEstimate", "format_bytes",
           "format_count", "to_dot", "to_svg", "to_html", "to_static_html", "graph_data",
           "layout_svg"]
