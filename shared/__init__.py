"""jobq's domain core: models, the job state machine, the store, queue access, settings, errors.

Both the API and the Lambda functions import this package; it never imports the web stack.
"""
