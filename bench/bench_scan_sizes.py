"""Node counts and build + differentiate times of the LSTM classifier, scan vs unrolled.

Run: .venv/bin/python bench/bench_scan_sizes.py [T ...]   (default T = 32 128 512 2048;
the unrolled graph is skipped above 512, where differentiating it takes tens of seconds).
Counts are graphc nodes of the outer graph (a scan's body counted apart, once).
"""
from __future__ import annotations

import sys
import time

import graphc as gc


def _body_nodes(g) -> int:
    seen, total = set(), 0
    for n in g.nodes:
        for a in n.attrs.values():
            if isinstance(a, gc.Graph) and id(a) not in seen:
                seen.add(id(a))
                total += len(a.nodes) + _body_nodes(a)
    return total


def measure(steps: int, unroll: bool) -> dict:
    t0 = time.perf_counter()
    g = gc.models.lstm(steps=steps, unroll=unroll)
    t1 = time.perf_counter()
    gg = gc.grad(g)
    t2 = time.perf_counter()
    return dict(fwd=len(g.nodes), fwd_body=_body_nodes(g), grad=len(gg.nodes),
                grad_body=_body_nodes(gg), build_s=t1 - t0, grad_s=t2 - t1)


def main(argv: list[str]) -> None:
    steps = [int(a) for a in argv] or [32, 128, 512, 2048]
    print(f"{'T':>5} {'graph':>8} {'fwd nodes':>10} {'(bodies)':>9} {'fwd+bwd':>8} "
          f"{'(bodies)':>9} {'build s':>8} {'grad s':>8}")
    for T in steps:
        for unroll in (True, False):
            if unroll and T > 512:
                continue
            r = measure(T, unroll)
            print(f"{T:>5} {'unrolled' if unroll else 'scan':>8} {r['fwd']:>10} {r['fwd_body']:>9} "
                  f"{r['grad']:>8} {r['grad_body']:>9} {r['build_s']:>8.2f} {r['grad_s']:>8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
