"""The two standard baselines KD is compared with, behind the same `Method` interface.

Importing this package registers them in `harness.methods.METHODS`.
"""

from baselines import conversion, direct  # noqa: F401
