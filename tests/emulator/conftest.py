"""Tests of the local stack's emulators (infra/local): the wiring that stands in for AWS, on moto servers of their own."""

from tests.unit.conftest import required_settings  # noqa: F401  (autouse: the settings every function is deployed with)
