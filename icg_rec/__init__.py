"""icg_rec: personalized item covers (ICG) as ranking features, measured offline, ready for A/B.

The public classes live in the subpackages (`icg_rec.data`, `.encoders`, `.rewards`, `.generation`,
`.alignment`, `.cohorts`, `.features`, `.ranking`, `.metrics`, `.experiment`); importing any of them
is light, each name imports its own module on first use.
"""

from icg_rec.errors import CheckpointError, IcgRecError, SchemaError, UnknownIdError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "IcgRecError", "SchemaError", "UnknownIdError", "__version__"]
