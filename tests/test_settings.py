import math
import re
from pathlib import Path

import pytest

from velox.errors import ConfigError
from velox.model.learner import make_rule
from velox.settings import Settings


def test_settings_read_velox_variables() -> None:
    settings = Settings.from_env(
        {"VELOX_BOOTSTRAP": "10.0.0.1:9999", "VELOX_DATA": "/srv/velox", "VELOX_PARTITIONS": "4"}
    )
    assert settings.bootstrap == "10.0.0.1:9999"
    assert settings.broker_address == ("10.0.0.1", 9999)
    assert settings.data == Path("/srv/velox")
    assert settings.partitions == 4


def test_settings_flags_override_variables_and_none_flags_do_not() -> None:
    settings = Settings.from_env({"VELOX_PARTITIONS": "4"}, partitions=2, data=None)
    assert settings.partitions == 2
    assert settings.data == Settings().data


def test_settings_bad_integer_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="VELOX_PARTITIONS='many' is not an integer"):
        Settings.from_env({"VELOX_PARTITIONS": "many"})


@pytest.mark.parametrize("bootstrap", ["localhost", "host:port", ":9092"])
def test_settings_bad_bootstrap_is_refused(bootstrap: str) -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        Settings.from_env({"VELOX_BOOTSTRAP": bootstrap})


def test_settings_zero_partitions_is_refused() -> None:
    with pytest.raises(ConfigError, match="partitions must be at least 1"):
        Settings().replace(partitions=0)


def test_the_item_shrinkage_floor_defaults_to_one_rating_and_is_never_negative() -> None:
    assert Settings.from_env({}).item_shrinkage_floor == 1.0
    assert Settings.from_env({"VELOX_ITEM_SHRINKAGE_FLOOR": "0"}).item_shrinkage_floor == 0.0
    with pytest.raises(ConfigError, match="item_shrinkage_floor must be 0 or more"):
        Settings.from_env({"VELOX_ITEM_SHRINKAGE_FLOOR": "-1"})


def test_settings_survive_a_trip_through_the_environment() -> None:
    settings = Settings(bootstrap="h:1", data=Path("/d"), l2=0.5, forgetting=0.99, namespace="x-", initial_version=None,
                        batching=False)
    assert Settings.from_env(settings.to_env()) == settings
    rule = make_rule(**Settings.from_env({"VELOX_FEEDBACK": "implicit", "VELOX_L2": "3"}).rule_params())
    assert (rule.name, rule.l2) == ("implicit", 3.0)


def test_settings_switches_read_words_and_refuse_others() -> None:
    assert Settings.from_env({"VELOX_BATCHING": "off"}).batching is False
    assert Settings.from_env({"VELOX_BATCHING": "1"}).batching is True
    with pytest.raises(ConfigError, match="VELOX_BATCHING='maybe' is not true or false"):
        Settings.from_env({"VELOX_BATCHING": "maybe"})


def test_settings_name_the_update_rule_with_its_parameters() -> None:
    rule = make_rule(**Settings.from_env({"VELOX_RULE": "rls", "VELOX_L2": "5", "VELOX_FORGETTING": "0.99"}).rule_params())
    assert (rule.name, rule.l2, rule.forgetting) == ("rls", 5.0, 0.99)
    with pytest.raises(ConfigError, match="forgetting must be between 0.9 .* and 1 .*got 1.5"):
        Settings.from_env({"VELOX_FORGETTING": "1.5"})


def test_a_folder_has_one_spelling_whether_a_flag_or_a_variable_gave_it() -> None:
    settings = Settings.from_env({}, data=Path("~/velox-data"))  # `--data=~/velox-data`: the shell leaves ~ alone
    assert settings.data == Path.home() / "velox-data"
    assert Settings.from_env(settings.to_env()).data == settings.data
    relative = Settings.from_env({"VELOX_DATA": "here"}, cache=Path("there"))
    assert (relative.data, relative.cache) == (Path.cwd() / "here", Path.cwd() / "there")


def test_a_tls_file_that_is_not_there_is_refused_at_start(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("a key")
    with pytest.raises(ConfigError, match=f"tls_cert: no file at {tmp_path / 'cert.pem'}"):
        Settings.from_env({"VELOX_TLS_CERT": str(tmp_path / "cert.pem"), "VELOX_TLS_KEY": str(key)})


def test_an_implicit_system_learns_with_the_implicit_rule_and_serves_no_item_corrections() -> None:
    settings = Settings.from_env({"VELOX_FEEDBACK": "implicit", "VELOX_CONFIDENCE": "view=1, buy=20,dismiss=-3"})
    assert (settings.rule, settings.item_shrinkage, settings.implicit) == ("implicit", math.inf, True)
    assert settings.confidences == {"view": 1.0, "buy": 20.0, "dismiss": -3.0}
    assert Settings.from_env(settings.to_env()) == settings
    rule = make_rule(**Settings.from_env({"VELOX_FEEDBACK": "implicit", "VELOX_L2": "3"}).rule_params())
    assert (rule.name, rule.l2) == ("implicit", 3.0)
    assert Settings.from_env({}).confidences == {"view": 1.0, "click": 4.0, "cart": 10.0, "purchase": 20.0,
                                                 "dismiss": -4.0}


@pytest.mark.parametrize(("environ", "words"), [
    ({"VELOX_FEEDBACK": "ratings"}, "feedback must be 'explicit' or 'implicit'"),
    ({"VELOX_RULE": "implicit"}, "the implicit rule learns from kinds"),
    ({"VELOX_FEEDBACK": "implicit", "VELOX_ITEM_SHRINKAGE": "5"}, "serves no item corrections"),
    ({"VELOX_CONFIDENCE": "view=1,click"}, "confidence 'click': each is kind=number"),
    ({"VELOX_CONFIDENCE": "view=0"}, "the number finite and not 0"),
    ({"VELOX_CONFIDENCE": "=2"}, "each is kind=number"),
    ({"VELOX_CONFIDENCE": " , "}, "maps no kind"),
])
def test_bad_feedback_settings_are_refused_at_start(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        Settings.from_env(environ)
