"""The classic example's network."""

from torch import nn


class SimpleNet(nn.Module):
    """Flatten, Linear 784→128, ReLU, Linear 128→10."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(x))))
