import pytest


@pytest.fixture(params=[1, 4, 16], ids=lambda ps: f"ps{ps}")
def page_size(request) -> int:
    return request.param
