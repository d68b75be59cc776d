"""Lambda entry points other than the API. Never imports the web stack."""
