"""Looking at graphs: statistics (FLOPs, parameters, memory) and drawings (DOT, SVG, HTML).

    import graphc as gc
    print(gc.inspect.summary(graph, bindings={"N": 128}))
    gc.inspect.to_html(graph, "graph.html")
"""
from .draw import layout_svg, to_dot, to_html, to_svg
from .stats import (GraphSummary, NodeStats, ParamStats, flops, format_bytes, format_count,
                    node_flops, param_count, peak_memory, summary)

__all__ = ["summary", "GraphSummary", "NodeStats", "ParamStats", "flops", "node_flops",
           "param_count", "peak_memory", "format_bytes", "format_count", "to_dot", "to_svg",
           "to_html", "layout_svg"]
