"""Fit a LinearRegression on auto-mpg-like data and dump it with joblib, as Cortex's model.py did.

Cortex's script read the auto-mpg CSV from the web; this one draws 300 cars from a fixed
random generator (no download) with the same five features (cylinders, displacement,
horsepower, weight, acceleration) and a two-dimensional target, so ``predict`` answers a
``[1, 1]`` array as the original did.

Usage: ``build_model.py BUCKET_DIR`` writes ``sklearn/mpg-estimation/linreg.joblib``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from joblib import dump
from sklearn.linear_model import LinearRegression

KEY = "sklearn/mpg-estimation/linreg.joblib"


def build(bucket: Path) -> Path:
    rng = np.random.default_rng(7)
    cylinders = rng.choice([4, 6, 8], size=300)
    displacement = cylinders * 30 + rng.normal(0, 15, 300)
    horsepower = displacement * 0.6 + rng.normal(0, 10, 300)
    weight = 1500 + displacement * 7 + rng.normal(0, 150, 300)
    acceleration = 20 - horsepower * 0.04 + rng.normal(0, 1, 300)
    features = np.column_stack([cylinders, displacement, horsepower, weight, acceleration])
    mpg = 46 - weight * 0.006 - horsepower * 0.04 + rng.normal(0, 2, 300)
    model = LinearRegression().fit(features, mpg[:, np.newaxis])
    out = bucket / KEY
    out.parent.mkdir(parents=True, exist_ok=True)
    dump(model, out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
