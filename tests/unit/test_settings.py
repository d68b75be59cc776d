"""The environment a function is deployed with is checked once, before its first event."""

from __future__ import annotations

import pytest

from shared.settings import ConfigurationError, Settings


def test_a_function_deployed_without_its_table_stops_with_a_message_naming_what_is_missing() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({"JOBQ_QUEUE_CACHE_SECONDS": "5"})
    assert "JOBQ_TABLE_NAME" in str(caught.value) and "JOBQ_QUEUES_PARAMETER_PATH" in str(caught.value)


def test_a_setting_that_is_not_a_number_is_named_with_the_variable_that_holds_it() -> None:
    with pytest.raises(ConfigurationError, match="JOBQ_POLICY_CACHE_SECONDS"):
        Settings.from_environ({"JOBQ_TABLE_NAME": "t", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_POLICY_CACHE_SECONDS": "soon"})


def test_settings_are_read_from_their_jobq_variables() -> None:
    settings = Settings.from_environ(
        {"JOBQ_TABLE_NAME": "t", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS": "true", "OTHER": "x"}
    )
    assert settings.table_name == "t" and settings.allow_loopback_http_targets is True and settings.max_attempts_limit == 20
