import torch
from model import IrisNet  # found through python_path: src/

labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
model = IrisNet()


def init(model_path, metadata):
    model.load_state_dict(torch.load(model_path))
    model.eval()


def predict(sample, metadata):
    row = torch.FloatTensor([[sample[name] for name in FEATURES]])
    with torch.no_grad():
        scores = model(row)
    return labels[torch.argmax(scores[0])]
