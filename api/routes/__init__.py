"""The API's routers. FastAPI's work at each route's declaration is made cheaper (api/fastapi_cold_start.py),
installed here so it holds for every router however it is first imported."""

from api import fastapi_cold_start

fastapi_cold_start.install()
