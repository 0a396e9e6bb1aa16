import joblib

model = None


def init(model_path, metadata):
    global model
    model = joblib.load(model_path)


def predict(sample, metadata):
    features = [
        sample["sepal_length"],
        sample["sepal_width"],
        sample["petal_length"],
        sample["petal_width"],
    ]
    label_id = int(model.predict([features])[0])
    return metadata["labels"][label_id]
