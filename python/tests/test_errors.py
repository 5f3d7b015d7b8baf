"""Errors a user can act on: missing paths, bad settings."""

import errno

import pytest

import crossflow


def test_a_missing_model_directory_is_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=str(missing)) as raised:
        crossflow.CrossEncoder(missing)
    assert raised.value.errno == errno.ENOENT and raised.value.filename == str(missing)


def test_a_missing_model_file_is_file_not_found_naming_it(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        crossflow.CrossEncoder(tmp_path)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("device", "tpu", "device: unknown device"),
        ("activation", "tanh", "activation: \"tanh\"; expected one of"),
        ("batch_invariant", "sometimes", "batch_invariant: \"sometimes\"; expected one of"),
    ],
)
def test_bad_settings_are_value_errors_naming_the_argument(argument, value, message):
    with pytest.raises(ValueError, match=message):
        crossflow.CrossEncoder(**{argument: value})

