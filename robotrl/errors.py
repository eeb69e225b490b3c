"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class RobotrlError(Exception):
    """Base class for user-facing errors: bad names, paths, shapes, values."""


class UnknownNameError(RobotrlError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidActionError(RobotrlError, ValueError):
    pass


class ModelFileError(RobotrlError, FileNotFoundError):
    pass
