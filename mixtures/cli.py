"""Command line: ``mixtures demo`` fits the reference model and writes a PPC figure."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _demo(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mixtures

    data = mixtures.load_dataset("three_gaussians")
    print(
        f"three_gaussians: {len(data)} observations, fitting full_mixture(k=3, marginalized=True)"
    )
    start = time.perf_counter()
    model = mixtures.full_mixture(data["x"], 3, marginalized=True)
    idata = mixtures.sample(
        model,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        progressbar=not args.quiet,
    )
    mixtures.sample_posterior_predictive(model, idata, random_seed=args.seed)
    print(f"\nfit in {time.perf_counter() - start:.1f} s\n")
    print(mixtures.summary_table(idata, fmt="markdown"))
    ax = mixtures.plot_ppc(idata, random_seed=args.seed, figsize=(7, 4))
    ax.set_title("three_gaussians: posterior predictive check (full mixture, k=3)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    print(f"\nPPC figure written to {out}")
    if args.netcdf:
        idata.to_netcdf(args.netcdf)
        print(f"InferenceData written to {args.netcdf}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``mixtures`` console command."""
    parser = argparse.ArgumentParser(prog="mixtures", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit full_mixture on three_gaussians, print, plot")
    demo.add_argument("--draws", type=int, default=1000)
    demo.add_argument("--tune", type=int, default=1000)
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--seed", type=int, default=2017)
    demo.add_argument("--out", default="mixtures_demo_ppc.png", help="PPC figure path")
    demo.add_argument("--netcdf", default=None, help="also save the InferenceData here")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return _demo(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
