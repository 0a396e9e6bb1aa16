"""Train IrisNet (src/model.py) on iris for a few hundred steps and save its state_dict.

Cortex's src/model.py trained with SGD for 1000 epochs and saved ``weights.pth``; Adam gets
there in a fraction of a second. Usage: ``build_model.py BUCKET_DIR`` writes
``pytorch/iris-classifier/weights.pth``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_iris

sys.path.insert(0, str(Path(__file__).parent / "src"))
from model import IrisNet

KEY = "pytorch/iris-classifier/weights.pth"


def build(bucket: Path) -> Path:
    torch.manual_seed(0)
    # 150 rows: one thread trains it in a second; more spin against each other on a busy machine
    torch.set_num_threads(1)
    iris = load_iris()
    features = torch.tensor(iris.data, dtype=torch.float32)
    targets = torch.tensor(iris.target, dtype=torch.long)
    model = IrisNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_function = torch.nn.CrossEntropyLoss()
    for _ in range(300):
        optimiser.zero_grad()
        loss = loss_function(model(features), targets)
        loss.backward()
        optimiser.step()
    out = bucket / KEY
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
