"""Lambda entry points other than the API, and the processor registry. Never imports the web stack."""
