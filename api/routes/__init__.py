"""The API's routers. Their fields' validators are built at first use (api/deferred_fields.py),
installed here so it holds for every router however it is first imported."""

from api import deferred_fields

deferred_fields.install()
