"""The pipeline's tests drive both faces: the REST fixtures, next to the shared ones."""

from tests.rest.conftest import http, rest_gateway  # noqa: F401 - fixtures
