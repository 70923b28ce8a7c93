from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped, mapped_column

from portal.database import utcnow


class TimestampMixin:
    """created_at / updated_at in naive UTC; updated_at moves on every ORM update."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False, index=True)
