"""The exceptions users see. Each message names the key, file:line or argument, the bad value and the fix."""


class MosError(Exception):
    """Base class of every error mos_nemo raises on purpose."""


class MosValueError(MosError, ValueError):
    """A bad argument to a public function or class (wrong shape, out-of-range value)."""


class MosConfigError(MosError, ValueError):
    """A bad configuration: the message names the override path (``mixing.tau``) and the fix."""


class MosDataError(MosError, ValueError):
    """Bad training data: the message names the file and line, or the dataset and field."""


class MosCheckpointError(MosError, RuntimeError):
    """A checkpoint that cannot be written, found or loaded."""


class MosTrainingError(MosError, RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says what to change."""


class MosRunDirError(MosError, RuntimeError):
    """run.dir cannot be used: not writable, or locked by another launch (named in the message)."""
