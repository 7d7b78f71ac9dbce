"""Time counting gradient paths at time-step level (gradlens.analysis.paths), H up to 1000.

    python benchmarks/paths_speed.py [--quick]   (--quick: H in {10, 30} only)

Columns (best of 3, seconds):
  count      horizon_table(class, [H]): build the graph's index lists and count, for every a_k, the paths a_k -> J
             with their longest and mean length (one backward DP, exact integers). The "counting paths" criterion:
             under a second at H = 1000.
  nx graph   graph(class, H): the same graph as a networkx.DiGraph (networkx's own construction cost).
  nx count   path_stats(G, θ, J, histogram=False) on that DiGraph (topological sort + the same DP).
  hist       path_stats(G, a_1, ŝ_{H+1}) with the length histogram (O(E × longest path)); only up to H = 300.
"""
import argparse
import gc
import time

from gradlens.analysis.paths import action_to_state, graph, horizon_table, path_stats

CLASSES = ["markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
HORIZONS = [10, 100, 300, 1000]
SETTINGS = [("stop-grad", True), ("full loop", False)]


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H in {10, 30} only")
    horizons = [10, 30] if parser.parse_args().quick else HORIZONS
    gc.freeze()  # the imported modules' objects out of every collection: each gc.collect() below then takes ms, not 1 s
    print("| class | policy input | H | edges | log10 paths | longest | count s | nx graph s | nx count s | hist s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    slowest = 0.0
    for model_class in CLASSES:
        for name, stop_gradient in SETTINGS:
            for horizon in horizons:
                count_s, (row,) = best_of(lambda: horizon_table(model_class, [horizon], stop_gradient=stop_gradient))
                graph_s, G = best_of(lambda: graph(model_class, horizon, stop_gradient=stop_gradient))
                nx_s, stats = best_of(lambda: path_stats(G, ("theta",), ("J",), histogram=False))
                assert stats.count == row["paths"]
                hist = "–"
                if horizon <= 300:
                    hist_s, _ = best_of(lambda: action_to_state(G, 1, horizon + 1), repeats=1)
                    hist = f"{hist_s:.3f}"
                if horizon == horizons[-1]:
                    slowest = max(slowest, count_s)
                print(f"| {model_class} | {name} | {horizon} | {row['edges']} | {row['log10_paths']:.1f} | "
                      f"{row['longest']} | {count_s:.3f} | {graph_s:.3f} | {nx_s:.3f} | {hist} |", flush=True)
    print(f"\nslowest count at H = {horizons[-1]}: {slowest:.3f} s")


if __name__ == "__main__":
    main()
