import pytest

from bungalow.errors import InvalidNameError
from bungalow.names import validate_name, validate_option_path


@pytest.mark.parametrize("name", ["web", "db-1", "a", "x" * 63, "9lives"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Web", "a,b", "a=b", "a b", "-a", "a-", "x" * 64, "a/b", "a.b", "a_b", "é"]
)
def test_invalid_names_are_refused_with_a_sentence(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert "lower-case letters" in info.value.message


@pytest.mark.parametrize("path", ["/tmp/a,b", "/tmp/a=b", "/tmp/a b"])
def test_option_injection_in_paths_is_refused(path: str) -> None:
    with pytest.raises(InvalidNameError, match="QEMU would misread"):
        validate_option_path(path)
