import numpy as np
from joblib import load

FEATURES = ("cylinders", "displacement", "horsepower", "weight", "acceleration")
model = None


def init(model_path, metadata):
    global model
    model = load(model_path)


def predict(sample, metadata):
    row = [sample[name] for name in FEATURES]
    estimate = model.predict([row])
    # A 2019 idiom: np.asscalar was removed in NumPy 1.23 (inferd's shim brings it back).
    return np.asscalar(estimate)
