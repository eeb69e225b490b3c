"""Control-side safety: the layer every command passes through before it reaches an env.

`safe(env)` wraps any `RobotEnv` in a `SafeEnv`; `Safety` is the filter itself, for loops that
drive a driver directly; `Watchdog` is its timeout logic.
"""

from robotrl.control.safety import SafeEnv, Safety, safe
from robotrl.control.safety_config import KINDS, SafetyConfig, SafetyError
from robotrl.control.watchdog import (
    DRIVER_DEAD,
    INFERENCE_STALL,
    STALE_OBSERVATION,
    Watchdog,
)

__all__ = [
    "DRIVER_DEAD",
    "INFERENCE_STALL",
    "KINDS",
    "STALE_OBSERVATION",
    "SafeEnv",
    "Safety",
    "SafetyConfig",
    "SafetyError",
    "Watchdog",
    "safe",
]
