"""A customer's bookings across stores (MongoDB projection)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.booking.api.deps import ContextDep, PageDep, problems
from services.booking.api.models import BookingPage

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get(
    "/{customer_ref}/bookings",
    response_model=BookingPage,
    responses=problems(400, 422, 503),
    summary="A customer's bookings, by start time",
)
async def customer_bookings(
    customer_ref: Annotated[str, Path(min_length=1, max_length=128)],
    context: ContextDep,
    page: PageDep,
) -> BookingPage:
    return await page.fetch(context.repo, {"customer_ref": customer_ref})
