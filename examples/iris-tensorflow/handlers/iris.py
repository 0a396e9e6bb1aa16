labels = ["setosa", "versicolor", "virginica"]


def post_inference(prediction, signature, metadata):
    return labels[int(prediction["class_ids"][0])]
