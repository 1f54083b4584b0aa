"""Plot of bench/provision-compare.sh: wall time until N stores are ready, against N,
for Storeplane, helm sequential and helm with Storeplane's worker count as concurrency.

    python bench/provision-plot.py bench/out/provision-compare bench/provision-compare.png
"""

import glob
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

out, png = sys.argv[1], sys.argv[2]
rows = [json.load(open(f)) for f in glob.glob(f"{out}/*-*.json")]
labels = {
    "storeplane": "Storeplane (serve, 8 workers, API create)",
    "helm-seq": "helm install --wait, sequential",
    "helm-conc": "helm install --wait, 8 at once",
}
fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
for mode, label in labels.items():
    pts = sorted((r["n"], r["wall_s"]) for r in rows if r["mode"] == mode)
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", label=label)
        for x, y in pts:
            ax.annotate(f"{y:.0f} s" if y >= 10 else f"{y:.1f} s", (x, y),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set_xscale("log")
ax.set_yscale("log")
for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
ax.set_xlabel("stores (N)")
ax.set_ylabel("wall time until all ready (s)")
ax.set_title("WooCommerce stores to ready on testenv (kwok), 2-core machine")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(png)
print(f"wrote {png}")
