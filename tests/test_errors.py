from bungalow import errors


def test_every_error_class_round_trips_through_its_code() -> None:
    for code, cls in errors.ERROR_CLASSES.items():
        rebuilt = errors.error_from_code(code, "It broke; fix it.")
        assert type(rebuilt) is cls
        assert rebuilt.message == "It broke; fix it."


def test_unknown_codes_fall_back_to_the_base_class() -> None:
    assert type(errors.error_from_code("nope", "x")) is errors.BungalowError


def test_all_errors_descend_from_one_root() -> None:
    for cls in errors.ERROR_CLASSES.values():
        assert issubclass(cls, errors.BungalowError)
