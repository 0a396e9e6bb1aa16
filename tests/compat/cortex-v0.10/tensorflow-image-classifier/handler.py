import os
from io import BytesIO

import numpy as np
import requests
from PIL import Image

# The one change from Cortex's handler: the labels' host. The tests set COMPAT_FILES_URL to a
# server on loopback; without it the handler fetches the original file.
FILES = os.environ.get("COMPAT_FILES_URL", "https://storage.googleapis.com/download.tensorflow.org/data")
labels = requests.get(FILES + "/ImageNetLabels.txt").text.split("\n")


def pre_inference(sample, signature, metadata):
    image = requests.get(sample["url"]).content
    pixels = np.asarray(Image.open(BytesIO(image)), dtype=np.float32) / 255
    return {"images": np.expand_dims(pixels, axis=0)}


def post_inference(prediction, signature, metadata):
    return labels[np.argmax(prediction["classes"])]
