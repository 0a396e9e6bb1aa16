import os
from io import BytesIO

import numpy as np
import requests
import torch
from PIL import Image
from torch import nn

# Cortex's example loaded torchvision's pretrained AlexNet (a download at import); this is a
# small network of the same kind, randomly initialised with a fixed seed: 224x224 RGB in, a
# score per ImageNet class out.
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 8, kernel_size=11, stride=4, padding=2),
    nn.ReLU(),
    nn.AdaptiveAvgPool2d((4, 4)),
    nn.Flatten(),
    nn.Linear(8 * 4 * 4, 1000),
)
model.eval()

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# The one change from Cortex's predictor: the labels' host (COMPAT_FILES_URL in the tests).
FILES = os.environ.get("COMPAT_FILES_URL", "https://storage.googleapis.com/download.tensorflow.org/data")
labels = requests.get(FILES + "/ImageNetLabels.txt").text.split("\n")[1:]


def preprocess(image):
    """Resize the short side to 256, crop the centre 224x224, scale to [0, 1], normalise."""
    width, height = image.size
    scale = 256 / min(width, height)
    image = image.convert("RGB").resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    left, top = (image.size[0] - 224) // 2, (image.size[1] - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return torch.from_numpy(((pixels - MEAN) / STD).transpose(2, 0, 1).copy())


def predict(sample, metadata):
    image = Image.open(BytesIO(requests.get(sample["url"]).content))
    batch = preprocess(image).unsqueeze(0)
    with torch.no_grad():
        scores = model(batch)
    _, index = scores[0].max(0)
    return labels[index]
