"""Time counting gradient paths at time-step level (gradlens.analysis.paths), H up to 1000.

    python benchmarks/paths_speed.py

Columns (best of 3, seconds):
  count      horizon_table(class, [H]): build the graph's index lists and count, for every a_k, the paths a_k -> J
             with their longest and mean length (one backward DP, exact integers). The "counting paths" criterion:
             under a second at H = 1000.
  nx graph   graph(class, H): the same graph as a networkx.DiGraph (networkx's own construction cost).
  nx count   path_stats(G, θ, J, histogram=False) on that DiGraph (topological sort + the same DP).
  hist       path_stats(G, a_1, ŝ_{H+1}) with the length histogram (O(E × longest path)); only up to H = 300.
"""
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
    print(f"{'class':<16}{'policy input':<14}{'H':>6}{'edges':>10}{'log10 paths':>13}{'longest':>9}"
          f"{'count':>9}{'nx graph':>10}{'nx count':>10}{'hist':>9}")
    slowest = 0.0
    for model_class in CLASSES:
        for name, stop_gradient in SETTINGS:
            for horizon in HORIZONS:
                count_s, (row,) = best_of(lambda: horizon_table(model_class, [horizon], stop_gradient=stop_gradient))
                graph_s, G = best_of(lambda: graph(model_class, horizon, stop_gradient=stop_gradient))
                nx_s, stats = best_of(lambda: path_stats(G, ("theta",), ("J",), histogram=False))
                assert stats.count == row["paths"]
                hist = "-"
                if horizon <= 300:
                    hist_s, _ = best_of(lambda: action_to_state(G, 1, horizon + 1), repeats=1)
                    hist = f"{hist_s:.3f}"
                if horizon == 1000:
                    slowest = max(slowest, count_s)
                print(f"{model_class:<16}{name:<14}{horizon:>6}{row['edges']:>10}{row['log10_paths']:>13.1f}"
                      f"{row['longest']:>9}{count_s:>9.3f}{graph_s:>10.3f}{nx_s:>10.3f}{hist:>9}")
    print(f"\nslowest count at H = 1000: {slowest:.3f} s")


if __name__ == "__main__":
    main()
