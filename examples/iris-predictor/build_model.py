"""Train a scikit-learn logistic regression on iris and save it with joblib (models/iris.joblib)."""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def build(out: Path) -> None:
    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out)


if __name__ == "__main__":
    target = Path(__file__).parent / "models" / "iris.joblib"
    if "--force" in sys.argv or not target.exists():
        build(target)
        print(f"built {target}")
