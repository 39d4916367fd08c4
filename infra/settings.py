"""All configuration in one object, read from ``SALON_*`` environment variables."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Salon's settings. Unset server URLs mean: start an embedded server under ``home``."""

    model_config = SettingsConfigDict(env_prefix="SALON_", extra="ignore")

    home: Path = Field(default=Path(".salon"), description="where embedded servers keep data")
    database_url: str | None = Field(default=None, description="external PostgreSQL URL")
    redis_url: str | None = Field(default=None, description="external Redis/Valkey URL")
    ray_address: str | None = Field(default=None, description="external Ray cluster address")
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    namespace: str = Field(default="salon", description="Ray namespace of the actors")
    snapshot_interval: int = Field(default=100, ge=2)
    agent_hosts: int = Field(default=0, ge=0, le=256,
                             description="0: one process per agent; N: agents share N hosts")
    room_hosts: int = Field(default=4, ge=0, le=256,
                            description="N: rooms share N host processes and are passivated "
                            "when idle; 0: one process per room")
    idle_seconds: float = Field(
        default=600.0, ge=0, description="a room or agent on a shared host unused this long "
        "is passivated (snapshotted and released); 0: never")
    demo: bool = Field(default=True, description="open a demo room with two agents on `up`")
    max_frame_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    background_nice: int = Field(
        default=10, ge=0, le=19, description="how far below rooms and agents (Unix nice) the "
        "processes that only build read models run: projections, jobs, the embedder")
    memory_projection: bool = Field(
        default=True, description="follow the log into agents' long-term memory tables")
    memory_upkeep_seconds: float = Field(
        default=3600.0, ge=0, description="each agent with long-term memory gets an upkeep job "
        "(consolidation, forgetting, retention) this often; 0: no scheduled upkeep")
    memory_upkeep_batch: int = Field(
        default=1_000, ge=1, le=100_000, description="memories one upkeep pass merges or "
        "forgets at most (the rest wait for the next pass)")
    llm_rate_limit_mode: Literal["wait", "fail"] = Field(
        default="wait", description="under a provider's RPM/TPM limit: wait for room or fail fast")
    llm_max_wait_seconds: float = Field(default=120.0, gt=0,
                                        description="longest wait for the rate limiter")
    llm_timeout_seconds: float = Field(default=120.0, gt=0,
                                       description="per model call (and per stream pause)")

    # Trust boundaries (SECURITY.md): what exists to be granted, and what each principal may use.
    endpoints: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="JSON {name: {base_url, api_key_env}}: the provider "
        "endpoints and key variables agents may be granted")
    frames_per_second: float = Field(default=100.0, gt=0,
                                     description="sustained frames a principal may send")
    frame_burst: int = Field(default=400, ge=1, description="frames a principal may send at once")
    max_connections_per_user: int = Field(default=32, ge=1)
    max_in_flight: int = Field(default=32, ge=1,
                               description="requests one connection may have unanswered")
    send_queue_frames: int = Field(
        default=2_000, ge=16, description="frames queued for a slow reader before it is cut off")
    max_rooms_per_user: int = Field(default=500, ge=0, description="rooms a member may create")
    max_agents_per_user: int = Field(default=50, ge=0, description="agents a member may create")
    invokes_per_minute: int = Field(default=60, ge=1, description="turns a member may request")
    openai_reply_seconds: float = Field(
        default=120.0, gt=0, description="how long the OpenAI-compatible API waits for an "
        "agent's reply before answering 503")
    openai_calls_per_user: int = Field(
        default=4, ge=1, description="OpenAI-compatible API calls one user may have running at "
        "once (this gateway)")
    openai_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="largest OpenAI-compatible request body")
    openai_max_messages: int = Field(
        default=256, ge=1, description="most messages in one OpenAI-compatible request")
    spend_usd_per_day: float | None = Field(
        default=5.0, ge=0, description="what the turns a member causes may cost per day (UTC) "
        "on paid models, in USD (infra/spend.py); admins are not bounded")
    token_days: float | None = Field(default=None, gt=0,
                                     description="tokens issued expire after this many days")
    public_metrics: bool = Field(default=False,
                                 description="serve /metrics without a token (private listeners)")

    master_key_file: Path | None = Field(
        default=None, description="the master key that wraps the data keys sealing personal "
        "words at rest (default: HOME/master.key, created with mode 0600 on first start)")

    def master_key_path(self) -> Path:
        """Where the master key is (SALON_MASTER_KEY_FILE, else under ``home``)."""
        return (self.master_key_file or self.home / "master.key").resolve()

    def resolved(self, database_url: str, redis_url: str) -> Settings:
        """A copy pointing at the servers actually running, for handing to actors."""
        return self.model_copy(update={"database_url": database_url, "redis_url": redis_url,
                                       "home": self.home.resolve(),
                                       "master_key_file": self.master_key_path()})


def below_the_write_path(nice: int) -> None:
    """Lower this (actor's own) process's CPU priority by ``nice``: on a busy machine the read
    models lag a little instead of slowing down every say and turn (bench/README.md)."""
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as error:
            logging.getLogger(__name__).warning(
                "could not lower the CPU priority of a background process: %s", error)
