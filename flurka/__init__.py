"""flurka: any attention variant x any model x any task, composed by Hydra, trained by one loop."""

__version__ = "0.1.0"
