"""What runs a model: measurement children, drift, feeds, side-by-side comparison.

The static analysis (``graph_analysis`` outside this subpackage) never runs a model and never imports
from here; modules here import the static part. Kept import-free so a child process that imports one
small private module (``_in_child``) starts with an onnx-free baseline.
"""
