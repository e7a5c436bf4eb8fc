"""The ceiling: a bare FastAPI route answering a fixed JSON body (the bytes our availability
route answered, read from the file named on the command line), served by the same uvicorn
settings as our services."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response

app = FastAPI()
BODY = Path(sys.argv[2]).read_bytes() if len(sys.argv) > 2 else b'{"slots":[]}'


@app.get("/bare")
async def bare() -> Response:
    return Response(BODY, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
