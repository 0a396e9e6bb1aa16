labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def pre_inference(sample, signature, metadata):
    # The converted graph has one input (named "input"): a row of the four measurements.
    return {signature[0].name: [sample[name] for name in FEATURES]}


def post_inference(prediction, signature, metadata):
    # prediction[0] is the graph's label output: one class id per row.
    return labels[prediction[0][0]]
