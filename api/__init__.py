"""The jobq HTTP API: a FastAPI app, served by Mangum on Lambda and by uvicorn in the local stack."""
