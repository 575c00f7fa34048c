# Small statistics for benchmark and soak figures (no numpy needed on the hot paths).
import math
import statistics


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def spread(values):
    """(min, median, max) of repeat runs."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return (float("nan"),) * 3
    return min(values), statistics.median(values), max(values)


def relative_spread(values):
    """(max - min) / median: how far apart repeat runs landed."""
    low, mid, high = spread(values)
    return (high - low) / mid if mid else float("nan")


def slope(xs, ys):
    """Least-squares slope of ys against xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    denominator = sum((x - mean_x) ** 2 for x in xs)
    if denominator == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / denominator
