"""Per-run limits, with defaults suited to APPS and HumanEval.

The time-limit verdict uses CPU time, so a busy machine does not turn honest programs into
timeouts; the wall limit only catches programs that sleep or block, and defaults to a
generous multiple of the CPU limit. Memory is the address space a run may add to the
executor's own. Process counts are bounded per worker by the pool (`Sandbox(max_processes=)`),
because the kernel counts them per container or cgroup, not per run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    cpu_s: float = 4.0
    wall_s: float | None = None  # None: 3 * cpu_s + 1
    memory_mb: int = 1024
    output_bytes: int = 4 * 2**20  # stdout kept and compared; more is OUTPUT_LIMIT
    file_bytes: int = 16 * 2**20  # largest file a run may write in its scratch directory
    open_files: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")

    @property
    def wall_limit_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 3 * self.cpu_s + 1

    def to_wire(self) -> dict:
        """The dictionary the in-jail executor reads."""
        wire = asdict(self)
        wire["wall_s"] = self.wall_limit_s
        return wire
