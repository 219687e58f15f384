"""What every route of the studio shares (settings, database sessions, the photo store, the model cards, the Try
page's model), handed to routes as FastAPI dependencies, as FastAPI's full-stack template does."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from ..serve.guard import host_names
from ..serve.uploads import ServeSettings
from .archive import ZipLimits
from .cards import ModelCards
from .store import ImageStore
from .trying import TryModels


@dataclass(frozen=True)
class StudioSettings:
    home: Path
    database_url: str
    token: str | None = None         # required on every API call when set (the studio binds beyond 127.0.0.1)
    hosts: frozenset[str] = host_names("127.0.0.1")  # the Host names it answers to
    phone_url: str | None = None     # the studio's address for a phone on the network (it listens beyond loopback)
    max_upload_mb: float = 64.0      # one request: photos or a zip
    max_images: int = 200            # photos in one request
    max_pixels: int = 40_000_000     # one decoded photo
    max_zip_members: int = 5000
    max_zip_mb: float = 1024.0       # what a zip may unpack to, all members together
    max_zip_member_mb: float = 64.0  # what one member may unpack to
    max_zip_seconds: float = 120.0   # how long unpacking one zip may take

    def uploads(self, max_images: int | None = None) -> ServeSettings:
        return ServeSettings(max_upload_mb=self.max_upload_mb, max_images=max_images or self.max_images,
                             max_pixels=self.max_pixels, max_request_pixels=4 * self.max_pixels)

    def zip_limits(self) -> ZipLimits:
        return ZipLimits(self.max_zip_members, int(self.max_zip_mb * 2**20), int(self.max_zip_member_mb * 2**20),
                         self.max_zip_seconds)


@dataclass
class Studio:
    settings: StudioSettings
    sessions: sessionmaker
    store: ImageStore = field(init=False)
    cards: ModelCards = field(init=False)
    models: TryModels = field(init=False)

    def __post_init__(self):
        self.store = ImageStore(self.settings.home / "images", self.settings.max_pixels)
        self.cards = ModelCards()
        self.models = TryModels(self.settings.uploads(max_images=32))

    def start(self) -> None:
        """What runs beside the requests starts with the app: the model cards' latencies, measured once per
        machine, and the Try page's model kept warm."""
        self.cards.start()
        self.models.start_warming(self.sessions, self.settings.home)

    def close(self) -> None:
        """What runs beside the requests (model speeds being measured, the Try page's batcher) ends with the app."""
        self.cards.close()
        self.models.close()


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


def get_session(studio: Annotated[Studio, Depends(get_studio)]) -> Iterator[Session]:
    with studio.sessions() as session:
        yield session


StudioDep = Annotated[Studio, Depends(get_studio)]
SessionDep = Annotated[Session, Depends(get_session)]
