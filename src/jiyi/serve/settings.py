"""What `jiyi serve` flags set for the app (`Settings`), and where the page's files are."""

from dataclasses import dataclass, field
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # the Host names a loopback server answers


@dataclass
class Settings:
    """What `jiyi serve` flags set; the defaults are the CLI's."""

    max_batch_size: int = 32
    forward_batch_size: int | None = None  # texts a forward pass holds (None: see app.py)
    forward_tokens: int | None = None  # padded tokens a forward pass holds at most (None: any)
    max_wait_ms: float = 5.0
    batching: bool = True
    max_texts: int = 64
    max_chars: int = 10_000
    max_body_bytes: int = 1_000_000
    max_queue: int = 256
    timeout_s: float = 30.0
    max_explain_cost: int = 16_384  # tokens x integrated-gradients steps of one explanation
    explain_queue: int = 4  # explanations waiting behind the running one before 429
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    # Host header names answered (any port); others get 400 (DNS rebinding). "*": any.
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOOPBACK_HOSTS))
    static_dir: Path = STATIC_DIR


__all__ = ["LOOPBACK_HOSTS", "STATIC_DIR", "Settings"]
