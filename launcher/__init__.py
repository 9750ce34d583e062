"""danlu: Slurm experiment orchestration for ML researchers.

The login-node path (this package's CLI, status and logs) must stay light: never import
torch or accelerate at module level anywhere in this package.
"""

__version__ = "0.1.0"
