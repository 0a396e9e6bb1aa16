"""IrisNet: the small fully connected network of Cortex's PyTorch iris example (4 -> 100 -> 100 -> 3)."""

import torch
from torch import nn


class IrisNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 100)
        self.fc2 = nn.Linear(100, 100)
        self.fc3 = nn.Linear(100, 3)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, features):
        hidden = torch.relu(self.fc1(features))
        hidden = self.fc2(hidden)
        return self.softmax(self.fc3(hidden))
