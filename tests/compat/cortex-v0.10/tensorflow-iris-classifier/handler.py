# The TF1 estimator export answers class_ids as a [batch, 1] tensor; Cortex handed it over
# flattened, so the first entry is this sample's class.
labels = ["iris-setosa", "iris-versicolor", "iris-virginica"]


def post_inference(prediction, signature, metadata):
    class_id = int(prediction["class_ids"][0])
    return labels[class_id]
