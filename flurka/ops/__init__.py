"""Pure tensor ops: one folder per op, reference beside kernel."""
