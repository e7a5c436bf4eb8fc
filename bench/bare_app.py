"""The ceiling: a bare FastAPI route returning a JSON body of the availability view's size,
served by the same uvicorn settings as our services."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

app = FastAPI()
BODY = {
    "store_id": "bench",
    "slots": [
        {"local_time": f"{h:02d}:{m:02d}", "free_count": 2}
        for h in range(9, 18)
        for m in (0, 15, 30, 45)
    ],
}


@app.get("/bare")
async def bare() -> ORJSONResponse:
    return ORJSONResponse(BODY)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
