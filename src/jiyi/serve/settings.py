"""What `jiyi serve` flags set for the app (`Settings`), and where the page's files are."""

from dataclasses import dataclass, field
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class Settings:
    """What `jiyi serve` flags set; the defaults are the CLI's."""

    max_batch_size: int = 32
    forward_batch_size: int = 8
    max_wait_ms: float = 5.0
    batching: bool = True
    max_texts: int = 64
    max_chars: int = 10_000
    max_body_bytes: int = 1_000_000
    max_queue: int = 256
    timeout_s: float = 30.0
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    static_dir: Path = STATIC_DIR


__all__ = ["STATIC_DIR", "Settings"]
