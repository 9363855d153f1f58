"""Table and log-log plot of ``bench_ipa_layer.py`` results.

python benchmarks/plot_ipa_layer.py ipa.json --plot docs/benchmarks/ipa_layer.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import DataError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    parser.add_argument("--plot", required=True)
    args = parser.parse_args(argv)
    ensure_writable_file(args.plot, what="--plot")
    try:
        doc = json.loads(Path(args.results).read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            f"{args.results} is not a bench_ipa_layer.py results file: {error}"
        ) from None
    series: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in doc["results"]:
        series[row["variant"]][row["length"]] = row
    lengths = sorted({row["length"] for row in doc["results"]})
    names = list(series)
    print("| L | " + " | ".join(f"{v} (GiB / ms)" for v in names) + " |")
    print("|---|" + "---|" * len(names))
    for n in lengths:
        cells = []
        for v in names:
            row = series[v].get(n)
            if row is None:
                cells.append("—")
            elif row["status"] != "ok":
                cells.append(row["status"])
            else:
                cells.append(f"{row['peak_mem_gib']:.2f} / {1e3 * row['median_s']:.1f}")
        print(f"| {n} | " + " | ".join(cells) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for v in names:
        ok = [(n, r) for n, r in sorted(series[v].items()) if r["status"] == "ok"]
        xs = [n for n, _ in ok]
        axes[0].loglog(xs, [r["peak_mem_gib"] for _, r in ok], "o-", label=v, ms=3)
        axes[1].loglog(xs, [r["median_s"] for _, r in ok], "o-", label=v, ms=3)
    axes[0].set(xlabel="L (residues)", ylabel="peak memory (GiB)")
    axes[1].set(xlabel="L (residues)", ylabel="forward + backward (s)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"One IPA layer, {doc['device']}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    sys.exit(run_command(main))
