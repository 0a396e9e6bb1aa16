"""Train an XGBClassifier on iris and convert it to ONNX as Cortex's xgboost notebook did.

The converter (onnxmltools' ``convert_xgboost``) is given one input ``input``: float
``[1, 4]``; the graph answers ``label`` int64 ``[1]`` and ``probabilities`` float ``[1, 3]``.

Usage: ``build_model.py BUCKET_DIR`` writes ``xgboost/iris-classifier/gbtree.onnx``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import xgboost as xgb
from onnxmltools.convert import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

KEY = "xgboost/iris-classifier/gbtree.onnx"


def build(bucket: Path) -> Path:
    iris = load_iris()
    x_train, _, y_train, _ = train_test_split(iris.data, iris.target, test_size=0.8, random_state=42)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x_train, y_train)
    onnx_model = convert_xgboost(model, initial_types=[("input", FloatTensorType([1, 4]))])
    out = bucket / KEY
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onnx_model.SerializeToString())
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
