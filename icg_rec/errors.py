"""Errors raised at icg_rec's boundaries. All are ValueErrors, so callers may catch either."""


class IcgRecError(ValueError):
    """Base class: bad input that icg_rec refuses rather than guesses about."""


class SchemaError(IcgRecError):
    """A frame is missing a column, has a wrong dtype, or holds values outside the contract."""


class UnknownIdError(IcgRecError):
    """A user or item id that the fitted object never saw, where no fallback was asked for."""


class CheckpointError(IcgRecError):
    """A checkpoint or saved artefact is missing, truncated, or does not match its config."""
