"""Train a logistic regression on iris (shipped with scikit-learn) and export it to ONNX.

Writes models/iris.onnx: input "input" float[None, 4]; outputs "output_label" int64[None]
and "output_probability" (a ZipMap: one {class: probability} map per row), as skl2onnx and
onnxmltools exported Cortex's iris models.
"""

from __future__ import annotations

import sys
from pathlib import Path

from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def build(out: Path) -> None:
    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_model = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onnx_model.SerializeToString())


if __name__ == "__main__":
    target = Path(__file__).parent / "models" / "iris.onnx"
    if "--force" in sys.argv or not target.exists():
        build(target)
        print(f"built {target}")
