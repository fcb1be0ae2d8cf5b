"""Errors that kamevoice raises on bad input: each one names what is wrong and where."""


class KameVoiceError(Exception):
    """Base class: a problem a user can fix (bad file, bad setting, bad input)."""


class CheckpointError(KameVoiceError):
    """A checkpoint is missing, truncated, or does not match the expected architecture."""


class ConfigError(KameVoiceError):
    """A settings value or a checkpoint's config.json is missing, unknown or invalid."""


class InputError(KameVoiceError):
    """Bad runtime input: wrong tensor shape, out-of-range token id, malformed audio or message."""
