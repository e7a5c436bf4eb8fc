"""All routers of the booking API."""

from __future__ import annotations

from fastapi import APIRouter

from services.booking.api.routes import bookings, commands, customers, stores, waitlist

api_router = APIRouter()
# Routes are matched in order (by the router and again by the metrics middleware): the
# benchmarked availability read goes first.
api_router.include_router(stores.router)
api_router.include_router(bookings.router)
api_router.include_router(customers.router)
api_router.include_router(commands.router)
api_router.include_router(waitlist.router)
